import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import REPO, multi_style_net, single_style_twin
from perceptual_style.saved_nets import (load_metadata, load_style_names, load_transformer,
                                         save_transformer)
from perceptual_style.transformer_net import (INPUT_SHAPE, InstanceNormalization,
                                              PADDINGS, ConvLayer, NearestUpsampling2D,
                                              Padding2D, TransformerNet, UpsampleConvLayer,
                                              add_style, blocked_conv, edge_hook,
                                              kernels,
                                              fill_beyond, is_normalization, pad,
                                              select_styles, statistics_hook, style_network,
                                              with_padding)
from weight_files import damaged_copies


@pytest.mark.parametrize("upsampling", ["nearest", "transpose"])
@pytest.mark.parametrize("height,width", [(32, 32), (37, 53), (17, 90), (64, 41)])
def test_output_has_input_size_and_range(upsampling, height, width):
    net = TransformerNet(upsampling=upsampling)
    images = np.random.default_rng(0).uniform(0, 255, (2, height, width, 3)).astype("float32")
    out = keras.ops.convert_to_numpy(net(images))
    assert out.shape == (2, height, width, 3)
    assert out.min() >= 0 and out.max() <= 255
    # Odd sizes: the same as the network on the image reflection-padded (numpy) to a
    # multiple of 4, cropped back.
    padded = np.pad(images, ((0, 0), (0, -height % 4), (0, -width % 4), (0, 0)), mode="reflect")
    whole = keras.ops.convert_to_numpy(net(padded))
    np.testing.assert_allclose(out, whole[:, :height, :width], atol=0.05)


@pytest.mark.parametrize("config", [{}, {"upsampling": "transpose"},
                                    {"arch": "mobile", "width_multiplier": 0.25}])
def test_build_creates_every_weight_without_an_image(config):
    built = TransformerNet(**config)
    built.build(INPUT_SHAPE)
    image = np.random.default_rng(2).uniform(0, 255, (1, 20, 28, 3)).astype("float32")
    called = TransformerNet(**config)
    called(image)  # built by its first call, as before build() existed
    assert built.built and len(built.weights) == len(called.weights) > 0
    assert [w.shape for w in built.weights] == [w.shape for w in called.weights]
    called.set_weights(built.get_weights())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(built(image)),
                                  keras.ops.convert_to_numpy(called(image)))


def test_paper_architecture():
    net = TransformerNet()
    net(np.zeros((1, 32, 32, 3), "float32"))
    convs = [layer for layer in net._flatten_layers() if isinstance(layer, keras.layers.Conv2D)]
    kernels = [(c.kernel_size[0], c.strides[0], c.filters) for c in convs]
    assert kernels[:3] == [(9, 1, 32), (3, 2, 64), (3, 2, 128)]
    assert kernels[3:13] == [(3, 1, 128)] * 10  # five residual blocks of two convs
    assert kernels[13:] == [(3, 1, 64), (3, 1, 32), (9, 1, 3)]
    norms = [layer for layer in net._flatten_layers() if isinstance(layer, InstanceNormalization)]
    assert len(norms) == len(convs) - 1  # after every conv but the last


def test_instance_normalization_matches_numpy():
    x = np.random.default_rng(1).normal(3, 2, (2, 5, 7, 4)).astype("float32")
    layer = InstanceNormalization(epsilon=1e-5)
    layer.build(x.shape)
    layer.scale.assign(np.array([1, 2, 3, 4], "float32"))
    layer.offset.assign(np.array([0, 1, 0, -1], "float32"))
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)
    expected = (x - mean) / np.sqrt(var + 1e-5) * np.array([1, 2, 3, 4]) + np.array([0, 1, 0, -1])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, rtol=1e-4, atol=1e-4)


NUMPY_MODES = {"reflect": "reflect", "replicate": "edge", "zero": "constant"}


