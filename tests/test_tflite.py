"""TensorFlow Lite builds: builtin ops only, weights kept, PSNR floors, signatures, the CLI."""

import json
import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

from conftest import HANG_TIMEOUT, REPO, photo, tensorflow_only

pytestmark = tensorflow_only
tf = pytest.importorskip("tensorflow")
from perceptual_style import tflite  # noqa: E402  (needs TensorFlow)
from perceptual_style.saved_nets import load_transformer, save_transformer  # noqa: E402
from perceptual_style.transformer_net import INPUT_SHAPE, TransformerNet, with_padding  # noqa: E402

SIZE = (64, 64)


def keras_output(net, image):
    return keras.ops.convert_to_numpy(net(np.asarray(image, np.float32)[None]))[0]


@pytest.fixture(scope="module")
def style_net(tiny_style):
    return load_transformer(str(tiny_style))


@pytest.fixture(scope="module")
def builds(style_net, tmp_path_factory):
    """tiny_style converted once: {quantization: flatbuffer} at 64x64, plus the resizable
    float16 build under "resizable"."""
    folder = tmp_path_factory.mktemp("tflite")
    tflite.write_saved_model(style_net, str(folder / "fixed"), SIZE)
    tflite.write_saved_model(style_net, str(folder / "resizable"))
    calibration = tflite.calibration_batches([photo(*SIZE, seed=s) for s in range(8)])
    models = {q: tflite.convert(str(folder / "fixed"), q, calibration) for q in tflite.QUANTIZATIONS}
    models["resizable"] = tflite.convert(str(folder / "resizable"), "float16")
    return models


def test_every_build_uses_only_builtin_ops(builds):
    for model in builds.values():
        names = tflite.op_names(model)
        assert "CONV_2D" in names and "MEAN" in names  # convolutions and instance norm
        assert not [n for n in names if n.startswith("Flex") or n not in tflite._OP_NAMES.values()]
        tflite.check_builtin_only(model)


def test_dynamic_upsampling_trap_is_caught(tmp_path):
    """Keras' UpSampling2D followed by a convolution, with unknown height and width, needs a
    Flex op: the check reports it, and `convert` (builtins only) refuses it."""
    model = keras.Sequential([keras.Input((None, None, 3)), keras.layers.UpSampling2D(2),
                              keras.layers.Conv2D(2, 3)])
    archive = keras.export.ExportArchive()
    archive.add_endpoint(tflite.SIGNATURE, lambda images: {tflite.OUTPUT: model(images)},
                         input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
    archive.write_out(str(tmp_path / "model"), verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "model"))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                           tf.lite.OpsSet.SELECT_TF_OPS]
    with_flex = converter.convert()
    assert "FlexConv2D" in tflite.op_names(with_flex)
    with pytest.raises(tflite.TFLiteError, match="FlexConv2D"):
        tflite.check_builtin_only(with_flex)
    with pytest.raises(tflite.TFLiteError, match="float32 conversion failed"):
        tflite.convert(str(tmp_path / "model"), "float32")


def test_float32_build_keeps_the_weights(builds, style_net):
    # Dropped variables show as a tiny file and NaN output.
    assert len(builds["float32"]) > 4 * style_net.count_params()
    image = photo(*SIZE, seed=20)
    output = tflite.Runner(builds["float32"])(image)
    assert np.isfinite(output).all()
    np.testing.assert_allclose(output, keras_output(style_net, image), atol=0.05)


@pytest.mark.parametrize("quantization", tflite.QUANTIZATIONS)
def test_psnr_floor_against_keras(builds, style_net, quantization):
    runner = tflite.Runner(builds[quantization])
    for seed in (20, 21):
        image = photo(*SIZE, seed=seed)
        assert tflite.psnr(runner(image), keras_output(style_net, image)) >= \
            tflite.PSNR_FLOORS[quantization]
    assert tflite.PSNR_FLOORS["float16"] >= 40 and tflite.PSNR_FLOORS["dynamic_int8"] >= 30


