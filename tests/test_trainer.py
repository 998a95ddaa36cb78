"""The trainer on the current backend; test_backends.py runs this file on JAX too."""

import sys

import keras
import numpy as np
import pytest

from conftest import BACKEND, multi_style_net
from perceptual_style import callbacks as cb
from perceptual_style.checkpoint import (CHECKPOINT_FILE, checkpoint_step, restore_checkpoint,
                                         save_checkpoint)
from perceptual_style.data import ImageFolderDataset, list_images
from perceptual_style.losses import LOSS_NAMES, MultiStylePerceptualLoss, PerceptualLoss
from perceptual_style.saved_nets import load_transformer, save_transformer
from perceptual_style.trainer import StyleTransferTrainer
from perceptual_style.transformer_net import (TransformerNet, add_style, is_normalization,
                                              style_network, train_normalization_only)
from perceptual_style.vgg import build_loss_network
from weight_files import damaged_copies

STYLE_LAYERS = {"block1_conv1": 1.0, "block2_conv1": 1.0}


_Y, _X = np.mgrid[0:48, 0:48]
STRIPES = np.stack([(_X % 8 < 4) * 255.0, (_Y % 6 < 3) * 200.0, np.full((48, 48), 60.0)], -1)


def make_trainer(vgg_weights, style_weight=1e-5, seed=0, saturation_weight=0.5):
    keras.utils.set_random_seed(seed)
    loss_network = build_loss_network(["block2_conv2", *STYLE_LAYERS], weights=vgg_weights)
    loss = PerceptualLoss(loss_network, STRIPES.astype(np.float32), "block2_conv2", STYLE_LAYERS,
                          content_weight=1.0, style_weight=style_weight, tv_weight=1e-3,
                          saturation_weight=saturation_weight)
    trainer = StyleTransferTrainer(TransformerNet(), loss)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    return trainer


def test_losses_match_an_independent_numpy_computation(vgg_weights):
    trainer = make_trainer(vgg_weights)
    # A random net's logits stay near 0: shifted, red and blue pass +-2, where saturation counts.
    trainer.transformer.out.conv.bias.assign(np.array([2.5, 0.0, -2.5], np.float32))
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    losses = {k: float(v) for k, v in trainer(images).items()}

    def features(batch):
        return {k: keras.ops.convert_to_numpy(v).astype(np.float64)
                for k, v in trainer.loss_network(np.asarray(batch, np.float32)).items()}

    def gram(f):
        b, h, w, c = f.shape
        flat = f.reshape(b, h * w, c)
        return np.einsum("bpi,bpj->bij", flat, flat) / (h * w * c)

    stylized, logits = (keras.ops.convert_to_numpy(x).astype(np.float64)
                        for x in trainer.transformer(images, return_logits=True))
    np.testing.assert_allclose(stylized, 127.5 * (np.tanh(logits) + 1), atol=1e-3)
    ours, photos, painting = features(stylized), features(images), features(STRIPES[None])
    content = np.mean((ours["block2_conv2"] - photos["block2_conv2"]) ** 2)
    style = sum(weight * np.mean(np.sum((gram(ours[layer]) - gram(painting[layer])) ** 2,
                                        axis=(1, 2))) for layer, weight in STYLE_LAYERS.items())
    tv = (np.mean((stylized[:, 1:] - stylized[:, :-1]) ** 2)
          + np.mean((stylized[:, :, 1:] - stylized[:, :, :-1]) ** 2))
    saturation = np.mean(np.maximum(np.abs(logits) - 2.0, 0) ** 2)
    expected = {"content": content, "style": style, "tv": tv, "saturation": saturation,
                "total": content + 1e-5 * style + 1e-3 * tv + 0.5 * saturation}
    assert saturation > 0.05
    for name, value in expected.items():
        assert np.isclose(losses[name], value, rtol=1e-3), name
    assert not trainer.loss_network.trainable_weights
    assert len(trainer.trainable_weights) == len(trainer.transformer.trainable_weights)


def test_fit_lowers_the_loss_and_trains_only_the_transformer(vgg_weights, photo_dir):
    trainer = make_trainer(vgg_weights)
    vgg_before = [w.copy() for w in trainer.loss_network.get_weights()]
    data = ImageFolderDataset(list_images(str(photo_dir)), image_size=32, batch_size=2, steps=30)
    history = trainer.fit(data, epochs=1, verbose=0).history
    totals = history["total"]
    # Keras logs the last step's value; compare against a fresh evaluation before training.
    fresh = make_trainer(vgg_weights)
    before = np.mean([float(fresh(data[i][0])["total"]) for i in range(3)])
    after = np.mean([float(trainer(data[i][0])["total"]) for i in range(3)])
    assert np.isfinite(totals[-1])
    assert after < 0.75 * before, (before, after)
    for old, new in zip(vgg_before, trainer.loss_network.get_weights()):
        np.testing.assert_array_equal(old, new)
    if BACKEND == "jax":  # test_backends.py runs this with TensorFlow unimportable
        assert "tensorflow" not in sys.modules