@pytest.mark.parametrize("mode", PADDINGS)
def test_padding_matches_numpy(mode):
    x = np.arange(2 * 4 * 5 * 3, dtype="float32").reshape(2, 4, 5, 3)
    out = keras.ops.convert_to_numpy(Padding2D(2, mode)(x))
    np.testing.assert_array_equal(out, np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)),
                                              mode=NUMPY_MODES[mode]))
    # Uneven amounts, and amounts known only at run time (tensors: replicate's gather path).
    expected = np.pad(x, ((0, 0), (0, 3), (1, 2), (0, 0)), mode=NUMPY_MODES[mode])
    for amounts in [((0, 3), (1, 2)), ((0, keras.ops.convert_to_tensor(3)),
                                       (1, keras.ops.convert_to_tensor(2)))]:
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(pad(x, *amounts, mode)), expected)


@pytest.mark.parametrize("mode", PADDINGS)
def test_fill_beyond_puts_the_padding_past_the_image(mode):
    """The 3 x 4 image in the corner of a 7 x 8 tensor: within the reach of a padding of 2,
    what padding the image alone would give; the image itself unchanged."""
    x = np.random.default_rng(0).normal(size=(1, 7, 8, 2)).astype("float32")
    filled = keras.ops.convert_to_numpy(fill_beyond(x, keras.ops.convert_to_tensor(3),
                                                    keras.ops.convert_to_tensor(4), mode))
    padded = np.pad(x[:, :3, :4], ((0, 0), (0, 2), (0, 2), (0, 0)), mode=NUMPY_MODES[mode])
    np.testing.assert_array_equal(filled[:, :5, :6], padded)


@pytest.mark.parametrize("config", [{}, {"padding": "replicate"}, {"padding": "zero"},
                                    {"upsampling": "transpose"},
                                    {"arch": "mobile", "width_multiplier": 0.25}])
