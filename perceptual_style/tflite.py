"""TensorFlow Lite builds of a TransformerNet, and running them in LiteRT.

A build is made the way that keeps the weights: the network is written as a SavedModel with
one signature of the wanted input shape (`keras.export.ExportArchive`), then converted with
`TFLiteConverter.from_saved_model`. (Converting a Keras 3 model through a concrete function
can lose its variables: a tiny file whose output is NaN.) Only TFLite builtin ops are
allowed; the converted flatbuffer's op codes are checked again, so no build needs the Flex
(Select TF ops) runtime or a custom op.

Every build has one signature, `stylize`: input `images` [1, height, width, 3] RGB in
[0, 255] (float32, or uint8 for the `uint8` build), output `stylized`, the same shape and
range. A fixed-shape build is made from a signature of that shape; the resizable build's
height and width are -1 (any size, resized before running). A network of several styles
takes a second input, `style_weights` [number of styles]: one weight per style in the
order of its `styles` metadata, one-hot to apply a style, a convex combination to blend
them (float32; in the `uint8` build uint8 too, scale 1/255: round(255 x weight)).

Quantizations (TensorFlow Lite's post-training options):
- `float32`: no quantization.
- `float16`: float16 weights (half the size); CPUs compute in float32, GPUs in float16.
- `dynamic_int8`: int8 weights, activations quantized on the fly.
- `int8`: full-integer, int8 weights and activations calibrated on representative
  photos; float32 input and output.
- `uint8`: the `int8` build with uint8 input and output, for camera pipelines.

TensorFlow only (the converter is TensorFlow's); LiteRT (`ai-edge-litert`) runs the builds.
TensorFlow and Keras are imported where they are used, so that `export_tflite.py --help`,
which shows the constants below, loads neither.
"""

import collections
import math
import statistics
import time
import warnings

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter, OpResolverType

SIGNATURE = "stylize"
INPUT = "images"
STYLE_WEIGHTS = "style_weights"  # the second input of a network of several styles
OUTPUT = "stylized"
QUANTIZATIONS = ("float32", "float16", "dynamic_int8", "int8", "uint8")
RESIZABLE = "resizable"  # the size label of a build that takes any height and width
THREADS = 2
# PSNR floors against the Keras float32 network, dB. int8's is what the untrained test
# network and all seven shipped styles reach (lowest measured: udnie, 19.5 dB on one photo
# with 16 calibration photos, 18.4 with 64; see docs/mobile.md).
PSNR_FLOORS = {"float32": 60.0, "float16": 40.0, "dynamic_int8": 30.0, "int8": 18.0,
               "uint8": 18.0}
_OP_NAMES = {code: name for name, code in vars(schema.BuiltinOperator).items()
             if not name.startswith("_")}
# The builtin ops LiteRT's GPU delegate takes, from the cases of CheckGpuDelegateCompatibility
# in tensorflow/lite/tools/versioning/gpu_compatibility.cc (TensorFlow, 2025), which holds the
# delegate's own rules. Only names are compared: an op listed here can still be refused for
# its parameters (MIRROR_PAD only in REFLECT mode, PAD and MIRROR_PAD only with constant
# amounts, MEAN only over constant axes). Not LiteRT's analyzer: in TensorFlow 2.21 and LiteRT
# 2.3.0, `Analyzer.analyze(gpu_compatibility=True)` calls every model compatible, ARG_MAX and
# TOPK_V2 included, which that file rejects.
GPU_DELEGATE_OPS = frozenset("""
    ABS ADD ADD_N ATAN2 AVERAGE_POOL_2D BATCH_MATMUL CAST CEIL CONCATENATION CONV_2D COS
    CUMSUM DENSIFY DEPTH_TO_SPACE DEPTHWISE_CONV_2D DEQUANTIZE DIV DYNAMIC_UPDATE_SLICE ELU
    EMBEDDING_LOOKUP EQUAL EXP FLOOR FLOOR_DIV FLOOR_MOD FULLY_CONNECTED GATHER GELU GREATER
    GREATER_EQUAL HARD_SWISH LEAKY_RELU LESS LESS_EQUAL LOG LOGICAL_AND LOGISTIC LSTM
    MAX_POOL_2D MAXIMUM MEAN MINIMUM MIRROR_PAD MUL NEG NOT_EQUAL ONE_HOT PACK PAD PADV2 POW
    PRELU QUANTIZE REDUCE_MAX REDUCE_MIN REDUCE_PROD RELU RELU6 RELU_N1_TO_1 RESHAPE
    RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR RSQRT SELECT SELECT_V2 SIGN SIN SLICE SOFTMAX
    SPACE_TO_DEPTH SPLIT SPLIT_V SQRT SQUARE SQUARED_DIFFERENCE STABLEHLO_CLAMP STRIDED_SLICE
    SUB SUM TANH TILE TRANSPOSE TRANSPOSE_CONV""".split())


