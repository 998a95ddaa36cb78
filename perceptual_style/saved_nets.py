"""Trained styles on disk: `savedNets/<name>/weights.npz` and `metadata.json`.

Weights are stored as float16 (half the size, about 3.4 MB a style; the network's outputs
change by well under one grey level) together with the architecture config, in one file
written atomically, so a style is never half-written. `metadata.json` beside it records how
the style was trained, for people. Loading restores float32 weights. Backend-neutral.
"""

import json
import os

import numpy as np

from perceptual_style.atomic import atomic_write

WEIGHTS_FILE = "weights.npz"
METADATA_FILE = "metadata.json"
DEFAULT_DIR = "savedNets"
REPO_SAVED_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              DEFAULT_DIR)
_CONFIG_KEY = "config"


def write_json(path, data):
    atomic_write(path, lambda f: f.write(json.dumps(data, indent=2, sort_keys=True).encode()))


def save_transformer(net, directory, metadata=None):
    """Writes `net` (float16) and, if given, `metadata` to `directory`."""
    arrays = {f"w{i:03d}": np.asarray(w, np.float16) for i, w in enumerate(net.get_weights())}
    arrays[_CONFIG_KEY] = np.array(json.dumps(net.get_config()))
    atomic_write(os.path.join(directory, WEIGHTS_FILE), lambda f: np.savez_compressed(f, **arrays))
    if metadata is not None:
        write_json(os.path.join(directory, METADATA_FILE), metadata)


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
    from perceptual_style.transformer_net import TransformerNet  # Keras: not needed by --help

    path = os.path.join(resolve(name_or_path, saved_dir), WEIGHTS_FILE)
    try:
        with np.load(path, allow_pickle=False) as stored:
            config = json.loads(str(stored[_CONFIG_KEY]))
            weights = [stored[f"w{i:03d}"] for i in range(len(stored.files) - 1)]
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{path}: not a readable style weights file ({e})") from None
    net = TransformerNet.from_config(config)
    net(np.zeros((1, 16, 16, 3), np.float32))  # builds the variables
    expected = [tuple(w.shape) for w in net.weights]
    if [w.shape for w in weights] != expected:
        raise ValueError(f"{path}: weights do not match the architecture in its config")
    net.set_weights([w.astype(np.float32) for w in weights])
    return net


def load_metadata(name_or_path, saved_dir=DEFAULT_DIR):
    with open(os.path.join(resolve(name_or_path, saved_dir), METADATA_FILE)) as f:
        return json.load(f)