def test_a_photo_in_a_larger_input_runs_as_alone(config):
    """A 21 x 26 photo in the corner of a 32 x 32 input, filled as the network pads
    (fill_input), the rest filled before each convolution (edge_hook) and the statistics
    taken over the padded photo only: the photo's pixels come out as from an untiled pass."""
    keras.utils.set_random_seed(6)
    net = TransformerNet(num_residual_blocks=1, **config)
    net.build(INPUT_SHAPE)
    image = np.random.default_rng(6).uniform(0, 255, (1, 21, 26, 3)).astype("float32")
    window = np.zeros((1, 32, 32, 3), "float32")
    window[:, :21, :26] = image
    rows, cols = (int(v) for v in net.padded_size(21, 26))
    assert (rows, cols) == (24, 28)

    def moments(layer, x):
        scale = 32 // x.shape[1]
        return keras.ops.moments(x[:, :rows // scale, :cols // scale], axes=(1, 2), keepdims=True)

    def fill(x, mode):
        return fill_beyond(x, rows // (32 // x.shape[1]), cols // (32 // x.shape[2]), mode)

    with statistics_hook(moments), edge_hook(fill):
        output = net(net.fill_input(window, 21, 26))
    alone = keras.ops.convert_to_numpy(net(image))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(output)[:, :21, :26], alone, atol=0.01)
    assert np.abs(keras.ops.convert_to_numpy(net(window))[:, :21, :26] - alone).max() > 1


def test_replicate_pads_a_single_pixel():
    x = np.full((1, 1, 1, 3), 7.0, "float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(pad(x, (4, 4), (4, 4), "replicate")),
                                  np.full((1, 9, 9, 3), 7.0, "float32"))


@pytest.mark.parametrize("padding", ["replicate", "zero"])
def test_padding_modes_keep_the_weights_and_pad_odd_sizes_their_way(padding):
    """Same weights, other padding: the same number of parameters, output of any size (no
    growth to MIN_SIDE), and odd sizes equal to the network on the image padded (numpy, in
    that mode) to a multiple of 4, cropped back."""
    keras.utils.set_random_seed(8)
    net = TransformerNet(num_residual_blocks=1, width_multiplier=0.25)
    net.build(INPUT_SHAPE)
    other = with_padding(net, padding)
    assert other.padding == padding and other.get_config()["padding"] == padding
    for a, b in zip(net.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(9)
    for height, width in [(1, 1), (2, 3), (13, 18)]:
        images = rng.uniform(0, 255, (1, height, width, 3)).astype("float32")
        out = keras.ops.convert_to_numpy(other(images))
        assert out.shape == images.shape
        padded = np.pad(images, ((0, 0), (0, -height % 4), (0, -width % 4), (0, 0)),
                        mode=NUMPY_MODES[padding])
        whole = keras.ops.convert_to_numpy(other(padded))
        np.testing.assert_allclose(out, whole[:, :height, :width], atol=1e-3)
    image = rng.uniform(0, 255, (1, 16, 16, 3)).astype("float32")
    assert np.abs(keras.ops.convert_to_numpy(other(image) - net(image))).max() > 0.01


def test_padding_config(tmp_path):
    """Default reflect; a config saved before the key existed loads as reflect; the key round
    trips through savedNets; the mobile network pads with zeros only; a bad value is one line."""
    net = TransformerNet(num_residual_blocks=0, width_multiplier=0.25)
    assert net.padding == "reflect" and net.get_config()["padding"] == "reflect"
    old = {k: v for k, v in net.get_config().items() if k != "padding"}
    assert TransformerNet.from_config(old).padding == "reflect"
    net.build(INPUT_SHAPE)
    save_transformer(with_padding(net, "replicate"), str(tmp_path / "replicate"))
    assert load_transformer(str(tmp_path / "replicate")).padding == "replicate"
    assert TransformerNet(arch="mobile").padding == "zero"
    for config in [{"padding": "edge"}, {"arch": "mobile", "padding": "reflect"}]:
        with pytest.raises(ValueError, match=r"^padding must be one of \('reflect', "
                                             r"'replicate', 'zero'\) \(the mobile network: zero\)"):
            TransformerNet(**config)


def test_serialization_round_trip(tmp_path):
    net = TransformerNet(upsampling="transpose")
    images = np.random.default_rng(2).uniform(0, 255, (1, 24, 28, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(net(images))
    path = str(tmp_path / "net.keras")
    net.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, TransformerNet) and restored.upsampling == "transpose"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(restored(images)), expected, atol=1e-4)
    for layer in (InstanceNormalization(epsilon=1e-3), Padding2D(3, "replicate")):
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()


def test_nearest_upsampling_repeats_pixels():
    x = np.random.default_rng(3).normal(size=(2, 3, 5, 4)).astype("float32")
    out = keras.ops.convert_to_numpy(NearestUpsampling2D()(x))
    np.testing.assert_array_equal(out, x.repeat(2, axis=1).repeat(2, axis=2))


def _upsampling_layer(padding, num_styles, channels_in=5, filters=6, seed=0):
    """A nearest UpsampleConvLayer, its bias and normalization parameters drawn (random)."""
    layer = UpsampleConvLayer(filters, padding=padding, num_styles=num_styles)
    layer.build((None, None, None, channels_in))
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(0.1, 1, w.shape).astype("float32") for w in layer.get_weights()])
    return layer


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("num_styles", [1, 3])
@pytest.mark.parametrize("height,width", [(5, 7), (6, 4), (1, 3), (2, 1)])
def test_upsampling_equals_resize_pad_and_3x3_convolution(padding, num_styles, height, width):
    """The 2x2 convolution at the input's resolution computes the paper's nearest
    upsampling: repeat every pixel 2x2, pad 1 pixel, 3x3 convolution, then instance norm
    and ReLU (numpy, and one convolution op)."""
    layer = _upsampling_layer(padding, num_styles)
    x = np.random.default_rng(1).normal(size=(2, height, width, 5)).astype("float32")
    weights = np.array([0.2, 0.5, 0.3], "float32") if num_styles == 3 else None
    out = keras.ops.convert_to_numpy(layer(x) if weights is None else layer(x, style_weights=weights))
    kernel, bias, scale, offset = layer.get_weights()
    upsampled = x.repeat(2, axis=1).repeat(2, axis=2)
    padded = np.pad(upsampled, ((0, 0), (1, 1), (1, 1), (0, 0)), mode=NUMPY_MODES[padding])
    y = keras.ops.convert_to_numpy(keras.ops.conv(padded, kernel)) + bias
    if weights is not None:
        scale, offset = weights @ scale, weights @ offset
    y = (y - y.mean(axis=(1, 2), keepdims=True)) / np.sqrt(y.var(axis=(1, 2), keepdims=True) + 1e-5)
    expected = np.maximum(y * scale + offset, 0)
    assert out.shape == (2, 2 * height, 2 * width, 6)
    np.testing.assert_allclose(out, expected, atol=2e-5)


@pytest.mark.parametrize("padding", PADDINGS)
def test_upsampling_trains_the_3x3_kernel_as_resize_then_convolution(padding):
    """A training step of the upsampling layer moves the weights (the 3x3 kernel among
    them) as one of nearest upsampling then the padded 3x3 ConvLayer with the same weights."""
    layer = _upsampling_layer(padding, 1)
    reference = [NearestUpsampling2D(), ConvLayer(6, 3, padding=padding)]
    reference[1].build((None, None, None, 5))
    reference[1].set_weights(layer.get_weights())
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 5, 6, 5)).astype("float32")
    y = rng.normal(size=(2, 10, 12, 6)).astype("float32")
    trained = []
    for layers in ([layer], reference):
        model = keras.Sequential([keras.Input((None, None, 5)), *layers])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        before = model.get_weights()
        model.train_on_batch(x, y)
        trained.append(model.get_weights())
        # Kernel, bias, scale, offset: the bias gets no gradient through instance norm.
        moved = [np.abs(a - b).max() > 1e-4 for a, b in zip(before, trained[-1])]
        assert moved == [True, False, True, True]
    for ours, theirs in zip(*trained):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("height,width", [(7, 10), (6, 5), (5, 9)])