def size_label(shape):
    """(height, width) -> 'HxW'; None (resizable) -> 'resizable'."""
    return RESIZABLE if shape is None else f"{shape[0]}x{shape[1]}"


def build_name(style, shape, quantization):
    """A build's file name, `<style>_<size label>_<quantization>.tflite`: one naming for
    tools/export_tflite.py and the web page's builds."""
    return f"{style}_{size_label(shape)}_{quantization}.tflite"


class TFLiteError(Exception):
    """A build that cannot be made or fails its checks, in one line."""


def write_saved_model(net, directory, shape=None):
    """Writes `net` as a SavedModel whose `stylize` signature takes images of `shape`
    (height, width), or of any size when `shape` is None, and the style weights of a
    network of several styles."""
    import keras
    import tensorflow as tf

    height, width = shape or (None, None)
    archive = keras.export.ExportArchive()
    images = tf.TensorSpec([1, height, width, 3], tf.float32, name=INPUT)
    if net.num_styles == 1:
        archive.add_endpoint(SIGNATURE, lambda images: {OUTPUT: net(images)},
                             input_signature=[images])
    else:
        archive.add_endpoint(
            SIGNATURE, lambda images, style_weights: {
                OUTPUT: net(images, style_weights=style_weights)},
            input_signature=[images, tf.TensorSpec([net.num_styles], tf.float32,
                                                   name=STYLE_WEIGHTS)])
    archive.write_out(directory, verbose=False)


def calibration_batches(images, num_styles=1):
    """Representative inputs, {input name: array}, from RGB images: (1, h, w, 3) float32
    batches, each with every style (one-hot) of a network of `num_styles`. One pixel each of
    0 and 255 makes the calibrated input range the whole [0, 255], so the uint8 build's input
    scale is 1 and zero point 0: camera pixels go in as they are (and one-hot weights make
    the style weights' scale 1/255, zero point 0)."""
    feeds = []
    for image in images:
        batch = np.array(image, np.float32)[None]
        batch[0, 0, 0], batch[0, 0, 1] = 0.0, 255.0
        if num_styles == 1:
            feeds.append({INPUT: batch})
        else:
            feeds += [{INPUT: batch, STYLE_WEIGHTS: row}
                      for row in np.eye(num_styles, dtype=np.float32)]
    return feeds


