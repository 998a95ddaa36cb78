"""Which floating-point precision the networks compute in: float32, or bfloat16 where the
CPU multiplies it natively (AVX512_BF16 or AMX; oneDNN then runs convolutions at about
twice the float32 rate). Weights, Gram matrices and losses stay float32 (Keras'
`mixed_bfloat16` policy plus casts in the trainer and in stylized outputs). Backend-neutral;
Keras is imported where it is used, so that commands' --help stays instant.
"""

import contextlib
import os

PRECISIONS = ("auto", "float32", "bfloat16")
_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# oneDNN's instruction set caps (ONEDNN_MAX_CPU_ISA) under which its bfloat16 kernels are
# not native: with one of these set, a CPU with bf16 runs as one without.
_CAPS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                      "AVX512_CORE_VNNI")


def _cpuinfo(key, cpuinfo):
    """The value of the first `key` line of /proc/cpuinfo (None where there is none)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The CPU's feature flags (empty where /proc/cpuinfo does not exist)."""
    return set((_cpuinfo("flags", cpuinfo) or "").split())


def cpu_model(cpuinfo="/proc/cpuinfo"):
    return _cpuinfo("model name", cpuinfo) or "unknown CPU"


def machine_description(cpuinfo="/proc/cpuinfo"):
    """What a training record says it ran on: the accelerator, or the CPU's model, cores
    and widest vector units (machines of one name differ: AVX2 only, or AVX-512 + BF16)."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform != "cpu":
            return f"{len(jax.devices())} x {device.device_kind}"
    flags = cpu_flags(cpuinfo)
    vector = ("AVX-512 + BF16" if "avx512_bf16" in flags else "AVX-512" if "avx512f" in flags
              else "AVX2" if "avx2" in flags else "no AVX2")
    return f"{cpu_model(cpuinfo)}, {os.cpu_count()} cores, {vector}"


def native_bf16(cpuinfo="/proc/cpuinfo"):
    """Whether the CPU multiplies bfloat16 natively, and oneDNN may use it."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", ""))
    if cap.upper() in _CAPS_WITHOUT_BF16:
        return False
    return any(flag in cpu_flags(cpuinfo) for flag in _NATIVE_BF16_FLAGS)


def resolve(choice, backend=None, cpuinfo="/proc/cpuinfo"):
    """`auto` -> bfloat16 on the TensorFlow backend of a CPU with native bf16 (JAX's CPU
    compiler and GPUs gain nothing from it here: GPUs already use TF32), else float32."""
    if choice not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {choice!r}")
    if choice != "auto":
        return choice
    if backend is None:
        import keras

        backend = keras.backend.backend()
    if backend == "tensorflow" and native_bf16(cpuinfo) and _no_accelerator():
        return "bfloat16"
    return "float32"


def _no_accelerator():
    import tensorflow as tf

    return not tf.config.list_physical_devices("GPU") and not tf.config.list_physical_devices("TPU")


@contextlib.contextmanager
def policy(precision):
    """Layers created in this block compute in `precision` (float32 or bfloat16)."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(_POLICIES[precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
