"""Pixel optimization (Gatys et al.) lowers the training loss; test_backends.py runs this
file on JAX too."""

import os

import numpy as np
import pytest
from PIL import Image

from conftest import photo, run_cli, served
from perceptual_style.losses import PerceptualLoss
from perceptual_style.optimize import optimize_image, value_and_gradient
from perceptual_style.vgg import build_loss_network

STYLE_LAYERS = {"block1_conv1": 1.0, "block2_conv1": 1.0}
_Y, _X = np.mgrid[0:40, 0:40]
STRIPES = np.stack([(_X % 8 < 4) * 255.0, (_Y % 6 < 3) * 200.0, np.full((40, 40), 60.0)], -1)


@pytest.fixture(scope="module")
def loss(vgg_weights):
    network = build_loss_network(["block2_conv2", *STYLE_LAYERS], weights=vgg_weights)
    return PerceptualLoss(network, STRIPES, "block2_conv2", STYLE_LAYERS, content_weight=1.0,
                          style_weight=1e-3, tv_weight=1e-3)


def test_value_and_gradient_is_the_loss_and_its_slope(loss):
    content = photo(16, 20).astype(np.float32)
    target = loss.content_target(content[None])
    evaluate = value_and_gradient(lambda image: loss(image, target)["total"])
    image = content[None] + np.random.default_rng(0).normal(0, 20, (1, 16, 20, 3)).astype(np.float32)
    value, gradient = evaluate(image)
    assert np.isclose(value, float(loss(image, target)["total"]), rtol=1e-5)
    assert gradient.shape == image.shape
    # A small step against the gradient lowers the loss by about |gradient|^2 * step.
    step = 1e-2 / np.abs(gradient).max()
    lower, _ = evaluate(image - step * gradient)
    predicted = step * float(np.sum(gradient.astype(np.float64) ** 2))
    assert 0.5 * predicted < value - lower < 1.5 * predicted


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_optimizers_lower_the_loss_and_keep_pixels_in_range(loss, optimizer):
    content = photo(24, 32, seed=3)
    image, history = optimize_image(loss, content, 6, optimizer, init="noise")
    assert image.shape == content.shape and image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 255.0
    seconds, values = zip(*history)
    assert len(values) == 7 and list(seconds) == sorted(seconds)
    assert values[-1] < 0.8 * values[0]
    target = loss.content_target(content[None].astype(np.float32))
    assert np.isclose(float(loss(image[None], target)["total"]), values[-1], rtol=1e-3)


def test_cli_writes_the_optimized_image(tmp_path):
    Image.fromarray(photo(28, 36)).save(tmp_path / "photo.png")
    output = tmp_path / "out.png"
    # --style=snight reads styles/snight.flags; the flags given here win over it.
    result = run_cli(["perceptual_style.optimize", "--style=snight", "--style_size=48",
                      "--content_layer=block2_conv2", "--style_layers=block1_conv1,block2_conv1",
                      "--style_layer_weights=1,1", f"--content={tmp_path / 'photo.png'}",
                      "--image_size=0", "--iterations=3", "--optimizer=adam",
                      f"--output={output}"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "adam, 3 iterations" in result.stdout
    assert Image.open(output).size == (36, 28)


def test_a_saved_styles_loss_is_rebuilt_from_its_metadata(tmp_path, monkeypatch, loss):
    """From any folder: a relative style image is looked for in the package's checkout."""
    from perceptual_style import style_flags

    (tmp_path / "paintings").mkdir()
    (tmp_path / "elsewhere").mkdir()
    Image.fromarray(STRIPES.astype(np.uint8)).save(tmp_path / "paintings" / "stripes.png")
    monkeypatch.setattr(style_flags, "CHECKOUT", str(tmp_path))
    monkeypatch.chdir(tmp_path / "elsewhere")
    metadata = {"flags": {"style_image": "paintings/stripes.png", "style_size": 0,
                          "content_layer": "block2_conv2", "style_layers": list(STYLE_LAYERS),
                          "style_layer_weights": None, "style_weight": 1e-3, "tv_weight": 1e-3,
                          "steps": 10}}
    rebuilt = style_flags.saved_style_loss(metadata)
    assert rebuilt.content_layer == "block2_conv2" and rebuilt.style_layers == STYLE_LAYERS
    assert (rebuilt.content_weight, rebuilt.style_weight, rebuilt.tv_weight) == (1.0, 1e-3, 1e-3)
    for layer in STYLE_LAYERS:
        np.testing.assert_allclose(rebuilt.style_grams[layer], loss.style_grams[layer], rtol=1e-5)


def test_cli_fetches_a_style_image_url(tmp_path):
    """The shared --style_image flag takes a URL with --style_sha256 here too."""
    from perceptual_style.style_flags import sha256_of

    folder = tmp_path / "served"
    folder.mkdir()
    Image.fromarray(STRIPES.astype(np.uint8)).save(folder / "painting.png")
    Image.fromarray(photo(20, 24)).save(tmp_path / "photo.png")
    with served(folder) as base:
        result = run_cli(["perceptual_style.optimize", f"--style_image={base}/painting.png",
                          f"--style_sha256={sha256_of(folder / 'painting.png')}",
                          "--content_layer=block2_conv2", "--style_layers=block1_conv1",
                          "--style_layer_weights=1", f"--content={tmp_path / 'photo.png'}",
                          "--image_size=0", "--iterations=1", "--optimizer=adam",
                          f"--output={tmp_path / 'out.png'}"],
                         env={"KERAS_HOME": str(tmp_path / "keras")})
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(os.listdir(tmp_path / "keras" / "styles")) == 1
    assert Image.open(tmp_path / "out.png").size == (24, 20)


@pytest.mark.parametrize("args, message", [
    (["--style=snight", "--content=missing.png"], "missing.png: no such file"),
    (["--style=no_such_style", "--content=x.png"], "no style 'no_such_style'"),
    (["--content=x.png"], "--content and --style are required"),
])
def test_cli_errors_are_one_line(args, message):
    result = run_cli(["perceptual_style.optimize", *args])
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert message in result.stderr.strip().splitlines()[-1]