def test_the_trainers_blocked_output_convolution_trains_as_the_convolution(height, width):
    """The trainer's `narrow_conv` (blocked_conv, a stride-2 convolution to 2x2 blocks):
    the output layer's 9x9 convolution to 3 channels gives the same output, odd and even
    sizes, and a training step moves its weights as the plain convolution's does."""
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 255, (2, height, width, 5)).astype("float32")
    y = rng.normal(size=(2, height, width, 3)).astype("float32")
    trained = []
    for narrow in (None, blocked_conv):
        layer = ConvLayer(3, 9, normalize=False, relu=False)
        layer.build((None, None, None, 5))
        layer.set_weights([rng.normal(0, 0.02, w.shape).astype("float32") if i == 0 else
                           np.array([0.1, -0.2, 0.3], "float32")
                           for i, w in enumerate(layer.get_weights())] if not trained else
                          trained[0][0])
        model = keras.Sequential([keras.Input((height, width, 5)), layer])
        model.compile(optimizer=keras.optimizers.SGD(1e-4), loss="mse")
        with kernels(**({} if narrow is None else {"narrow_conv": narrow})):
            out = keras.ops.convert_to_numpy(model(x))
            before = model.get_weights()
            model.train_on_batch(x, y)
        trained.append((before, out, model.get_weights()))
    (before, plain, after), (_, blocked, blocked_after) = trained
    assert plain.shape == (2, height, width, 3)
    np.testing.assert_allclose(blocked, plain, rtol=1e-5, atol=1e-4)
    assert all(np.abs(a - b).max() > 1e-6 for a, b in zip(before, after))
    for ours, theirs in zip(blocked_after, after):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)


def test_mobile_architecture():
    net = TransformerNet(arch="mobile", width_multiplier=0.5, num_residual_blocks=3)
    images = np.random.default_rng(4).uniform(0, 255, (1, 37, 53, 3)).astype("float32")
    out = keras.ops.convert_to_numpy(net(images))
    assert out.shape == (1, 37, 53, 3) and out.min() >= 0 and out.max() <= 255
    layers = list(net._flatten_layers())
    assert not [layer for layer in layers if isinstance(layer, Padding2D)]
    separable = [layer for layer in layers if isinstance(layer, keras.layers.SeparableConv2D)]
    # Two down, two per residual block, two up.
    assert [(s.strides[0], s.filters) for s in separable] == (
        [(2, 32), (2, 64)] + [(1, 64)] * 6 + [(1, 32), (1, 16)])
    full = TransformerNet()
    full(images)
    assert net.count_params() < full.count_params() / 20
    with pytest.raises(ValueError, match="arch must be one of"):
        TransformerNet(arch="tiny")