def test_saturation_loss_pulls_a_pinned_output_back_into_range(vgg_weights, photo_dir):
    """A net whose output is pinned at white (logits of 8, where the tanh is flat) stays
    pinned under the image losses alone; the saturation term brings it back into range,
    neither white nor swung over to black."""
    data = ImageFolderDataset(list_images(str(photo_dir)), image_size=32, batch_size=2, steps=60)
    results = {}
    for weight in (0.0, 1e4):
        trainer = make_trainer(vgg_weights, saturation_weight=weight)
        conv = trainer.transformer.out.conv
        conv.kernel.assign(keras.ops.zeros(conv.kernel.shape))
        conv.bias.assign(keras.ops.full(conv.bias.shape, 8.0))
        trainer.fit(data, epochs=1, verbose=0)
        stylized = np.round(keras.ops.convert_to_numpy(trainer.transformer(data[0][0])))
        results[weight] = (float(np.mean(stylized >= 255)),
                           float(np.mean((stylized > 5) & (stylized < 250))))
    assert results[0.0][0] > 0.99, results
    white, in_range = results[1e4]
    assert white < 0.01 and in_range > 0.85, results  # measured 0.93-0.96 in range


def test_checkpoint_round_trip_restores_weights_optimizer_and_step(vgg_weights, photo_dir, tmp_path):
    trainer = make_trainer(vgg_weights)
    data = ImageFolderDataset(list_images(str(photo_dir)), image_size=32, batch_size=2, steps=3)
    trainer.fit(data, epochs=1, verbose=0)
    save_checkpoint(trainer, str(tmp_path))
    restored = make_trainer(vgg_weights, seed=1)
    assert restore_checkpoint(restored, str(tmp_path)) == 3
    for a, b in zip(trainer.transformer.get_weights(), restored.transformer.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(trainer.optimizer.variables, restored.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert restore_checkpoint(make_trainer(vgg_weights), str(tmp_path / "none")) == 0
    for kind, data in damaged_copies((tmp_path / CHECKPOINT_FILE).read_bytes()).items():
        (tmp_path / kind).mkdir()
        (tmp_path / kind / CHECKPOINT_FILE).write_bytes(data)
        for read in (checkpoint_step, lambda folder: restore_checkpoint(restored, folder)):
            with pytest.raises(ValueError, match=r"\.npz archive.*; use another --checkpoint_dir "
                               "or delete it to start over") as error:
                read(str(tmp_path / kind))
            assert "\n" not in str(error.value), kind


def test_saved_net_is_float16_on_disk_and_reloads_close(vgg_weights, tmp_path):
    net = make_trainer(vgg_weights).transformer
    save_transformer(net, str(tmp_path / "style"), {"steps": 0})
    stored = np.load(tmp_path / "style" / "weights.npz")
    assert all(stored[k].dtype == np.float16 for k in stored.files if k != "config")
    loaded = load_transformer(str(tmp_path / "style"))
    image = np.random.default_rng(1).uniform(0, 255, (1, 45, 37, 3)).astype(np.float32)
    a = keras.ops.convert_to_numpy(net(image))
    b = keras.ops.convert_to_numpy(loaded(image))
    assert b.shape == (1, 45, 37, 3)
    assert np.abs(a - b).max() < 1.0  # float16 storage moves outputs by under a grey level


def test_non_finite_loss_stops_training(vgg_weights, photo_dir):
    trainer = make_trainer(vgg_weights, style_weight=float("inf"))
    data = ImageFolderDataset(list_images(str(photo_dir)), image_size=32, batch_size=2, steps=3)
    with pytest.raises(cb.NonFiniteLossError, match="total loss became inf at step 1"):
        trainer.fit(data, epochs=1, verbose=0, callbacks=[cb.NonFiniteLossGuard()])


def test_training_on_a_product_shot_stays_finite(vgg_weights, product_shot_dir):
    """Mostly white crops: a crop of one colour makes every instance normalization's variance
    zero and the gradient overflow (the NaN at step 5,819). The loaders skip such crops, and
    the weights stay finite."""
    trainer = make_trainer(vgg_weights)
    data = ImageFolderDataset(list_images(str(product_shot_dir)), image_size=32, batch_size=2,
                              steps=4)
    history = trainer.fit(data, epochs=1, verbose=0).history
    assert all(np.isfinite(history[name][-1]) for name in LOSS_NAMES)
    assert all(np.isfinite(w).all() for w in trainer.transformer.get_weights())


def test_progress_bar_of_a_resumed_run_times_only_its_own_steps(monkeypatch, capsys):
    """Resumed at step 1000, steps 3 s apart after a slow first one show 3s/step, not
    about 106/1003 s (Keras' bar divides by the global step)."""
    now = [0.0]
    monkeypatch.setattr(cb.time, "time", lambda: now[0])
    bar = cb.ProgressBar(1010, start_step=1000, weights={"style": 1e-5})
    bar.on_train_begin()
    for batch, seconds in enumerate([100.0, 103.0, 106.0]):
        now[0] = seconds
        bar.on_train_batch_end(batch, {"content": 1.0, "style": 2e5, "tv": 3.0, "saturation": 0.0,
                                       "total": 6.0})
    shown = capsys.readouterr().out
    assert "3s/step" in shown.split("\r")[-1], shown[-300:]
    assert "style*1e-05: 2.0000" in shown


def test_each_image_of_a_multi_style_batch_is_judged_by_its_own_style(vgg_weights, photo_dir):
    """Two styles with their own paintings, layers and weights, one loss network: the
    batch's losses are the means of each image's losses under its own style's loss."""
    keras.utils.set_random_seed(0)
    network = build_loss_network(["block2_conv2", *STYLE_LAYERS], weights=vgg_weights)
    stripes = PerceptualLoss(network, STRIPES.astype(np.float32), "block2_conv2", STYLE_LAYERS,
                             content_weight=1.0, style_weight=1e-5, tv_weight=1e-3,
                             saturation_weight=0.5)
    plain = PerceptualLoss(network, np.full((40, 40, 3), [200, 80, 30], np.float32),
                           "block2_conv2", {"block2_conv1": 2.0}, content_weight=2.0,
                           style_weight=3e-5, tv_weight=1e-2, saturation_weight=0.0)
    with pytest.raises(ValueError, match="needs a loss for each"):
        StyleTransferTrainer(TransformerNet(num_styles=3), MultiStylePerceptualLoss([stripes, plain]))
    trainer = StyleTransferTrainer(TransformerNet(num_styles=2),
                                   MultiStylePerceptualLoss([stripes, plain]))
    trainer.transformer.out.conv.bias.assign(np.array([2.5, 0.0, -2.5], np.float32))
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    chosen = np.eye(2, dtype=np.float32)[[0, 1, 1]]
    losses = {k: float(v) for k, v in trainer(images, style_weights=chosen).items()}
    alone = []
    for image, weights, loss in zip(images, chosen, [stripes, plain, plain]):
        stylized, logits = trainer.transformer(image[None], style_weights=weights[None],
                                               return_logits=True)
        alone.append(loss(stylized, loss.content_target(image[None]), logits=logits))
    for name in LOSS_NAMES:
        expected = np.mean([float(a[name]) for a in alone])
        assert np.isclose(losses[name], expected, rtol=1e-4), (name, losses[name], expected)
    assert float(alone[0]["saturation"]) > 0.05
    # Image i of the batch at step s learns style (s * batch + i) % 2.
    schedule = trainer.style_schedule(3, images)["style_weights"]
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(schedule), np.eye(2)[[1, 0, 1]])
    # Fit trains every style's row of the normalization parameters: each batch mixes them.
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = trainer.transformer.get_weights()
    data = ImageFolderDataset(list_images(str(photo_dir)), image_size=32, batch_size=2, steps=2)
    history = trainer.fit(data, epochs=1, verbose=0).history
    assert np.isfinite(history["total"][-1])
    rows = [(a, b) for a, b in zip(before, trainer.transformer.get_weights()) if a.shape[0] == 2
            and a.ndim == 2]
    assert rows and all(np.any(a[i] != b[i]) for a, b in rows for i in range(2))


def test_a_style_added_to_a_trained_network_trains_its_normalization_alone(vgg_weights,
                                                                          photo_dir):
    """--add_style's training: the new style's single-style network on the frozen
    convolutions, here the identity style (content loss only, no painting); grown back,
    the old styles' outputs are bit for bit the old network's."""
    base = multi_style_net(2, width_multiplier=0.25, num_residual_blocks=1)
    new = style_network(base, [0.5, 0.5])
    train_normalization_only(new)
    network = build_loss_network(["block2_conv2"], weights=vgg_weights)
    identity = PerceptualLoss(network, None, "block2_conv2", {}, tv_weight=1e-3)
    trainer = StyleTransferTrainer(new, identity)
    assert {id(v) for v in trainer.trainable_variables} == {
        id(v) for v in new.weights if is_normalization(v)}
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    losses = {k: float(v) for k, v in trainer(images).items()}
    assert losses["style"] == 0 and losses["content"] > 0
    assert np.isclose(losses["total"], losses["content"] + 1e-3 * losses["tv"], rtol=1e-6)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = new.get_weights()
    data = ImageFolderDataset(list_images(str(photo_dir)), image_size=32, batch_size=2, steps=2)
    assert np.isfinite(trainer.fit(data, epochs=1, verbose=0).history["total"][-1])
    for variable, old, trained in zip(new.weights, before, new.get_weights()):
        if is_normalization(variable):
            assert np.any(old != trained)
        else:
            np.testing.assert_array_equal(old, trained)
    grown = add_style(base, new)

    def out(net, **kwargs):
        return keras.ops.convert_to_numpy(net(images, **kwargs))

    for style in range(2):
        np.testing.assert_array_equal(out(grown, style_weights=np.eye(3, dtype="float32")[style]),
                                      out(base, style_weights=np.eye(2, dtype="float32")[style]))
    np.testing.assert_allclose(out(grown, style_weights=np.eye(3, dtype="float32")[2]), out(new),
                               atol=1e-3)
    with pytest.raises(ValueError, match="style layers need a style image"):
        PerceptualLoss(network, None, "block2_conv2", {"block2_conv2": 1.0})
