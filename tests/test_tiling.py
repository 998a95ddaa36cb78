"""Tiled inference with whole-photo statistics, and the colour controls. Backend-neutral."""

import functools
import gc

import keras
import numpy as np
import pytest

from conftest import multi_style_net, photo
from perceptual_style import color, tiling
from perceptual_style.transformer_net import statistics_hook


# Tiling ---------------------------------------------------------------

def test_grid_of_clipped_and_of_fixed_windows():
    """Cores of 32 with 16 pixels of context along a side of 98 (padded to 100): windows cut
    at the padded side, or of a fixed 64 pixels shifted inwards; one window of 64 over a
    side of 40 starts at 0."""
    assert tiling.grid(98, 100, 32, 16) == [(0, 32, 0, 48), (32, 64, 16, 80), (64, 96, 48, 100),
                                            (96, 98, 80, 100)]
    assert tiling.grid(98, 100, 32, 16, 64) == [(0, 32, 0, 64), (32, 64, 16, 80),
                                                (64, 96, 36, 100), (96, 98, 36, 100)]
    assert tiling.grid(40, 64, 32, 16, 64) == [(0, 32, 0, 64), (32, 40, 0, 64)]


def test_tiles_agree_with_the_untiled_pass_seams_included(net):
    """Exact whole-image statistics + margins beyond the receptive field: the tiled result
    equals the untiled one to float rounding, everywhere (stated tolerance: 0.01 grey
    levels on 0-255), including the cross-faded seams."""
    image = photo(100, 200)  # 2 x 4 tiles of 64, their last row and column partial
    assert not tiling.window_fits(image.shape, 64, 64)
    untiled = tiling._run(net, image)
    tiled = tiling.stylize_image(net, image, tile_size=64, margin=64, blend=16)
    assert tiled.shape == untiled.shape
    difference = np.abs(tiled - untiled)
    seams = np.zeros(image.shape[:2], bool)
    seams[list(range(56, 100, 64))] = True  # rows and columns across each blend band
    seams[:, list(range(56, 200, 64))] = True
    assert difference[seams].max() < 0.01
    assert difference.max() < 0.01


def test_tiles_of_a_photo_under_five_pixels_high_agree_with_the_untiled_pass(net):
    """Grown by its edge, then reflection-padded, as the network grows it untiled."""
    image = photo(3, 200)
    assert not tiling.window_fits(image.shape, 64, 64)
    tiled = tiling.stylize_image(net, image, tile_size=64, margin=64, blend=16)
    assert np.abs(tiled - tiling._run(net, image)).max() < 0.01


@pytest.mark.parametrize("config", [{"padding": "replicate"}, {"padding": "zero"},
                                    {"arch": "mobile", "width_multiplier": 0.25}])
def test_tiles_agree_with_the_untiled_pass_in_every_padding(config):
    """Tiles pad the photo as the network does (TransformerNet.pad_input), so tiling stays
    exact whatever the padding, the mobile network's zeros included."""
    net = multi_style_net(num_styles=1, num_residual_blocks=1, **config)
    image = photo(75, 103)
    tiled = tiling.stylize_image(net, image, tile_size=32, margin=64, blend=16)
    assert np.abs(tiled - tiling._run(net, image)).max() < 0.01


def test_a_pass_stopped_at_its_layer_frees_its_activations_at_once():
    """A statistics pass ends by an exception through the network's layers; none of its
    frames (and so none of its activations) is left in reference cycles for the garbage
    collector, and Keras' traceback filtering is as it was after (on), also when a pass
    fails."""
    net = multi_style_net(num_styles=1, num_residual_blocks=1)
    image = photo(40, 200)
    assert not tiling.window_fits(image.shape, 32, 64)
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        tiling.stylize_image(net, image, tile_size=32, margin=64, blend=16)
        gc.collect()
        # The pass's frames (which hold its activations); other tests may leave garbage.
        left = [o.f_code.co_name for o in gc.garbage if type(o).__name__ == "frame"
                and "perceptual_style" in o.f_code.co_filename]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == []
    assert keras.config.is_traceback_filtering_enabled()
    with pytest.raises(ValueError):
        tiling.stylize_image(net, image[..., :2], tile_size=32, margin=64, blend=16)
    assert keras.config.is_traceback_filtering_enabled()


