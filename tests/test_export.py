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

# The SavedModel runs the same float32 ops as Keras, but through a graph with the weights
# as constants that TensorFlow optimizes (fused convolutions, oneDNN's choice of kernel):
# outputs in [0, 255] agree within 0.01 (measured 0.0036 on la_muse).
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


def signature_defs(path):
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString(open(os.path.join(path, "saved_model.pb"), "rb").read())
    return {k: v for k, v in saved.meta_graphs[0].signature_def.items() if not k.startswith("__")}


def spec(tensor_info):
    return (tensor_info.dtype, [d.size for d in tensor_info.tensor_shape.dim])


def test_signatures_and_defaults(exported_model):
    import tensorflow as tf

    defs = signature_defs(exported_model[1])
    assert set(defs) == {"serving_default", "stylize_jpeg", "stylize_tensor"}
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


ONE_HOT = [0.0, 1.0, 0.0]
BLEND = [0.7, 0.0, 0.3]


@pytest.fixture(scope="module")
def multi_signatures(exported_multi_style):
    import tensorflow as tf

    return tf.saved_model.load(exported_multi_style[1]).signatures


def keras_styled(net, images, style_weights):
    return np.asarray(net(np.asarray(images, np.float32),
                          style_weights=np.asarray(style_weights, np.float32)))


def test_multi_style_tensor_signatures_match_keras(exported_multi_style, multi_signatures):
    """A one-hot and a blended vector, one for the batch or one per image, give the Keras
    network's images; weights are scaled to sum to 1; without them, the first style."""
    net = exported_multi_style[2]
    images = np.random.default_rng(3).uniform(0, 255, (2, 21, 35, 3)).astype(np.float32)
    mix = multi_signatures["stylize_mix_tensor"]
    for weights in (ONE_HOT, BLEND, [7.0, 0.0, 3.0]):
        served = mix(images=images, style_weights=np.array([weights], np.float32))["images"]
        expected = keras_styled(net, images, BLEND if weights[0] == 7 else weights)
        assert np.abs(served.numpy() - expected).max() < TOLERANCE
    rows = np.array([ONE_HOT, BLEND], np.float32)
    served = mix(images=images, style_weights=rows)["images"].numpy()
    assert np.abs(served - keras_styled(net, images, rows)).max() < TOLERANCE
    first = multi_signatures["stylize_tensor"](images=images)["images"].numpy()
    assert np.abs(first - keras_styled(net, images, [1.0, 0.0, 0.0])).max() < TOLERANCE
    # The styles differ by far more than the tolerance, so a wrong one would show.
    assert np.abs(keras_styled(net, images, ONE_HOT) - keras_styled(net, images, BLEND)).max() > 20
    empty = mix(images=np.zeros((0, 8, 8, 3), np.float32),
                style_weights=np.array([ONE_HOT], np.float32))["images"]
    assert empty.shape == (0, 8, 8, 3)


def test_multi_style_image_signatures_match_keras(exported_multi_style, multi_signatures):
    import tensorflow as tf

    net = exported_multi_style[2]
    photos = [photo(32, 48), photo(20, 30, seed=1)]
    rows = np.array([ONE_HOT, BLEND], np.float32)
    out = multi_signatures["stylize_mix"](image_bytes=tf.constant([encode(p) for p in photos]),
                                          style_weights=rows, strength=tf.constant([1.0]))
    for data, original, weights in zip(out["image_bytes"].numpy(), photos, rows):
        expected = to_uint8(keras_styled(net, original[np.newaxis], weights)[0])
        assert np.abs(decode(data).astype(int) - expected).max() <= 1
    # A request written for a single-style model gets the first style.
    [first] = stylize_bytes(multi_signatures, [encode(photos[0])])
    expected = to_uint8(keras_styled(net, photos[0][np.newaxis], [1.0, 0.0, 0.0])[0])
    assert np.abs(decode(first).astype(int) - expected).max() <= 1
    [jpeg] = multi_signatures["stylize_mix_jpeg"](
        image_bytes=tf.constant([encode(photos[1])]), style_weights=rows[1:],
        strength=tf.constant([0.0]))["image_bytes"].numpy()
    assert jpeg.startswith(b"\xff\xd8\xff") and decode(jpeg).shape == photos[1].shape


