"""SavedModel export: the round trip against the Keras model, signatures, limits, errors,
versioning and the CLI. Tiny images; the model is exported once per session."""

import hashlib
import os

import numpy as np
import pytest

from conftest import decode, encode, photo, run_cli, tensorflow_only
from perceptual_style.atomic import publish_directory
from perceptual_style.images import to_uint8

pytestmark = tensorflow_only

# The SavedModel runs the same float32 ops as Keras, but through a graph that TensorFlow
# optimizes (fused convolutions): outputs in [0, 255] agree within 0.01 (measured 0.0012).
TOLERANCE = 0.01


@pytest.fixture(scope="module")
def signatures(exported_model):
    import tensorflow as tf

    return tf.saved_model.load(exported_model[1]).signatures


def stylize_bytes(signatures, images, strength=(1.0,), name="serving_default"):
    import tensorflow as tf

    out = signatures[name](image_bytes=tf.constant(images), strength=tf.constant(strength, tf.float32))
    return list(out["image_bytes"].numpy())


def keras_uint8(net, array):
    return to_uint8(np.asarray(net(array[np.newaxis].astype(np.float32)))[0])


def test_stylize_tensor_matches_keras(exported_model, signatures):
    _, _, net = exported_model
    rng = np.random.default_rng(1)
    for shape in [(2, 32, 48, 3), (1, 21, 35, 3)]:  # odd sizes are padded and cropped back
        images = rng.uniform(0, 255, shape).astype(np.float32)
        served = signatures["stylize_tensor"](images=images)["images"].numpy()
        expected = np.asarray(net(images))
        assert served.shape == shape
        assert np.abs(served - expected).max() < TOLERANCE


def test_images_from_one_pixel_up_and_empty_batches(exported_model, signatures):
    import tensorflow as tf

    _, _, net = exported_model
    rng = np.random.default_rng(2)
    for shape in [(1, 1, 1, 3), (2, 2, 3, 3), (1, 4, 4, 3)]:
        images = rng.uniform(0, 255, shape).astype(np.float32)
        served = signatures["stylize_tensor"](images=images)["images"].numpy()
        assert served.shape == shape
        assert np.abs(served - np.asarray(net(images))).max() < TOLERANCE
    empty = signatures["stylize_tensor"](images=np.zeros((0, 8, 8, 3), np.float32))["images"]
    assert empty.shape == (0, 8, 8, 3)
    tiny = [photo(1, 1), photo(3, 4, seed=1)]
    for data, original in zip(stylize_bytes(signatures, [encode(p) for p in tiny]), tiny):
        assert np.abs(decode(data).astype(int) - keras_uint8(net, original)).max() <= 1
    images = np.full((1, 8, 8, 3), 100, np.float32)
    images[0, 3, 4, 1] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="images hold NaN or infinite values"):
        signatures["stylize_tensor"](images=images)


def test_png_signature_matches_keras_for_mixed_sizes(exported_model, signatures):
    _, _, net = exported_model
    photos = [photo(32, 48), photo(20, 30, seed=1)]
    out = stylize_bytes(signatures, [encode(p) for p in photos])
    for data, original in zip(out, photos):
        assert data.startswith(b"\x89PNG")
        stylized = decode(data)
        expected = keras_uint8(net, original)
        assert stylized.shape == original.shape
        # Rounding to 8 bits can tip a value that differs by < TOLERANCE across .5.
        assert np.abs(stylized.astype(int) - expected).max() <= 1
        assert np.mean(stylized == expected) > 0.99


def test_strength_blends_and_jpeg_signature(exported_model, signatures):
    _, _, net = exported_model
    original = photo()
    data = encode(original)
    untouched, half = stylize_bytes(signatures, [data, data], strength=[0.0, 0.5])
    assert np.array_equal(decode(untouched), original)
    expected = original * 0.5 + np.asarray(net(original[np.newaxis].astype(np.float32)))[0] * 0.5
    assert np.abs(decode(half).astype(float) - expected).max() <= 1
    [jpeg] = stylize_bytes(signatures, [encode(original, "JPEG")], name="stylize_jpeg")
    assert jpeg.startswith(b"\xff\xd8\xff") and decode(jpeg).shape == original.shape


def test_signatures_and_defaults(exported_model):
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString(open(os.path.join(exported_model[1], "saved_model.pb"), "rb").read())
    defs = saved.meta_graphs[0].signature_def

    def spec(tensor_info):
        return (tensor_info.dtype, [d.size for d in tensor_info.tensor_shape.dim])

    for name in ("serving_default", "stylize_jpeg"):
        assert defs[name].method_name == "tensorflow/serving/predict"
        assert {k: spec(v) for k, v in defs[name].inputs.items()} == {
            "image_bytes": (tf.string.as_datatype_enum, [-1]),
            "strength": (tf.float32.as_datatype_enum, [-1])}
        assert {k: spec(v) for k, v in defs[name].outputs.items()} == {
            "image_bytes": (tf.string.as_datatype_enum, [-1])}
        # TensorFlow Serving fills in strength when a request leaves it out.
        assert tf.make_ndarray(defs[name].defaults["strength"]).tolist() == [1.0]
    assert {k: spec(v) for k, v in defs["stylize_tensor"].inputs.items()} == {
        "images": (tf.float32.as_datatype_enum, [-1, -1, -1, 3])}
    assert {k: spec(v) for k, v in defs["stylize_tensor"].outputs.items()} == {
        "images": (tf.float32.as_datatype_enum, [-1, -1, -1, 3])}