def test_mobile_network_round_trips_through_saved_nets(tmp_path):
    keras.utils.set_random_seed(5)
    net = TransformerNet(arch="mobile", width_multiplier=0.25, num_residual_blocks=2)
    images = np.random.default_rng(6).uniform(0, 255, (1, 32, 40, 3)).astype("float32")
    net(images)
    net.set_weights([w + np.float32(0.05) for w in net.get_weights()])
    save_transformer(net, str(tmp_path / "mobile"))
    restored = load_transformer(str(tmp_path / "mobile"))
    assert restored.get_config() == net.get_config()
    assert restored.arch == "mobile" and restored.width_multiplier == 0.25
    # float16 storage changes outputs by well under a grey level
    np.testing.assert_allclose(keras.ops.convert_to_numpy(restored(images)),
                               keras.ops.convert_to_numpy(net(images)), atol=0.5)
    clone = TransformerNet.from_config(net.get_config())
    assert clone.get_config() == net.get_config()


def test_images_of_one_to_four_pixels_are_grown_by_their_edge_and_cropped_back(net):
    """Reflection padding needs 5 pixels; smaller sides repeat their last row or column
    up to 5, so a 2 x 3 image gives the top-left of its edge-padded 5 x 5 version."""
    rng = np.random.default_rng(7)
    for height, width in [(1, 1), (2, 3), (4, 4), (3, 9)]:
        image = rng.uniform(0, 255, (1, height, width, 3)).astype("float32")
        grown = np.pad(image, ((0, 0), (0, max(5 - height, 0)), (0, max(5 - width, 0)), (0, 0)),
                       mode="edge")
        out = keras.ops.convert_to_numpy(net(image))
        np.testing.assert_allclose(out, keras.ops.convert_to_numpy(net(grown))[:, :height, :width],
                                   atol=1e-3)
    # The mobile network's zero padding takes any size as it is.
    mobile = TransformerNet(arch="mobile", width_multiplier=0.25, num_residual_blocks=1)
    assert keras.ops.convert_to_numpy(mobile(np.zeros((1, 1, 2, 3), "float32"))).shape == (1, 1, 2, 3)


@pytest.mark.parametrize("config,message", [
    ({"num_residual_blocks": 1000}, "num_residual_blocks must be an integer from 0 to 32, got 1000"),
    ({"num_residual_blocks": 2.5}, "num_residual_blocks must be an integer"),
    ({"width_multiplier": 0}, r"width_multiplier must be a number in \(0, 4\], got 0"),
    ({"width_multiplier": "wide"}, "width_multiplier must be a number"),
    ({"num_styles": 0}, "num_styles must be an integer from 1 to 1024, got 0"),
    ({"num_styles": 2.0}, "num_styles must be an integer"),
])
def test_configs_beyond_any_network_are_refused_before_building(config, message):
    with pytest.raises(ValueError, match=message):
        TransformerNet(**config)


def small_net(seed=8):
    keras.utils.set_random_seed(seed)
    net = TransformerNet(arch="mobile", width_multiplier=0.25, num_residual_blocks=1)
    net.build(INPUT_SHAPE)
    return net


