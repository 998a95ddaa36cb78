"""Reading pickled weight files without letting them run code.

`pickle` can call any importable function while loading, so a weights file from the
internet is a program. These readers resolve only the handful of globals that each format
needs and refuse everything else, so a malicious file fails with `UnsafePickleError`.
They read PyTorch's `torch.save` files (legacy and zip formats) into numpy without
PyTorch, and numpy `.npy` files that hold pickled objects without `allow_pickle=True`.
"""

import collections
import io
import math
import os
import pickle
import struct
import zipfile

import numpy as np


class UnsafePickleError(pickle.UnpicklingError):
    """The file asks for a global outside the allowed set."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose `find_class` answers only from `allowed`."""

    def __init__(self, file, allowed, persistent_load=None, **kwargs):
        super().__init__(file, **kwargs)
        self._allowed = allowed
        if persistent_load is not None:
            self.persistent_load = persistent_load

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load global '{module}.{name}': not one of the "
                f"{len(self._allowed)} this weights format needs (a tampered or unknown file?)"
            ) from None


# --- PyTorch torch.save files -------------------------------------------------------------

_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "ByteStorage": np.uint8, "CharStorage": np.int8, "ShortStorage": np.int16,
    "IntStorage": np.int32, "LongStorage": np.int64, "BoolStorage": np.bool_,
}


class _Storage:
    def __init__(self, dtype, numel):
        self.dtype, self.numel, self.data = np.dtype(dtype), int(numel), None


class _TensorRef:
    """A tensor whose storage bytes come after the pickle (legacy format)."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset = storage, int(offset)
        self.size, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)

    def materialize(self):
        """The view as a new array. It may claim no more elements than its storage holds:
        a weight never shares them (stride 0), and a crafted file could otherwise make a
        few bytes into gigabytes."""
        data = self.storage.data
        if data is None:
            raise pickle.UnpicklingError("tensor refers to a storage the file never wrote")
        if math.prod(self.size) > data.size:
            raise pickle.UnpicklingError(
                f"tensor view of {math.prod(self.size):,} elements claims more than its "
                f"storage holds ({data.size:,})")
        if self.size and min(self.size) > 0:
            last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
            if self.offset < 0 or min(self.stride) < 0 or last >= data.size:
                raise pickle.UnpicklingError("tensor view reaches outside its storage")
        elif self.offset > data.size:
            raise pickle.UnpicklingError("tensor view reaches outside its storage")
        itemsize = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:], shape=self.size, strides=[s * itemsize for s in self.stride])
        return np.array(view)


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None,
                    metadata=None):
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("tensor without a storage")
    return _TensorRef(storage, offset, size, stride)


def _torch_allowed():
    allowed = {("torch", name): name for name in _TORCH_STORAGE_DTYPES}
    allowed[("torch._utils", "_rebuild_tensor_v2")] = _rebuild_tensor
    allowed[("collections", "OrderedDict")] = collections.OrderedDict
    return allowed


def _torch_unpickler(file, storages, make_storage):
    def persistent_load(pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and pid[1] in _TORCH_STORAGE_DTYPES):
            raise UnsafePickleError(f"unexpected persistent id {pid!r:.80}")
        _, type_name, key, _location, numel = pid[:5]
        if key not in storages:
            storages[key] = make_storage(key, _TORCH_STORAGE_DTYPES[type_name], numel)
        return storages[key]

    return RestrictedUnpickler(file, _torch_allowed(), persistent_load, encoding="utf-8")


def _resolve(obj):
    """Replaces tensor references in nested dicts/lists/tuples by numpy arrays."""
    if isinstance(obj, _TensorRef):
        return obj.materialize()
    if isinstance(obj, dict):
        return {k: _resolve(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(v) for v in obj)
    return obj


def load_torch_file(path):
    """Loads a `torch.save` file of (nested dicts of) tensors as numpy arrays."""
    if zipfile.is_zipfile(path):
        return _load_torch_zip(path)
    with open(path, "rb") as f:
        return _load_torch_legacy(f)


def _load_torch_legacy(f):
    plain = {}  # the header pickles are plain data: no globals at all
    try:
        magic = RestrictedUnpickler(f, plain).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise pickle.UnpicklingError(f"not a PyTorch weights file ({e})") from None
    if magic != _TORCH_LEGACY_MAGIC:
        raise pickle.UnpicklingError("not a PyTorch weights file (wrong magic number)")
    RestrictedUnpickler(f, plain).load()  # protocol version
    sys_info = RestrictedUnpickler(f, plain).load()
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise pickle.UnpicklingError("big-endian PyTorch files are not supported")
    storages = {}
    result = _torch_unpickler(f, storages, lambda key, dtype, numel: _Storage(dtype, numel)).load()
    keys = RestrictedUnpickler(f, plain).load()
    for key in keys:
        storage = storages.get(key)
        header = f.read(8)
        if storage is None or len(header) != 8:
            raise pickle.UnpicklingError("truncated or inconsistent PyTorch weights file")
        (numel,) = struct.unpack("<q", header)
        nbytes = numel * storage.dtype.itemsize
        if not 0 <= nbytes <= os.fstat(f.fileno()).st_size - f.tell():
            raise pickle.UnpicklingError("truncated PyTorch weights file")
        raw = f.read(nbytes)
        if numel != storage.numel or len(raw) != nbytes:
            raise pickle.UnpicklingError("truncated PyTorch weights file")
        storage.data = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"))
    return _resolve(result)


def _load_torch_zip(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise pickle.UnpicklingError("not a PyTorch weights archive (no data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]

        def make_storage(key, dtype, numel):
            storage = _Storage(dtype, numel)
            try:
                raw = archive.read(f"{prefix}data/{key}")
            except KeyError:
                raise pickle.UnpicklingError(f"archive lacks storage {key!r}") from None
            if len(raw) < storage.numel * storage.dtype.itemsize:
                raise pickle.UnpicklingError(f"storage {key!r} is truncated")
            storage.data = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"),
                                         count=storage.numel)
            return storage

        with archive.open(pickles[0]) as f:
            return _resolve(_torch_unpickler(io.BufferedReader(f), {}, make_storage).load())


# --- numpy .npy files holding pickled objects ---------------------------------------------

def _numpy_allowed():
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
    allowed = {}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = reconstruct
        allowed[(module, "scalar")] = _numpy_scalar
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    return allowed


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError("refusing an object-typed numpy scalar")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def load_npy_objects(path):
    """Loads an `.npy` file; object arrays are unpickled with only numpy's globals allowed.

    Equivalent to `np.load(path, allow_pickle=True, encoding="latin1")` for weight files
    (the latin1 encoding reads Python 2 pickles), without the code-execution risk.
    """
    from numpy.lib import format as npy_format

    with open(path, "rb") as f:
        try:
            version = npy_format.read_magic(f)
            read_header = (npy_format.read_array_header_1_0 if version == (1, 0)
                           else npy_format.read_array_header_2_0)
            _shape, _fortran, dtype = read_header(f)
        except ValueError as e:
            raise pickle.UnpicklingError(f"not a .npy file ({e})") from None
        if not dtype.hasobject:
            f.seek(0)
            return np.load(f, allow_pickle=False)
        array = RestrictedUnpickler(f, _numpy_allowed(), encoding="latin1").load()
    if not isinstance(array, np.ndarray):
        raise pickle.UnpicklingError(".npy object payload is not an array")
    return array.item() if array.shape == () else array
