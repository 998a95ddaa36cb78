import keras
import numpy as np
import pytest

from perceptual_style.saved_nets import load_transformer, save_transformer
from perceptual_style.transformer_net import (InstanceNormalization, NearestUpsampling2D,
                                              ReflectionPadding2D, TransformerNet)


@pytest.mark.parametrize("upsampling", ["nearest", "transpose"])
@pytest.mark.parametrize("height,width", [(32, 32), (37, 53), (17, 90), (64, 41)])
def test_output_has_input_size_and_range(upsampling, height, width):
    net = TransformerNet(upsampling=upsampling)
    images = np.random.default_rng(0).uniform(0, 255, (2, height, width, 3)).astype("float32")
    out = keras.ops.convert_to_numpy(net(images))
    assert out.shape == (2, height, width, 3)
    assert out.min() >= 0 and out.max() <= 255
    assert np.std(out) > 0


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


def test_reflection_padding_matches_numpy():
    x = np.arange(2 * 4 * 5 * 3, dtype="float32").reshape(2, 4, 5, 3)
    out = keras.ops.convert_to_numpy(ReflectionPadding2D(2)(x))
    np.testing.assert_array_equal(out, np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect"))


def test_serialization_round_trip(tmp_path):
    net = TransformerNet(upsampling="transpose")
    images = np.random.default_rng(2).uniform(0, 255, (1, 24, 28, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(net(images))
    path = str(tmp_path / "net.keras")
    net.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, TransformerNet) and restored.upsampling == "transpose"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(restored(images)), expected, atol=1e-4)
    for layer in (InstanceNormalization(epsilon=1e-3), ReflectionPadding2D(3)):
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()


def test_nearest_upsampling_repeats_pixels():
    x = np.random.default_rng(3).normal(size=(2, 3, 5, 4)).astype("float32")
    out = keras.ops.convert_to_numpy(NearestUpsampling2D()(x))
    np.testing.assert_array_equal(out, x.repeat(2, axis=1).repeat(2, axis=2))


def test_mobile_architecture():
    net = TransformerNet(arch="mobile", width_multiplier=0.5, num_residual_blocks=3)
    images = np.random.default_rng(4).uniform(0, 255, (1, 37, 53, 3)).astype("float32")
    out = keras.ops.convert_to_numpy(net(images))
    assert out.shape == (1, 37, 53, 3) and out.min() >= 0 and out.max() <= 255
    layers = list(net._flatten_layers())
    assert not [layer for layer in layers if isinstance(layer, ReflectionPadding2D)]
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