def test_damaged_weights_and_crafted_configs_are_one_line_errors(tmp_path):
    net = small_net()
    save_transformer(net, str(tmp_path / "good"))
    data = (tmp_path / "good" / "weights.npz").read_bytes()
    for kind, damaged in damaged_copies(data).items():
        (tmp_path / kind).mkdir()
        (tmp_path / kind / "weights.npz").write_bytes(damaged)
        with pytest.raises(ValueError, match=r"weights.npz: (not an|damaged) \.npz archive") as error:
            load_transformer(str(tmp_path / kind))
        assert "\n" not in str(error.value), kind
    weights = {f"w{i:03d}": w for i, w in enumerate(net.get_weights())}
    for config, message in [
        ([1, 2], "its config is not a TransformerNet's"),
        ({**net.get_config(), "num_residual_blocks": 1000},
         "bad TransformerNet config .num_residual_blocks must be an integer from 0 to 32"),
    ]:
        (tmp_path / "crafted").mkdir(exist_ok=True)
        np.savez(tmp_path / "crafted" / "weights.npz", config=np.array(json.dumps(config)), **weights)
        with pytest.raises(ValueError, match=message):
            load_transformer(str(tmp_path / "crafted"))


KILLED_SAVE = """
import os, signal, sys
from perceptual_style import saved_nets
net = saved_nets.load_transformer(sys.argv[1])
net.set_weights([w + 1 for w in net.get_weights()])
saved_nets.write_json = lambda path, data: os.kill(os.getpid(), signal.SIGKILL)
saved_nets.save_transformer(net, sys.argv[1], {"run": 2})
"""


def test_a_style_is_replaced_as_a_unit_even_when_killed_between_its_files(tmp_path):
    folder = tmp_path / "style"
    save_transformer(small_net(), str(folder), {"run": 1})
    before = (folder / "weights.npz").read_bytes()
    killed = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(folder)], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-3000:]  # after the weights, before metadata
    assert (folder / "weights.npz").read_bytes() == before
    assert load_metadata(str(folder)) == {"run": 1}
    assert [name for name in os.listdir(tmp_path) if not name.startswith(".")] == ["style"]
    newer = small_net(seed=9)
    save_transformer(newer, str(folder), {"run": 3})
    assert sorted(os.listdir(folder)) == ["metadata.json", "weights.npz"]
    assert load_metadata(str(folder)) == {"run": 3}
    assert (folder / "weights.npz").read_bytes() != before


# Several styles: conditional instance normalization (Dumoulin et al. 2017) -----------------

SMALL = {"width_multiplier": 0.25, "num_residual_blocks": 1}
SMALL_CONFIGS = [SMALL, {**SMALL, "upsampling": "transpose"}, {**SMALL, "arch": "mobile"}]


def numpy_out(net, images, **kwargs):
    return keras.ops.convert_to_numpy(net(images, **kwargs))


@pytest.mark.parametrize("config", SMALL_CONFIGS)
def test_one_hot_style_weights_give_the_network_of_that_style(config):
    """Each style is the single-style network with that style's normalization row and the
    shared convolutions; weights of shape (batch, N) give each image its own style."""
    net = multi_style_net(3, **config)
    images = np.random.default_rng(10).uniform(0, 255, (2, 22, 27, 3)).astype("float32")
    outputs = []
    for style in range(3):
        one_hot = np.eye(3, dtype="float32")[style]
        outputs.append(numpy_out(net, images, style_weights=one_hot))
        np.testing.assert_allclose(outputs[-1], numpy_out(single_style_twin(net, one_hot), images),
                                   atol=1e-4)
    assert min(np.abs(outputs[a] - outputs[b]).mean() for a, b in [(0, 1), (1, 2), (0, 2)]) > 1
    per_image = numpy_out(net, images, style_weights=np.eye(3, dtype="float32")[[2, 0]])
    np.testing.assert_allclose(per_image, np.stack([outputs[2][0], outputs[0][1]]), atol=1e-4)


@pytest.mark.parametrize("config", SMALL_CONFIGS[::2])
def test_blended_style_weights_interpolate_the_normalization_parameters(config):
    net = multi_style_net(3, **config)
    images = np.random.default_rng(11).uniform(0, 255, (1, 25, 20, 3)).astype("float32")
    blend = np.array([0.2, 0.5, 0.3], "float32")
    np.testing.assert_allclose(numpy_out(net, images, style_weights=blend),
                               numpy_out(single_style_twin(net, blend), images), atol=1e-3)