def test_quantized_builds_are_smaller(builds):
    assert len(builds["float16"]) < 0.55 * len(builds["float32"])
    for quantization in ("dynamic_int8", "int8", "uint8"):
        assert len(builds[quantization]) < 0.3 * len(builds["float32"])


def test_signatures_and_io_types(builds):
    for quantization in tflite.QUANTIZATIONS:
        details = tflite.signature_details(builds[quantization])
        assert list(details["inputs"]) == [tflite.INPUT]
        assert list(details["outputs"]) == [tflite.OUTPUT]
        assert details["inputs"][tflite.INPUT]["shape"] == [1, *SIZE, 3]
        dtype = "uint8" if quantization == "uint8" else "float32"
        assert details["inputs"][tflite.INPUT]["dtype"] == dtype
        assert details["outputs"][tflite.OUTPUT]["dtype"] == dtype
    interp = tflite.interpreter(builds["float32"])
    assert list(interp.get_signature_list()) == [tflite.SIGNATURE]
    # Camera pixels go in unchanged: uint8 scale 1, zero point 0, in and out.
    details = tflite.signature_details(builds["uint8"])
    for side in (details["inputs"][tflite.INPUT], details["outputs"][tflite.OUTPUT]):
        scale, zero_point = side["quantization"]
        assert abs(scale - 1.0) < 0.01 and zero_point == 0


def test_uint8_build_takes_and_returns_uint8(builds, style_net):
    runner = tflite.Runner(builds["uint8"])
    image = photo(*SIZE, seed=22)
    raw = runner.runner(**{tflite.INPUT: image[None]})[tflite.OUTPUT]
    assert raw.dtype == np.uint8 and raw.shape == (1, *SIZE, 3)
    assert tflite.psnr(raw[0], keras_output(style_net, image)) >= tflite.PSNR_FLOORS["uint8"]


def test_resizable_build_runs_at_two_sizes(builds, style_net):
    assert tflite.signature_details(builds["resizable"])["inputs"][tflite.INPUT]["shape"] == [1, -1, -1, 3]
    runner = tflite.Runner(builds["resizable"])
    for height, width in ((64, 64), (50, 70)):
        image = photo(height, width, seed=23)
        output = runner(image)
        assert output.shape == (height, width, 3)
        assert tflite.psnr(output, keras_output(style_net, image)) >= 40


