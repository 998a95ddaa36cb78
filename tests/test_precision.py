"""Stylizing in bfloat16 (--precision): within a stated error of float32 on held-out
photos, and tiled exactly as it runs untiled. Backend-neutral."""

import functools
import glob
import os

import numpy as np
import pytest

from conftest import REPO, SHARED_DATA, multi_style_net, photo, single_style_twin
from perceptual_style import saved_nets, tiling
from perceptual_style.images import fit_longer_side, load_rgb

SAVED = os.path.join(REPO, "savedNets")
EVAL_PHOTOS = sorted(glob.glob(os.path.join(SHARED_DATA, "content", "eval", "*")))[:2]
# The bound --precision=bfloat16 (and auto, where it picks it) is held to, as the README
# states it. Measured here at 256 px: PSNR 48.3-52.6 dB, 0.08-1.98% of values off by more
# than 2 grey levels, the largest single difference 8-25 levels (mosaic, trained on with the
# saturation loss, which keeps its output where tanh is steep: 16 levels before).
MIN_PSNR, MAX_SHARE_OFF_BY_2, MAX_ERROR = 45.0, 0.03, 32


def rounded(image):
    return np.round(np.clip(image, 0, 255))


@pytest.mark.skipif(not EVAL_PHOTOS, reason="needs ../shared/data/content/eval")
@pytest.mark.parametrize("style", ["snight", "mosaic", "snight_mobile"])
def test_bfloat16_stays_within_the_stated_error_of_float32(style):
    full = saved_nets.load_transformer(style, SAVED)
    half = saved_nets.load_transformer(style, SAVED, precision="bfloat16")
    assert half.compute_dtype == "bfloat16" and all(w.dtype == "float32" for w in half.weights)
    errors = []
    for path in EVAL_PHOTOS:
        image = np.asarray(fit_longer_side(load_rgb(path), 256))
        reference, result = (tiling.stylize_image(n, image) for n in (full, half))
        assert result.dtype == np.float32 and result.shape == image.shape
        errors.append(np.abs(rounded(result) - rounded(reference)))
    errors = np.concatenate([e.ravel() for e in errors])
    psnr = 10 * np.log10(255 ** 2 / np.mean(errors ** 2))
    print(f"{style}: PSNR {psnr:.1f} dB, {np.mean(errors > 2):.2%} off by > 2, max {errors.max():.0f}")
    assert psnr >= MIN_PSNR
    assert np.mean(errors > 2) <= MAX_SHARE_OFF_BY_2
    assert errors.max() <= MAX_ERROR


def test_bfloat16_tiles_agree_with_its_untiled_pass():
    """Whole-photo statistics are summed in float32 whatever the network computes in (a
    small random network: one residual block, so fewer passes and a narrower view)."""
    from perceptual_style.precision import policy
    from perceptual_style.transformer_net import INPUT_SHAPE, TransformerNet

    with policy("bfloat16"):
        half = TransformerNet(num_residual_blocks=1)
        half.build(INPUT_SHAPE)
    rng = np.random.default_rng(1)
    half.set_weights([w + rng.normal(0, 0.05, w.shape).astype(np.float32)
                      for w in half.get_weights()])
    image = photo(100, 170)
    untiled = tiling._run(half, image)
    tiled = tiling.stylize_image(half, image, tile_size=64, margin=48, blend=16)
    assert not tiling.window_fits(image.shape, 64, 48)
    difference = np.abs(tiled - untiled)
    print(f"bfloat16 tiled vs untiled: max {difference.max():.3f}, mean {difference.mean():.4f}")
    assert difference.max() < 0.01


def test_bfloat16_multi_style_network_computes_as_its_single_style_twin():
    """Normalization parameters are chosen and blended in float32, then cast as a single
    style's are: a one-hot choice gives exactly the bfloat16 single-style network, and a
    blend the one interpolated with the weights as Keras hands them on (rounded to
    bfloat16, as every argument of a bfloat16 layer is)."""
    from keras import ops

    half = multi_style_net(3, precision="bfloat16", num_residual_blocks=1, width_multiplier=0.5)
    assert half.compute_dtype == "bfloat16" and all(w.dtype == "float32" for w in half.weights)
    image = photo(40, 52)
    for weights in [*np.eye(3, dtype=np.float32), np.array([0.7, 0.0, 0.3], np.float32)]:
        received = ops.convert_to_numpy(ops.cast(ops.cast(weights, "bfloat16"), "float32"))
        twin = single_style_twin(half, received)
        assert twin.compute_dtype == "bfloat16"
        chosen = functools.partial(half, style_weights=weights)
        np.testing.assert_array_equal(tiling._run(chosen, image), tiling._run(twin, image))


def test_an_isa_cap_below_bfloat16_makes_auto_float32(tmp_path, monkeypatch):
    """oneDNN capped under AVX512_CORE_BF16 (ONEDNN_MAX_CPU_ISA, as tools/benchmark.py
    --isa=avx2 sets it) runs a bf16 CPU as one without."""
    from perceptual_style.precision import native_bf16, resolve

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu avx2 avx512f avx512_bf16\n")
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    for cap, native in [(None, True), ("AVX2", False), ("avx512_core", False),
                        ("AVX512_CORE_BF16", True), ("AVX512_CORE_AMX", True)]:
        if cap is None:
            monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
        else:
            monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
        assert native_bf16(str(cpuinfo)) is native, cap
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert resolve("auto", "tensorflow", str(cpuinfo)) == "float32"


def test_bfloat16_network_pads_in_bfloat16_and_its_output_layer_computes_in_float32():
    """Every padding of a bfloat16 network copies bfloat16 values, the float32 output
    layer's too: it pads its input before casting it (a copy half the size), which gives
    what casting first gives, bit for bit."""
    import keras
    from keras import ops

    from perceptual_style.precision import policy
    from perceptual_style.transformer_net import INPUT_SHAPE, TransformerNet, edge_hook, pad

    with policy("bfloat16"):
        half = TransformerNet(num_residual_blocks=1)
        half.build(INPUT_SHAPE)
    seen = []

    def record(x, mode):
        seen.append(keras.backend.standardize_dtype(x.dtype))
        return x

    with edge_hook(record):
        half(photo(24, 28)[None].astype(np.float32))
    # 3 down, 2 in the residual block, 2 up, then the output layer's.
    assert seen == ["bfloat16"] * 8
    features = ops.cast(np.random.default_rng(0).normal(size=(1, 12, 16, 32)), "bfloat16")
    out = half.out(features)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    cast_first = half.out.conv(pad(ops.cast(features, "float32"), (4, 4), (4, 4), "reflect"))
    np.testing.assert_array_equal(ops.convert_to_numpy(out), ops.convert_to_numpy(cast_first))