def test_style_weights_that_do_not_fit_the_network_are_refused():
    net = multi_style_net(3, **SMALL)
    images = np.zeros((1, 8, 8, 3), "float32")
    for weights, shape in [(None, "none"), (np.ones(2, "float32"), r"\(2,\)"),
                           (np.ones((1, 1, 3), "float32"), r"\(1, 1, 3\)")]:
        with pytest.raises(ValueError, match=r"a network of 3 styles takes style_weights of "
                                             r"shape \(3,\) or \(batch, 3\), got " + shape):
            net(images, style_weights=weights)
    single = TransformerNet(**SMALL)
    single.build(INPUT_SHAPE)
    with pytest.raises(ValueError, match="a single-style network takes no style_weights"):
        single(images, style_weights=np.ones(1, "float32"))


def test_multi_style_config_round_trip():
    net = multi_style_net(4, **SMALL, arch="mobile")
    clone = TransformerNet.from_config(net.get_config())
    clone.build(INPUT_SHAPE)
    assert clone.num_styles == 4 and clone.get_config() == net.get_config()
    assert [w.shape for w in clone.weights] == [w.shape for w in net.weights]
    layer = InstanceNormalization(num_styles=4)
    assert InstanceNormalization.from_config(layer.get_config()).num_styles == 4
    # A config from before num_styles existed builds today's single-style network.
    old = {k: v for k, v in TransformerNet(**SMALL).get_config().items() if k != "num_styles"}
    assert TransformerNet.from_config(old).num_styles == 1


def test_multi_style_network_round_trips_through_saved_nets(tmp_path):
    """float16 storage keeps every style within the tolerance single styles have; the
    metadata names the styles, and a network of several is not saved without them."""
    keras.utils.set_random_seed(5)
    net = TransformerNet(arch="mobile", width_multiplier=0.25, num_residual_blocks=2, num_styles=3)
    net.build(INPUT_SHAPE)
    # As the single-style round trip above, each style's (N, channels) rows drawn apart.
    rng = np.random.default_rng(5)
    net.set_weights([w + np.float32(0.05) + rng.normal(0, 0.1 if w.ndim == 2 else 0, w.shape)
                     .astype("float32") for w in net.get_weights()])
    images = np.random.default_rng(6).uniform(0, 255, (1, 32, 40, 3)).astype("float32")
    folder = str(tmp_path / "trio")
    with pytest.raises(ValueError, match="a network of 3 styles needs a metadata 'styles' list"):
        save_transformer(net, folder)
    for names, message in [("ab", "of 3 entries, each with a name; found 2"),
                           (["a", "b:c", "d"], "style name 'b:c'"),
                           ("aba", "style names repeat")]:
        with pytest.raises(ValueError, match=message):
            save_transformer(net, folder, {"styles": [{"name": name} for name in names]})
    save_transformer(net, folder, {"styles": [{"name": name} for name in "abc"]})
    restored = load_transformer(folder)
    assert restored.get_config() == net.get_config()
    assert load_style_names(folder, ".", restored.num_styles) == ["a", "b", "c"]
    for weights in (np.eye(3, dtype="float32")[1], np.array([0.6, 0.0, 0.4], "float32")):
        np.testing.assert_allclose(numpy_out(restored, images, style_weights=weights),
                                   numpy_out(net, images, style_weights=weights), atol=0.5)