def test_calibrating_and_running_warn_of_no_deprecated_interpreter(style_net, tmp_path):
    """Builds run in LiteRT; the converter's calibration in TensorFlow's deprecated
    tf.lite.Interpreter is not reported as ours."""
    tflite.write_saved_model(style_net, str(tmp_path / "fixed"), SIZE)
    calibration = tflite.calibration_batches([photo(*SIZE, seed=s) for s in range(2)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = tflite.convert(str(tmp_path / "fixed"), "int8", calibration)
        tflite.Runner(model)(photo(*SIZE, seed=25))
    assert [str(w.message) for w in caught if "Interpreter" in str(w.message)] == []
    assert type(tflite.interpreter(model)).__module__ == "ai_edge_litert.interpreter"


def test_mobile_network_needs_no_mirror_pad(tmp_path):
    keras.utils.set_random_seed(3)
    net = TransformerNet(arch="mobile", width_multiplier=0.25, num_residual_blocks=1)
    net.build(INPUT_SHAPE)
    tflite.write_saved_model(net, str(tmp_path / "mobile"))
    model = tflite.convert(str(tmp_path / "mobile"), "float32")
    names = tflite.op_names(model)
    assert "DEPTHWISE_CONV_2D" in names and "MIRROR_PAD" not in names
    image = photo(50, 70, seed=24)
    assert tflite.psnr(tflite.Runner(model)(image), keras_output(net, image)) >= 60


def test_gpu_delegate_report(builds):
    """By the GPU delegate's own op rules, a fixed-shape build of the reflect network is
    taken whole (MIRROR_PAD in REFLECT mode is on its list); the resizable build computes
    its pad from the input's shape, with ops the delegate lacks."""
    counts = tflite.op_counts(builds["float16"])
    assert counts["MIRROR_PAD"] >= 8 and counts["CONV_2D"] >= 8
    assert tflite.gpu_delegate_report(builds["float16"]) == (
        f"GPU delegate: all {sum(counts.values())} ops supported")
    report = tflite.gpu_delegate_report(builds["resizable"])
    assert report.startswith("GPU delegate: unsupported: ") and "SHAPE (x" in report
    assert "MIRROR_PAD" not in report


def test_replicate_build_has_no_mirror_pad(style_net, tmp_path):
    """The trained weights in replicate padding: slices and concatenations instead of
    MIRROR_PAD, every op the GPU delegate's, at a size that needs the pad to a multiple of 4
    too, and the build matches its Keras network."""
    net = with_padding(style_net, "replicate")
    tflite.write_saved_model(net, str(tmp_path / "replicate"), (62, 62))
    model = tflite.convert(str(tmp_path / "replicate"), "float32")
    names = tflite.op_names(model)
    assert "MIRROR_PAD" not in names and "PAD" not in names and "CONCATENATION" in names
    assert tflite.gpu_delegate_report(model).startswith("GPU delegate: all ")
    image = photo(62, 62, seed=26)
    assert tflite.psnr(tflite.Runner(model)(image), keras_output(net, image)) >= 60


ONE_HOT = [0.0, 1.0, 0.0]
BLEND = [0.7, 0.0, 0.3]


def keras_styled(net, image, style_weights):
    return keras.ops.convert_to_numpy(net(np.asarray(image, np.float32)[None],
                                          style_weights=np.asarray(style_weights, np.float32)))[0]


@pytest.fixture(scope="module")
def multi_builds(multi_style_dir, tmp_path_factory):
    """The three-style `trio` converted once: {build: flatbuffer} of float32 and uint8 at
    64x64 and the resizable float32 build, and its Keras network."""
    net = load_transformer(str(multi_style_dir / "trio"))
    folder = tmp_path_factory.mktemp("tflite_multi")
    tflite.write_saved_model(net, str(folder / "fixed"), SIZE)
    tflite.write_saved_model(net, str(folder / "resizable"))
    calibration = tflite.calibration_batches([photo(*SIZE, seed=s) for s in range(4)], 3)
    assert len(calibration) == 12  # every photo with every style
    return net, {"float32": tflite.convert(str(folder / "fixed"), "float32"),
                 "uint8": tflite.convert(str(folder / "fixed"), "uint8", calibration),
                 "resizable": tflite.convert(str(folder / "resizable"), "float32")}


def test_multi_style_builds_take_the_style_weights(multi_builds):
    """LiteRT agrees with Keras for a one-hot and a blended vector, at a fixed size and at
    another size in the resizable build; the full-integer build stays over its floor."""
    net, builds = multi_builds
    for weights in (ONE_HOT, BLEND):
        for build, size in (("float32", SIZE), ("resizable", (50, 70))):
            image = photo(*size, seed=30)
            np.testing.assert_allclose(tflite.Runner(builds[build])(image, weights),
                                       keras_styled(net, image, weights), atol=0.05)
        image = photo(*SIZE, seed=31)
        assert tflite.psnr(tflite.Runner(builds["uint8"])(image, weights),
                           keras_styled(net, image, weights)) >= tflite.PSNR_FLOORS["uint8"]
    image = photo(*SIZE, seed=30)
    assert np.abs(keras_styled(net, image, ONE_HOT) - keras_styled(net, image, BLEND)).max() > 20
    with pytest.raises(tflite.TFLiteError, match="a build of several styles takes style_weights"):
        tflite.Runner(builds["float32"])(image)


def test_multi_style_signature(multi_builds, builds):
    _, multi = multi_builds
    for build, dtype in (("float32", "float32"), ("uint8", "uint8"), ("resizable", "float32")):
        inputs = tflite.signature_details(multi[build])["inputs"]
        assert sorted(inputs) == sorted([tflite.INPUT, tflite.STYLE_WEIGHTS])
        assert inputs[tflite.STYLE_WEIGHTS]["shape"] == [3]
        assert inputs[tflite.STYLE_WEIGHTS]["dtype"] == dtype
    # uint8 weights: round(255 x weight), calibrated on one-hot rows.
    scale, zero_point = tflite.signature_details(multi["uint8"])["inputs"][tflite.STYLE_WEIGHTS][
        "quantization"]
    assert abs(scale - 1 / 255) < 1e-6 and zero_point == 0
    tflite.check_builtin_only(multi["uint8"])
    assert tflite.gpu_delegate_report(multi["float32"]).startswith("GPU delegate: all ")
    with pytest.raises(tflite.TFLiteError, match="one of one style none"):
        tflite.Runner(builds["float32"])(photo(*SIZE), ONE_HOT)


def run_tool(*args):
    return subprocess.run([sys.executable, "tools/export_tflite.py", *args], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": REPO}, capture_output=True,
                          text=True, timeout=HANG_TIMEOUT)


def test_cli_builds_verifies_and_reports(tiny_style, tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    photos = tmp_path / "photos"
    photos.mkdir()
    from PIL import Image

    for i in range(2):
        Image.fromarray(photo(60 + 10 * i, 80, seed=i)).save(photos / f"p{i}.png")
    save_transformer(load_transformer(str(tiny_style)), str(tmp_path / "nets" / "toy"))
    result = run_tool("--style=toy", f"--saved_dir={tmp_path / 'nets'}",
                      f"--output_dir={tmp_path / 'out'}", "--sizes=48,resizable",
                      "--quantizations=float16,uint8", f"--eval_photos={photos}",
                      f"--calibration_photos={photos}", "--resizable_eval_size=42x58",
                      "--runs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == ""  # no start-up, converter or LiteRT lines across the progress bar
    rows = json.loads((tmp_path / "out" / "toy" / "report.json").read_text())
    # The resizable build is not made full-integer (int8 and uint8 are fixed-shape only).
    assert [(r["size"], r["quantization"]) for r in rows] == [
        ("48x48", "float16"), ("48x48", "uint8"), ("resizable", "float16")]
    for row in rows:
        assert os.path.getsize(row["path"]) == row["bytes"]
        assert row["psnr_min"] >= row["psnr_floor"] and row["latency_s"] > 0
    assert rows[2]["measured_at"] == "42x58"
    assert "| toy | 48x48 | uint8 | uint8 / uint8 |" in result.stdout
    assert "\ntoy 48x48 float16: GPU delegate: all " in result.stdout
    assert "\ntoy resizable float16: GPU delegate: unsupported: " in result.stdout
    assert rows[0]["gpu_delegate"].startswith("GPU delegate: all ")


def test_cli_builds_a_style_in_another_padding(tiny_style, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    from PIL import Image

    Image.fromarray(photo(60, 80, seed=0)).save(photos / "p0.png")
    result = run_tool("--style=tiny", f"--saved_dir={tiny_style.parent}", "--padding=replicate",
                      f"--output_dir={tmp_path / 'out'}", "--sizes=48", "--quantizations=float32",
                      f"--eval_photos={photos}", f"--calibration_photos={photos}", "--runs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    [row] = json.loads((tmp_path / "out" / "tiny_replicate" / "report.json").read_text())
    assert row["path"].endswith("tiny_replicate_48x48_float32.tflite")
    assert (row["padding"], row["saved_padding"]) == ("replicate", "reflect")
    assert "MIRROR_PAD" not in row["ops"] and row["psnr_min"] >= row["psnr_floor"]
    # Another padding changes the output (near the borders most; this untrained network at
    # 48x48 is nearly all border): measured, not a floor.
    assert 0 < row["psnr_vs_saved_min"] <= row["psnr_vs_saved_mean"] < 80
    assert "against the saved reflect network: PSNR " in result.stdout


def test_cli_builds_and_measures_every_style(multi_style_dir, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    from PIL import Image

    Image.fromarray(photo(60, 80, seed=0)).save(photos / "p0.png")
    result = run_tool("--style=trio", f"--saved_dir={multi_style_dir}", "--sizes=48",
                      "--quantizations=float32,uint8", f"--output_dir={tmp_path / 'out'}",
                      f"--eval_photos={photos}", f"--calibration_photos={photos}", "--runs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((tmp_path / "out" / "trio" / "report.json").read_text())
    assert [r["quantization"] for r in rows] == ["float32", "uint8"]
    for row in rows:
        assert row["styles"] == ["a", "b", "c"] and row["psnr_min"] >= row["psnr_floor"]
        inputs = row["signature"][tflite.SIGNATURE]["inputs"]
        assert inputs[tflite.STYLE_WEIGHTS]["shape"] == [3]
    assert "trio 48x48 uint8: GPU delegate: all " in result.stdout
    assert "PSNR over its styles (a, b, c) and their even blend" in result.stdout


@pytest.mark.parametrize("args,message", [
    (["--style=nope"], "export_tflite: error: no trained style 'nope'"),
    (["--style=toy", "--sizes=big"], "export_tflite: error: bad size 'big'"),
    (["--style=toy", "--quantizations=int4"], "export_tflite: error: unknown quantization int4"),
    (["--style=toy", "--padding=edge"], "export_tflite: error: unknown padding 'edge'"),
])
def test_cli_errors_are_one_line(tmp_path, args, message):
    result = run_tool(*args, f"--saved_dir={tmp_path}", f"--output_dir={tmp_path / 'out'}")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(message)
    assert "Traceback" not in result.stderr


def test_output_dir_is_checked_before_converting(tiny_style, tmp_path):
    """A file where the folder should be: the error names it, and nothing was converted
    (the evaluation photos, read before converting, are not even looked for)."""
    (tmp_path / "out").write_text("a file")
    result = run_tool("--style=tiny", f"--saved_dir={tiny_style.parent}",
                      f"--output_dir={tmp_path / 'out'}", f"--eval_photos={tmp_path / 'none'}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"export_tflite: error: [Errno 20] not a folder: '{tmp_path / 'out'}'")


# Staged builds --------------------------------------------------------

@pytest.fixture(scope="module")
def staged(style_net, tmp_path_factory):
    """tiny_style's 64x64 float32 staged build."""
    folder = tmp_path_factory.mktemp("staged")
    signatures = tflite.write_saved_model(style_net, str(folder), SIZE, staged=True)
    assert signatures == ["stylize", "whole", *(f"stage{i}" for i in range(7))]
    return tflite.convert(str(folder), "float32", signatures=signatures)


def test_staged_signatures(staged, builds):
    """Each stage's statistics: its normalizations (3 downsampling, 2 per residual block, 2
    upsampling), zero-padded to its widest; its input at full or a quarter resolution. The
    signatures share the weights."""
    interp = tflite.interpreter(staged)
    details = {name: interp.get_signature_runner(name).get_input_details()
               for name in interp.get_signature_list()}
    assert set(details["whole"]) == {"images", "size"}
    assert set(details["stage3"]) == {"features", "size", "core", "statistics"}
    assert details["stage0"]["statistics"]["shape"].tolist() == [3, 2, 128]
    assert details["stage0"]["images"]["shape"].tolist() == [1, 64, 64, 3]
    for i in range(1, 6):
        assert details[f"stage{i}"]["statistics"]["shape"].tolist() == [2, 2, 128]
        assert details[f"stage{i}"]["features"]["shape"].tolist() == [1, 16, 16, 128]
    assert details["stage6"]["statistics"]["shape"].tolist() == [2, 2, 64]
    assert details["stage6"]["core"]["dtype"] == np.int32
    assert len(staged) < 1.1 * len(builds["float32"])


def test_stage_takes_the_given_statistics_and_sums_its_core(staged, style_net):
    """stage0 with given statistics against Keras normalizing with the same ones: the
    quarter-resolution features agree, the sums over the core are those of the Keras
    activations over the same pixels, and `next_sums` those (about 0) of the input of
    stage1's first normalization."""
    from perceptual_style.transformer_net import statistics_hook

    rng = np.random.default_rng(3)
    image = photo(*SIZE, seed=27).astype(np.float32)
    statistics = np.zeros((3, 2, 128), np.float32)
    statistics[:, 0] = rng.normal(0, 0.1, (3, 128))
    statistics[:, 1] = rng.uniform(0.5, 2, (3, 128))
    core = np.array([8, 40, 4, 64], np.int32)  # rows 8-40, columns 4-64 of the window
    result = tflite.interpreter(staged).get_signature_runner("stage0")(
        images=image[None], size=np.array(SIZE, np.int32), core=core, statistics=statistics)
    expected_sums = []

    def given(layer, x):
        i = len(expected_sums)
        channels = x.shape[-1]
        mean, variance = statistics[i, 0, :channels], statistics[i, 1, :channels]
        scale = SIZE[0] // x.shape[1]
        part = keras.ops.convert_to_numpy(x)[0, 8 // scale:40 // scale, 4 // scale:64 // scale]
        part = part.reshape(-1, channels).astype(np.float64) - mean
        expected_sums.append((len(part), part.sum(0), (part ** 2).sum(0)))
        return mean.reshape(1, 1, 1, -1), variance.reshape(1, 1, 1, -1)

    with statistics_hook(given):
        features = keras.ops.convert_to_numpy(style_net.stages()[0](image[None]))
    np.testing.assert_allclose(result["features"], features, atol=1e-3)
    statistics = np.zeros((5, 2, 128), np.float32)  # stage1: about 0
    with statistics_hook(given):
        style_net.stages()[1](features)
    count, total, squares = expected_sums[3]
    np.testing.assert_allclose(result["next_sums"][0], [np.full(128, count), total, squares],
                               rtol=1e-3, atol=0.05)
    for (count, total, squares), sums in zip(expected_sums, result["sums"]):
        channels = len(total)
        np.testing.assert_allclose(sums[0, :channels], count)
        np.testing.assert_allclose(sums[1, :channels], total, rtol=1e-3, atol=0.05)
        np.testing.assert_allclose(sums[2, :channels], squares, rtol=1e-3)
        assert not sums[:, channels:].any()


@pytest.mark.parametrize("shape", [(64, 64), (48, 40), (3, 50), (100, 140), (70, 200), (130, 30)])
def test_staged_build_stylizes_any_size_as_one_untiled_pass(staged, style_net, shape):
    """Up to the build's size in one `whole` pass (the photo's own statistics, its edges as
    if alone), larger in tiles stage by stage with whole-photo statistics: an untiled Keras
    pass, to float32 rounding."""
    image = photo(*shape, seed=28)
    output = tflite.StagedRunner(staged)(image)
    assert output.shape == (*shape, 3)
    assert tflite.psnr(output, keras_output(style_net, image)) >= tflite.PSNR_FLOORS["float32"]


def test_staged_build_of_several_styles_takes_the_style_weights(multi_builds, tmp_path):
    """`trio`'s staged build: every signature takes the style weights, and a one-hot
    choice and a blend come out as untiled Keras passes with those weights, for a photo
    in one `whole` pass and a larger one in tiles."""
    net, _ = multi_builds
    signatures = tflite.write_saved_model(net, str(tmp_path), SIZE, staged=True)
    model = tflite.convert(str(tmp_path), "float32", signatures=signatures)
    interp = tflite.interpreter(model)
    for name in signatures:
        inputs = interp.get_signature_runner(name).get_input_details()
        assert inputs[tflite.STYLE_WEIGHTS]["shape"].tolist() == [3], name
    runner = tflite.StagedRunner(model)
    for shape in ((48, 40), (100, 140)):
        image = photo(*shape, seed=37)
        for weights in (ONE_HOT, BLEND):
            assert tflite.psnr(runner(image, weights), keras_styled(net, image, weights)) >= \
                tflite.PSNR_FLOORS["float32"], (shape, weights)
    with pytest.raises(tflite.TFLiteError, match="a build of several styles takes style_weights"):
        runner(image)


def test_staged_build_errors_are_one_line(style_net, tmp_path):
    with pytest.raises(tflite.TFLiteError, match="a staged build needs sides that are multiples "
                                                  "of 4 over 32, not 32x64"):
        tflite.write_saved_model(style_net, str(tmp_path / "small"), (32, 64), staged=True)
    with pytest.raises(tflite.TFLiteError, match="int8 builds have the stylize signature only"):
        tflite.convert(str(tmp_path), "int8", [photo()], signatures=["stylize", "whole"])