def test_per_tile_statistics_would_show_seams(net):
    """Why statistics are shared: two halves, each stylized with its own statistics in a
    window of 32 columns' margin (windows of one shape: one compilation on JAX), differ
    from the untiled pass (measured: by 54 grey levels on average)."""
    image = photo(100, 200)
    untiled = tiling._run(net, image)
    per_tile = np.concatenate([tiling._run(net, image[:, :132])[:, :100],
                               tiling._run(net, image[:, 68:])[:, 32:]], axis=1)
    assert np.abs(per_tile - untiled).mean() > 1.0


def test_scaled_statistics_are_shared_by_all_tiles(net):
    """The faster option: tiled equals an untiled pass that uses the same statistics (of a
    scaled copy), so tiles differ from each other in nothing."""
    image = photo(170, 200)
    assert not tiling.window_fits(image.shape, 64, 64)
    values = tiling.scaled_statistics(net, image, 128)
    assert len(values) == 15  # 3 down + 2 x 5 residual + 2 up layers
    with statistics_hook(lambda layer, x: values[layer.path]):
        reference = tiling._run(net, image)
    tiled = tiling.stylize_image(net, image, tile_size=64, margin=64, blend=16,
                                 statistics="scaled", statistics_side=128)
    assert np.abs(tiled - reference).max() < 0.01


def test_tiles_of_a_multi_style_network_agree_with_its_untiled_pass():
    """Conditional instance normalization changes only the scale and offset applied after
    the whole-image statistics: a blend of styles tiles exactly (bound as the commands bind
    it; a small network, one residual block, for speed)."""
    net = functools.partial(multi_style_net(3, num_residual_blocks=1, width_multiplier=0.5),
                            style_weights=np.array([0.5, 0.0, 0.5], np.float32))
    image = photo(100, 170)
    tiled = tiling.stylize_image(net, image, tile_size=64, margin=48, blend=16)
    assert not tiling.window_fits(image.shape, 64, 48)
    assert np.abs(tiled - tiling._run(net, image)).max() < 0.01


def test_small_images_run_in_one_compiled_pass_as_the_network_computes_them(net):
    """tiling.forward (on TensorFlow a graph, frozen in float32) gives what the network
    gives eagerly, photos and batches of frames alike, and for a network of several styles
    each style it is bound to (its one graph takes the style weights as an input)."""
    image = photo(31, 45)
    assert tiling.window_fits(image.shape)
    assert np.abs(tiling.stylize_image(net, image) - tiling._run(net, image)).max() < 0.01
    frames = np.stack([photo(40, 36, seed) for seed in range(3)])
    assert np.abs(tiling.stylize_batch(net, frames) - tiling._run_batch(net, frames)).max() < 0.01
    several = multi_style_net(3, num_residual_blocks=1, width_multiplier=0.5)
    outputs = []
    for weights in [np.eye(3, dtype=np.float32)[2], np.array([0.2, 0.5, 0.3], np.float32)]:
        bound = functools.partial(several, style_weights=weights)
        outputs.append(tiling.stylize_image(bound, image))
        assert np.abs(outputs[-1] - tiling._run(bound, image)).max() < 0.01
    assert np.abs(outputs[0] - outputs[1]).max() > 1  # the styles differ


# Colour controls ----------------------------------------------------------------------------

def test_preserve_color_keeps_chroma_and_takes_luminance():
    rng = np.random.default_rng(0)
    photo_rgb = rng.uniform(60, 200, (50, 40, 3)).astype(np.float32)
    stylized = rng.uniform(60, 200, (50, 40, 3)).astype(np.float32)
    out = color.preserve_color(stylized, photo_rgb)
    inside = np.all((out > 0) & (out < 255), -1)
    assert inside.mean() > 0.9
    out_ycc, photo_ycc, stylized_ycc = (color.rgb_to_ycbcr(a) for a in (out, photo_rgb, stylized))
    np.testing.assert_allclose(out_ycc[inside][:, 1:], photo_ycc[inside][:, 1:], atol=1e-3)
    np.testing.assert_allclose(out_ycc[inside][:, 0], stylized_ycc[inside][:, 0], atol=1e-3)


def test_ycbcr_round_trip():
    rgb = np.random.default_rng(0).uniform(0, 255, (10, 3)).astype(np.float32)
    np.testing.assert_allclose(color.ycbcr_to_rgb(color.rgb_to_ycbcr(rgb)), rgb, atol=1e-3)


def test_mix_ends_and_middle():
    a, b = np.full((2, 2, 3), 200.0), np.full((2, 2, 3), 100.0)
    assert np.all(color.mix(a, b, 1.0) == 200) and np.all(color.mix(a, b, 0.0) == 100)
    assert np.allclose(color.mix(a, b, 0.25), 125)