@pytest.mark.parametrize("config", SMALL_CONFIGS[::2])
def test_an_added_style_leaves_every_old_style_bit_for_bit(config):
    """add_style grows a network of two styles, or of one, by a style: the old styles'
    outputs are exactly the old network's, only the new normalization rows are new, and
    the new style computes as the single-style network it came from."""
    two = multi_style_net(2, **config)
    one = style_network(two, [0.0, 1.0])
    images = np.random.default_rng(12).uniform(0, 255, (2, 21, 26, 3)).astype("float32")
    for base in (two, one):
        n = base.num_styles
        new = style_network(base, np.full(n, 1 / n))
        rng = np.random.default_rng(n)
        new.set_weights([w + rng.normal(0, 0.3, w.shape).astype("float32") if is_normalization(v)
                         else w for v, w in zip(new.weights, new.get_weights())])
        grown = add_style(base, new)
        assert grown.num_styles == n + 1
        for style in range(n):
            before = (numpy_out(base, images) if n == 1 else
                      numpy_out(base, images, style_weights=np.eye(n, dtype="float32")[style]))
            after = numpy_out(grown, images, style_weights=np.eye(n + 1, dtype="float32")[style])
            np.testing.assert_array_equal(after, before)
        added = numpy_out(grown, images, style_weights=np.eye(n + 1, dtype="float32")[n])
        np.testing.assert_allclose(added, numpy_out(new, images), atol=1e-3)
        other = style_network(multi_style_net(2, seed=1, **config), [1.0, 0.0])
        with pytest.raises(ValueError, match="has other convolutions than the network"):
            add_style(base, other)
        assert np.abs(added - numpy_out(grown, images, style_weights=np.eye(
            n + 1, dtype="float32")[0])).mean() > 1
        for variable, old, grown_value, new_value in zip(
                base.weights, base.get_weights(), grown.get_weights(), new.get_weights()):
            if is_normalization(variable):
                np.testing.assert_array_equal(grown_value[:n], np.reshape(old, (n, -1)))
                np.testing.assert_array_equal(grown_value[n], new_value)
            else:
                np.testing.assert_array_equal(grown_value, old)


@pytest.mark.parametrize("config", SMALL_CONFIGS[::2])
def test_selected_styles_compute_bit_for_bit_as_in_the_whole_network(config):
    """select_styles keeps the convolutions and the chosen rows, in the order asked: each
    kept style's output is exactly the original's, a blend of them the original's blend
    (with the dropped styles at 0) to float rounding, and one index gives that style's
    single-style network."""
    net = multi_style_net(4, **config)
    images = np.random.default_rng(13).uniform(0, 255, (2, 21, 26, 3)).astype("float32")
    kept = select_styles(net, [3, 0, 2])
    assert kept.num_styles == 3
    for row, style in enumerate([3, 0, 2]):
        np.testing.assert_array_equal(
            numpy_out(kept, images, style_weights=np.eye(3, dtype="float32")[row]),
            numpy_out(net, images, style_weights=np.eye(4, dtype="float32")[style]))
    np.testing.assert_allclose(
        numpy_out(kept, images, style_weights=np.array([0.2, 0.5, 0.3], "float32")),
        numpy_out(net, images, style_weights=np.array([0.5, 0.0, 0.3, 0.2], "float32")),
        atol=1e-3)  # the blend's sums taken in another order
    for variable, value, whole in zip(kept.weights, kept.get_weights(), net.get_weights()):
        np.testing.assert_array_equal(value, whole[[3, 0, 2]] if is_normalization(variable)
                                      else whole)
    single = select_styles(net, [1])
    assert single.num_styles == 1
    np.testing.assert_array_equal(numpy_out(single, images), numpy_out(
        net, images, style_weights=np.eye(4, dtype="float32")[1]))
    for indices, message in [([], "needs at least one style index"),
                             ([1, 2, 1], r"style indices repeat: \[1, 2, 1\]"),
                             ([0, 4], "a network of 4 styles has indices 0 to 3"),
                             ([-1], "a network of 4 styles has indices 0 to 3")]:
        with pytest.raises(ValueError, match=message):
            select_styles(net, indices)


def test_a_new_style_starts_from_the_mean_or_one_of_the_styles():
    net = multi_style_net(3, **SMALL)
    for weights, expected in [([1 / 3] * 3, lambda w: w.mean(0)), ([0, 0, 1], lambda w: w[2])]:
        single = style_network(net, weights)
        assert single.num_styles == 1
        pairs = [(value, rows) for variable, value, rows in zip(
            single.weights, single.get_weights(), net.get_weights()) if is_normalization(variable)]
        assert pairs and all(rows.shape == (3, value.shape[0]) for value, rows in pairs)
        for value, rows in pairs:
            np.testing.assert_allclose(value, expected(rows), atol=1e-6)