def test_multi_style_signatures_and_style_names(exported_multi_style, multi_signatures):
    import tensorflow as tf

    defs = signature_defs(exported_multi_style[1])
    assert set(defs) == {"serving_default", "stylize_jpeg", "stylize_tensor", "stylize_mix",
                         "stylize_mix_jpeg", "stylize_mix_tensor", "styles"}
    string, number = tf.string.as_datatype_enum, tf.float32.as_datatype_enum
    weights = (number, [-1, 3])
    for name in ("serving_default", "stylize_jpeg"):
        assert {k: spec(v) for k, v in defs[name].inputs.items()} == {
            "image_bytes": (string, [-1]), "strength": (number, [-1])}
    for name in ("stylize_mix", "stylize_mix_jpeg"):
        assert {k: spec(v) for k, v in defs[name].inputs.items()} == {
            "image_bytes": (string, [-1]), "strength": (number, [-1]), "style_weights": weights}
        assert {k: spec(v) for k, v in defs[name].outputs.items()} == {"image_bytes": (string, [-1])}
        assert list(defs[name].defaults) == ["strength"]  # the style weights are asked for
    assert {k: spec(v) for k, v in defs["stylize_mix_tensor"].inputs.items()} == {
        "images": (number, [-1, -1, -1, 3]), "style_weights": weights}
    assert {k: spec(v) for k, v in defs["styles"].inputs.items()} == {
        "index": (tf.int32.as_datatype_enum, [-1])}
    assert {k: spec(v) for k, v in defs["styles"].outputs.items()} == {"style": (string, [-1])}
    names = multi_signatures["styles"](index=tf.constant([2, 0, 1]))["style"].numpy().tolist()
    assert names == [b"c", b"a", b"b"]
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"style index \[3\] out of range: this model has 3 styles, 0 to 2"):
        multi_signatures["styles"](index=tf.constant([3]))


@pytest.mark.parametrize("weights,message", [
    ([[0, 0, 0]], r"style_weights: the weights of a row are all zero, got \[\[0 0 0\]\]"),
    ([[1, -1, 0]], r"style_weights must be numbers >= 0, got \[\[1 -1 0\]\]"),
    ([[1, np.nan, 0]], r"style_weights must be numbers >= 0"),
    ([[1, np.inf, 0]], r"style_weights must be numbers >= 0"),
    ([ONE_HOT, ONE_HOT], r"style_weights has 2 rows for 3 images: give one, or one per image"),
])
def test_bad_style_weights_are_invalid_argument(multi_signatures, weights, message):
    import tensorflow as tf

    weights = np.array(weights, np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        multi_signatures["stylize_mix"](image_bytes=tf.constant([encode(photo())] * 3),
                                        style_weights=weights, strength=tf.constant([1.0]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        multi_signatures["stylize_mix_tensor"](images=np.zeros((3, 8, 8, 3), np.float32),
                                               style_weights=weights)


def test_style_weights_of_the_wrong_width_are_refused(exported_multi_style):
    """The signature's shape says 3 columns, which TensorFlow Serving does not enforce:
    the graph checks them itself."""
    import tensorflow as tf

    from perceptual_style.export import _style_rows

    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="style_weights rows have 2 values for the 3 styles of this model"):
        _style_rows(exported_multi_style[2], tf.constant([[1.0, 0.0]]), 1)


def test_the_weights_are_constants_stored_once(exported_model, exported_multi_style):
    """Every signature calls one graph of the network with its weights as constants (read
    from variables, a one-image convolution takes oneDNN's slow kernel without AVX-512):
    each weight's bytes are in the SavedModel once, and it is about one float32 copy of
    them (the graph's ops add 4% to a full-size network's 6.7 MB)."""
    import tensorflow as tf

    from perceptual_style.export import directory_size

    for path, net in ((exported_model[1], exported_model[2]),
                      (exported_multi_style[1], exported_multi_style[2])):
        reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
        assert not [name for name in reader.get_variable_to_shape_map()
                    if "VARIABLE_VALUE" in name]
        files = [os.path.join(root, name) for root, _, names in os.walk(path) for name in names]
        saved = b"".join(open(f, "rb").read() for f in files)
        # A weight of one repeated value (an untrained scale of ones) has no bytes of its own.
        distinct = [w for w in net.get_weights() if np.unique(w).size > 1]
        assert sum(w.size for w in distinct) > 0.99 * net.count_params()
        assert [saved.count(w.tobytes()) for w in distinct] == [1] * len(distinct)
    weights = 4 * exported_model[2].count_params()
    assert weights > 6e6 and weights < directory_size(exported_model[1]) < 1.1 * weights


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


def test_cli_exports_a_network_of_several_styles(multi_style_dir, tmp_path):
    import shutil

    models = str(tmp_path / "models")
    result = run_cli(["perceptual_style.export", "--style=trio", f"--saved_dir={multi_style_dir}",
                      f"--models_dir={models}"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Exported trio version 1 (styles: a, b, c): {os.path.join(models, 'trio', '1')} (" \
        in result.stdout
    assert "styles" in signature_defs(os.path.join(models, "trio", "1"))
    (tmp_path / "nameless").mkdir()  # its weights without the metadata that names its styles
    shutil.copy(multi_style_dir / "trio" / "weights.npz", tmp_path / "nameless")
    result = run_cli(["perceptual_style.export", f"--style={tmp_path / 'nameless'}",
                      f"--models_dir={models}"])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"export: error: {tmp_path / 'nameless' / 'metadata.json'}: ")
    assert os.listdir(models) == ["trio"]


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
