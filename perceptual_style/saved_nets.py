"""Trained styles on disk: `savedNets/<name>/weights.npz` and `metadata.json`.

Weights are stored as float16 (half the size, about 3.4 MB a style; the network's outputs
change by well under one grey level) together with the architecture config. `metadata.json`
beside it records how the style was trained, for people. The folder is written as a unit
(a new folder, then renamed into place), so weights never meet another run's metadata.
Loading restores float32 weights, and a damaged file or a config that is no TransformerNet
is one `ValueError` line, raised before any network is built. Backend-neutral.
"""

import json
import os
import zipfile
import zlib

import numpy as np

from perceptual_style.atomic import atomic_write, replace_directory

WEIGHTS_FILE = "weights.npz"
METADATA_FILE = "metadata.json"
DEFAULT_DIR = "savedNets"
REPO_SAVED_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              DEFAULT_DIR)
_CONFIG_KEY = "config"


def write_json(path, data):
    atomic_write(path, lambda f: f.write(json.dumps(data, indent=2, sort_keys=True).encode()))


def save_transformer(net, directory, metadata=None):
    """Makes `directory` hold `net` (float16, however it was trained) and, if given,
    `metadata`, replacing what it held."""
    arrays = {f"w{i:03d}": np.asarray(w, np.float16) for i, w in enumerate(net.get_weights())}
    # A network trained in bfloat16 is stored as one that computes in float32: the
    # precision it runs in is chosen where it runs.
    arrays[_CONFIG_KEY] = np.array(json.dumps({**net.get_config(), "dtype": "float32"}))

    def write(folder):
        with open(os.path.join(folder, WEIGHTS_FILE), "wb") as f:
            np.savez_compressed(f, **arrays)
        if metadata is not None:
            write_json(os.path.join(folder, METADATA_FILE), metadata)

    replace_directory(directory, write)


def read_npz(path):
    """{name: array} of an `.npz` file; one `ValueError` line when it is damaged (cut
    short, corrupted, empty) or is no `.npz` archive at all."""
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not an .npz archive (empty, cut short or another kind of file)")
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise ValueError(f"{path}: damaged .npz archive ({e})") from None


def _network(config, path):
    """The TransformerNet of a stored config, unbuilt; checked first, since a crafted one
    could ask for a huge network or not be a config at all."""
    from perceptual_style.transformer_net import TransformerNet  # Keras: not needed by --help

    if not isinstance(config, dict):
        raise ValueError(f"{path}: its config is not a TransformerNet's")
    try:
        return TransformerNet.from_config(config)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: bad TransformerNet config ({e})") from None


def find_saved_dir(saved_dir):
    """`saved_dir`, except that the default, when it does not exist here, means the
    savedNets/ of this package's checkout (so commands work from any folder)."""
    if os.path.isdir(saved_dir) or saved_dir != DEFAULT_DIR:
        return saved_dir
    return REPO_SAVED_DIR


def resolve(name_or_path, saved_dir=DEFAULT_DIR):
    """A style name in `saved_dir`, or a folder, -> the folder holding its weights."""
    for directory in (name_or_path, os.path.join(saved_dir, name_or_path)):
        if os.path.isfile(os.path.join(directory, WEIGHTS_FILE)):
            return directory
    raise FileNotFoundError(
        f"no trained style {name_or_path!r}: expected {os.path.join(saved_dir, name_or_path, WEIGHTS_FILE)}")


def load_transformer(name_or_path, saved_dir=DEFAULT_DIR):
    """Rebuilds a saved TransformerNet with float32 weights."""
    path = os.path.join(resolve(name_or_path, saved_dir), WEIGHTS_FILE)
    stored = read_npz(path)
    try:
        config = json.loads(str(stored[_CONFIG_KEY]))
        weights = [stored[f"w{i:03d}"] for i in range(len(stored) - 1)]
    except (ValueError, KeyError) as e:
        raise ValueError(f"{path}: not a readable style weights file ({e!s:.200})") from None
    net = _network(config, path)
    net(np.zeros((1, 16, 16, 3), np.float32))  # builds the variables
    expected = [tuple(w.shape) for w in net.weights]
    if [w.shape for w in weights] != expected:
        raise ValueError(f"{path}: weights do not match the architecture in its config")
    net.set_weights([w.astype(np.float32) for w in weights])
    return net


def load_metadata(name_or_path, saved_dir=DEFAULT_DIR):
    with open(os.path.join(resolve(name_or_path, saved_dir), METADATA_FILE)) as f:
        return json.load(f)