def convert(saved_model_dir, quantization, representative_images=None):
    """The TFLite flatbuffer (bytes) of the SavedModel's `stylize` signature.
    `int8` and `uint8` need `representative_images`, from `calibration_batches`."""
    import tensorflow as tf

    if quantization not in QUANTIZATIONS:
        raise TFLiteError(f"unknown quantization {quantization!r}: one of {', '.join(QUANTIZATIONS)}")
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[SIGNATURE])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantization in ("int8", "uint8"):
        if not representative_images:
            raise TFLiteError(f"{quantization} needs representative photos to calibrate on")
        converter.representative_dataset = lambda: iter(representative_images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if quantization == "uint8":
            converter.inference_input_type = converter.inference_output_type = tf.uint8
    try:
        with warnings.catch_warnings():
            # The converter calibrates int8 builds in TensorFlow's own, deprecated
            # interpreter; the builds themselves run in LiteRT.
            warnings.filterwarnings("ignore", r"\s*Warning: tf\.lite\.Interpreter is deprecated")
            model = converter.convert()
    except Exception as e:  # the converter raises ConverterError, ValueError, RuntimeError
        raise TFLiteError(f"{quantization} conversion failed: {str(e).strip().splitlines()[0]}") from None
    check_builtin_only(model)
    return model


def op_counts(model):
    """{op name: how many times a flatbuffer runs it}; names are builtin names, or the
    custom code (Flex ops are custom ops named `Flex<TensorFlow op>`)."""
    parsed = schema.Model.GetRootAs(model, 0)
    names = []
    for i in range(parsed.OperatorCodesLength()):
        code = parsed.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        names.append(code.CustomCode().decode() if builtin == schema.BuiltinOperator.CUSTOM
                     else _OP_NAMES[builtin])
    return collections.Counter(
        names[parsed.Subgraphs(g).Operators(j).OpcodeIndex()]
        for g in range(parsed.SubgraphsLength())
        for j in range(parsed.Subgraphs(g).OperatorsLength()))


def op_names(model):
    """Sorted names of the ops a flatbuffer uses (see `op_counts`)."""
    return sorted(op_counts(model))


def gpu_delegate_report(model):
    """One line: whether every op of the build is one LiteRT's GPU delegate takes (by name,
    see GPU_DELEGATE_OPS); ops it does not take fall back to the CPU."""
    counts = op_counts(model)
    unsupported = {name: n for name, n in counts.items() if name not in GPU_DELEGATE_OPS}
    if not unsupported:
        return f"GPU delegate: all {sum(counts.values())} ops supported"
    return "GPU delegate: unsupported: " + ", ".join(
        f"{name} (x{n})" for name, n in sorted(unsupported.items()))


def check_builtin_only(model):
    """Raises TFLiteError when the model needs Flex or custom ops."""
    names = op_names(model)
    extra = [n for n in names if n not in _OP_NAMES.values() or n == "CUSTOM"]
    if extra:
        raise TFLiteError(f"the build needs ops that are not TFLite builtins: {', '.join(extra)}")


def interpreter(model, threads=THREADS):
    """A LiteRT interpreter with its default XNNPACK CPU delegate."""
    return Interpreter(model_content=model, num_threads=threads,
                       experimental_op_resolver_type=OpResolverType.AUTO)


def signature_details(model):
    """{"inputs": ..., "outputs": ...}: name, shape (-1: any), dtype and quantization
    (scale, zero point) of the `stylize` signature, JSON-ready."""
    runner = interpreter(model).get_signature_runner(SIGNATURE)

    def describe(details):
        return {name: {"shape": [int(s) for s in d["shape_signature"]],
                       "dtype": np.dtype(d["dtype"]).name,
                       "quantization": [float(q) for q in d["quantization"]]}
                for name, d in details.items()}

    return {"inputs": describe(runner.get_input_details()),
            "outputs": describe(runner.get_output_details())}


class Runner:
    """Runs one build's `stylize` signature on RGB images in [0, 255]."""

    def __init__(self, model, threads=THREADS):
        self.interpreter = interpreter(model, threads)
        self.runner = self.interpreter.get_signature_runner(SIGNATURE)
        self.inputs = self.runner.get_input_details()
        self.input_dtype = self.inputs[INPUT]["dtype"]

    def __call__(self, image, style_weights=None):
        """(height, width, 3) -> float32 (height, width, 3) in [0, 255]. `style_weights`:
        those of a build of several styles, float (quantized here for the uint8 build)."""
        batch = np.asarray(image, np.float32)[None]
        if self.input_dtype == np.uint8:
            batch = np.clip(np.rint(batch), 0, 255).astype(np.uint8)
        feed = {INPUT: batch}
        if (style_weights is None) != (STYLE_WEIGHTS not in self.inputs):
            raise TFLiteError("a build of several styles takes style_weights, one of one style "
                              "none")
        if style_weights is not None:
            feed[STYLE_WEIGHTS] = self._quantized(STYLE_WEIGHTS, style_weights)
        return self.runner(**feed)[OUTPUT][0].astype(np.float32)

    def _quantized(self, name, values):
        """`values` as input `name` takes them: float32, or an integer type by its scale
        and zero point."""
        details, values = self.inputs[name], np.asarray(values, np.float32)
        if not np.issubdtype(details["dtype"], np.integer):
            return values
        scale, zero_point = details["quantization"]
        limits = np.iinfo(details["dtype"])
        return np.clip(np.rint(values / scale + zero_point), limits.min,
                       limits.max).astype(details["dtype"])

    def latency(self, image, runs=5, style_weights=None):
        """Median wall time of `runs` runs in seconds, after one warm-up run."""
        self(image, style_weights)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            self(image, style_weights)
            times.append(time.perf_counter() - started)
        return statistics.median(times)


def psnr(output, reference):
    """Peak signal-to-noise ratio in dB of images in [0, 255] (inf when identical)."""
    mse = float(np.mean((np.asarray(output, np.float64) - np.asarray(reference, np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)