def test_weights_are_variables_stored_once(exported_model):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(os.path.join(exported_model[1], "variables", "variables"))
    shapes = reader.get_variable_to_shape_map()
    stored = sum(int(np.prod(shape)) for name, shape in shapes.items() if "VARIABLE_VALUE" in name)
    assert stored == exported_model[2].count_params()


def test_pixel_limit_is_enforced_before_decoding(signatures):
    import tensorflow as tf

    assert len(stylize_bytes(signatures, [encode(photo(40, 60))])) == 1  # exactly at the limit
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"image_bytes\[1\] is 61 x 40 pixels, over the limit of 2400 pixels"):
        stylize_bytes(signatures, [encode(photo()), encode(photo(40, 61))])
    # A PNG header claiming 100000 x 100000 pixels is refused without decoding anything.
    bomb = encode(photo(2, 2))
    bomb = bomb[:16] + (100000).to_bytes(4, "big") * 2 + bomb[24:]
    with pytest.raises(tf.errors.InvalidArgumentError, match="100000 x 100000 pixels"):
        stylize_bytes(signatures, [bomb])
    with pytest.raises(tf.errors.InvalidArgumentError, match="images are 61 x 40 pixels, over"):
        signatures["stylize_tensor"](images=np.zeros((1, 40, 61, 3), np.float32))


@pytest.mark.parametrize("data,message", [
    (b"hello", r"image_bytes\[0\] is not a JPEG or PNG image"),
    (b"GIF89a" + bytes(40), r"image_bytes\[0\] is not a JPEG or PNG image"),
    (encode(photo())[:60], "Invalid PNG data"),
    (encode(photo(), "JPEG")[:200], "Invalid JPEG data"),
])
def test_undecodable_bytes_give_invalid_argument(signatures, data, message):
    import tensorflow as tf

    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        stylize_bytes(signatures, [data])


def test_strength_is_checked(signatures):
    import tensorflow as tf

    data = encode(photo())
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"strength must be in \[0, 1\]"):
        stylize_bytes(signatures, [data], strength=[1.5])
    with pytest.raises(tf.errors.InvalidArgumentError, match="strength has 2 values for 3 images"):
        stylize_bytes(signatures, [data] * 3, strength=[1.0, 1.0])


def test_publish_directory_never_replaces(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "keep").write_text("v1")

    def write(folder):
        with open(os.path.join(folder, "model"), "w") as f:
            f.write("new")

    assert publish_directory(str(tmp_path), write, ["1", "2"]) == str(tmp_path / "2")
    assert (tmp_path / "1" / "keep").read_text() == "v1" and (tmp_path / "2" / "model").exists()
    with pytest.raises(FileExistsError):
        publish_directory(str(tmp_path), write, ["1"])

    def fail(folder):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        publish_directory(str(tmp_path), fail, ["3"])
    assert sorted(os.listdir(tmp_path)) == ["1", "2"]  # no temporary folder left behind


def digest(folder):
    files = sorted(os.path.join(root, name) for root, _, names in os.walk(folder) for name in names)
    return hashlib.sha256(b"".join(open(f, "rb").read() for f in files)).hexdigest()


def test_cli_exports_new_versions_and_never_clobbers(tiny_style, tmp_path):
    saved_dir, models = str(tiny_style.parent), str(tmp_path / "models")
    args = ["perceptual_style.export", "--style=tiny", f"--saved_dir={saved_dir}",
            f"--models_dir={models}"]
    first = run_cli(args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Exported tiny version 1" in first.stdout
    before = digest(os.path.join(models, "tiny", "1"))
    second = run_cli(args)
    assert second.returncode == 0 and "Exported tiny version 2" in second.stdout
    assert sorted(os.listdir(os.path.join(models, "tiny"))) == ["1", "2"]  # no temp folder left
    assert digest(os.path.join(models, "tiny", "1")) == before
    refused = run_cli(args + ["--version=1"])
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines()[-1] == (
        f"export: error: {os.path.join(models, 'tiny', '1')} exists: a served version is never "
        "overwritten (leave out --version for the next one)")
    assert digest(os.path.join(models, "tiny", "1")) == before


def test_style_sources_take_their_values_not_the_flag_registry(tiny_style):
    """tools/export_tflite.py passes its own --style, --all and --saved_dir."""
    from perceptual_style.export import style_sources

    saved_dir = str(tiny_style.parent)
    assert style_sources(["tiny"], False, saved_dir) == [("tiny", os.path.join(saved_dir, "tiny"))]
    assert style_sources(None, True, saved_dir) == [("tiny", os.path.join(saved_dir, "tiny"))]


@pytest.mark.parametrize("args,message", [
    (["--style=missing"], "export: error: no trained style 'missing': expected "),
    (["--all", "--saved_dir=nowhere"], "export: error: no trained styles in nowhere/"),
    ([], "export: error: give --style=NAME[,NAME...] or --all"),
    (["--all", "--jpeg_quality=0"], "export: error: flag --jpeg_quality=0: 0 is not an integer in the range [1, 100]"),
    (["--colour=red"], "export: error: Unknown command line flag 'colour'"),
])
def test_cli_errors_are_one_line(tmp_path, args, message):
    result = run_cli(["perceptual_style.export", f"--models_dir={tmp_path}", *args])
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith(message)
    assert "Traceback" not in result.stderr
    assert os.listdir(tmp_path) == []
