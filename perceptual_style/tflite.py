"""TensorFlow Lite builds of a TransformerNet, and running them in LiteRT.

A build is made the way that keeps the weights: the network is written as a SavedModel with
one signature of the wanted input shape (`keras.export.ExportArchive`), then converted with
`TFLiteConverter.from_saved_model`. (Converting a Keras 3 model through a concrete function
can lose its variables: a tiny file whose output is NaN.) Only TFLite builtin ops are
allowed; the converted flatbuffer's op codes are checked again, so no build needs the Flex
(Select TF ops) runtime or a custom op.

Every build has the signature `stylize`: input `images` [1, height, width, 3] RGB in
[0, 255] (float32, or uint8 for the `uint8` build), output `stylized`, the same shape and
range. A fixed-shape build is made from a signature of that shape; the resizable build's
height and width are -1 (any size, resized before running). A network of several styles
takes a second input, `style_weights` [number of styles]: one weight per style in the
order of its `styles` metadata, one-hot to apply a style, a convex combination to blend
them (float32; in the `uint8` build uint8 too, scale 1/255: round(255 x weight)).

A *staged* build (fixed-shape, for runtimes that cannot resize, such as LiteRT.js) also
stylizes photos of other sizes as one untiled pass would, with whole-photo instance
normalization statistics:
- `whole`: `images` and `size` (int32 [2], the photo's height and width in the top-left
  corner of `images`; the rest is ignored) -> `stylized`. For photos up to the build's
  size, in one pass: each normalization's statistics are taken over the photo only, and
  before each convolution what lies beyond the photo is replaced with what the network's
  padding would put there (transformer_net.edge_hook).
- `stage0` ... `stageN`: the network's stages (TransformerNet.stages: the downsampling
  layers, each residual block, the upsampling layers), each run over a larger photo's tiles
  (windows of the build's size, `TILE_MARGIN` pixels of context around each core). Inputs:
  `images` (stage0) or `features` (the previous stage's output, at a quarter of the
  resolution), `size` (the photo's height and width from the window's top-left corner),
  `core` (int32 [4]: top, bottom, left, right of the tile's core in the window's pixels)
  and `statistics` [L, 2, C] (mean and variance of each of the stage's L normalizations,
  zero-padded to C channels). Outputs: `features` (or `stylized` from the last stage),
  `sums` [L, 3, C]: pixel count, sum of (x - mean) and sum of (x - mean)^2 over the core of
  each normalization's input, and (but from the last stage) `next_sums` [1, 3, C']: those
  (about mean 0) of the next stage's first normalization. Sweeps over the tiles, each
  updating the statistics from the previous one's sums, make them exact layer after layer
  (a layer's input depends only on the statistics of the layers before it): after L - 1
  sweeps when the previous stage's last sweep gave the first layer's (next_sums), after L
  for stage0; a last sweep then gives the stage's output. `StagedRunner` does this in
  Python as web/app.js does in the browser.
A staged build of a network of several styles takes `style_weights` in every signature,
as `stylize` does: one build serves every style and every blend.

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
WHOLE = "whole"
STAGE = "stage{}"
# Context around a tile's core in staged tiling: each stage sees at most 8 pixels past a
# core (the downsampling layers 7, a residual block 2 at a quarter of the resolution, the
# upsampling and output layers 2 at a quarter), so a core's output never depends on where
# its window ends.
TILE_MARGIN = 16
QUANTIZATIONS = ("float32", "float16", "dynamic_int8", "int8", "uint8")
RESIZABLE = "resizable"  # the size label of a build that takes any height and width
THREADS = 2
# PSNR floors against the Keras float32 network, dB. int8's is what the untrained test
# network and all seven styles shipped then reach (lowest measured: udnie, since retired, 19.5
# dB on one photo with 16 calibration photos, 18.4 with 64; see docs/mobile.md).
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


def write_saved_model(net, directory, shape=None, staged=False):
    """Writes `net` as a SavedModel whose `stylize` signature takes images of `shape`
    (height, width), or of any size when `shape` is None, and the style weights of a
    network of several styles; `staged` (a fixed `shape`) adds the staged build's
    signatures. The names of the signatures written."""
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
    names = [SIGNATURE]
    if staged:
        for name, function, inputs in _staged_endpoints(net, shape):
            archive.add_endpoint(name, function, input_signature=[
                tf.TensorSpec(shape, tf.int32 if dtype == "int32" else tf.float32, name=key)
                for key, shape, dtype in inputs])
            names.append(name)
    archive.write_out(directory, verbose=False)
    return names


def _stage_channels(net):
    """For each of `net`'s stages, the channel counts of its normalizations, and of its
    output, from a pass over a small image."""
    from keras import ops

    from perceptual_style.transformer_net import statistics_hook

    found, x = [], np.zeros((1, 16, 16, 3), np.float32)
    weights = None if net.num_styles == 1 else np.full(net.num_styles, 1 / net.num_styles,
                                                        np.float32)
    for stage in net.stages():
        channels = []

        def record(layer, t, channels=channels):
            channels.append(t.shape[-1])
            return ops.moments(t, axes=(1, 2), keepdims=True)

        with statistics_hook(record):
            x = stage(x, weights)
        found.append((channels, x.shape[-1]))
    return found


def _staged_endpoints(net, shape):
    """(name, function, [(input name, shape, dtype)]) of the staged signatures of a build
    of `shape` (see the module's docstring)."""
    from keras import ops

    from perceptual_style.transformer_net import edge_hook, fill_beyond, statistics_hook, to_rgb

    height, width = shape
    if height % 4 or width % 4 or min(shape) <= 2 * TILE_MARGIN:
        raise TFLiteError(f"a staged build needs sides that are multiples of 4 over "
                          f"{2 * TILE_MARGIN}, not {height}x{width}")

    def box(t, top, bottom, left, right):
        """A [1, h, w, 1] mask of the rows [top, bottom) and columns [left, right) of the
        window (full-resolution pixels, multiples of 4) at `t`'s resolution."""
        masks = []
        for axis, side, low, high in ((1, height, top, bottom), (2, width, left, right)):
            scale = side // t.shape[axis]
            index = ops.arange(t.shape[axis], dtype="int32")
            inside = ops.logical_and(index >= low // scale, index < high // scale)
            masks.append(ops.reshape(ops.cast(inside, t.dtype),
                                     (1, -1, 1, 1) if axis == 1 else (1, 1, -1, 1)))
        return masks[0] * masks[1]

    def edges(rows, cols):
        """The edge hook for a photo of `rows` x `cols` padded pixels from the window's
        top-left corner."""
        def fill(t, mode):
            return fill_beyond(t, rows // (height // t.shape[1]), cols // (width // t.shape[2]),
                               mode)
        return fill

    def whole(images, size, style_weights=None):
        rows, cols = net.padded_size(size[0], size[1])

        def moments(layer, t):
            mask = box(t, 0, rows, 0, cols)
            count = ops.sum(mask)
            mean = ops.sum(t * mask, axis=(0, 1, 2), keepdims=True) / count
            variance = ops.sum(ops.square(t - mean) * mask, axis=(0, 1, 2), keepdims=True) / count
            return mean, variance

        with statistics_hook(moments), edge_hook(edges(rows, cols)):
            return {OUTPUT: net(net.fill_input(images, size[0], size[1]),
                                style_weights=style_weights)}

    def core_sums(t, mean, core, rows, cols):
        """[3, channels]: the pixel count, sum of t - mean and sum of (t - mean)^2 over the
        core (its part in the padded photo)."""
        mask = box(t, core[0], ops.minimum(core[1], rows), core[2], ops.minimum(core[3], cols))
        shifted = (t - mean) * mask
        return ops.stack([ops.sum(mask) * ops.ones((t.shape[-1],)),
                          ops.sum(shifted, axis=(0, 1, 2)),
                          ops.sum(shifted * (t - mean), axis=(0, 1, 2))])

    def staged(index, stages, widest):
        def function(x, size, core, statistics, style_weights=None):
            rows, cols = net.padded_size(size[0], size[1])
            if index == 0:
                x = net.fill_input(x, size[0], size[1])
            sums = []

            def measure(layer, t):
                channels = t.shape[-1]
                mean, variance = (ops.reshape(statistics[len(sums), i, :channels],
                                              (1, 1, 1, channels)) for i in (0, 1))
                sums.append(ops.pad(core_sums(t, mean, core, rows, cols),
                                    ((0, 0), (0, widest - channels))))
                return mean, variance

            def measure_first(layer, t):
                sums.append(core_sums(t, 0.0, core, rows, cols)[None])
                raise _Measured

            with edge_hook(edges(rows, cols)):
                with statistics_hook(measure):
                    y = stages[index](x, style_weights)
                outputs = {"sums": ops.stack(sums)}
                if index == len(stages) - 1:
                    return {**outputs, OUTPUT: to_rgb(y)}
                try:  # the next stage up to its first normalization's input, summed
                    with statistics_hook(measure_first):
                        stages[index + 1](y, style_weights)
                except _Measured:
                    pass
            return {**outputs, "features": y, "next_sums": sums[-1]}
        return function

    stages = net.stages()
    channels = _stage_channels(net)
    # A network of several styles: every signature takes the style weights last.
    styles = [] if net.num_styles == 1 else [(STYLE_WEIGHTS, [net.num_styles], "float32")]
    yield WHOLE, whole, [(INPUT, [1, height, width, 3], "float32"), ("size", [2], "int32"),
                         *styles]
    for index, (normalized, _) in enumerate(channels):
        widest = max(normalized)
        inputs = ((INPUT, [1, height, width, 3]) if index == 0 else
                  ("features", [1, height // 4, width // 4, channels[index - 1][1]]))
        yield (STAGE.format(index), staged(index, stages, widest),
               [(*inputs, "float32"), ("size", [2], "int32"), ("core", [4], "int32"),
                ("statistics", [len(normalized), 2, widest], "float32"), *styles])


class _Measured(Exception):
    """Ends tracing a stage once its first normalization's input is summed."""


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


def convert(saved_model_dir, quantization, representative_images=None, signatures=(SIGNATURE,)):
    """The TFLite flatbuffer (bytes) of the SavedModel's `signatures` (those
    `write_saved_model` wrote). `int8` and `uint8` need `representative_images` (see
    `calibration_batches`), and calibrate the `stylize` signature only."""
    import tensorflow as tf

    if quantization not in QUANTIZATIONS:
        raise TFLiteError(f"unknown quantization {quantization!r}: one of {', '.join(QUANTIZATIONS)}")
    if quantization in ("int8", "uint8") and list(signatures) != [SIGNATURE]:
        raise TFLiteError(f"{quantization} builds have the {SIGNATURE} signature only")
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir,
                                                         signature_keys=list(signatures))
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


def _check_style_weights(style_weights, several_styles):
    """A one-line TFLiteError for style weights given to a build of one style, or none to
    a build of several."""
    if (style_weights is None) == several_styles:
        raise TFLiteError("a build of several styles takes style_weights, one of one style none")


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
        _check_style_weights(style_weights, STYLE_WEIGHTS in self.inputs)
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


class StagedRunner:
    """Stylizes RGB photos of any size with a staged build as web/app.js does in the page:
    a photo up to the build's size in one `whole` pass, a larger one stage by stage over
    tiles, each stage's statistics measured in sweeps over the whole photo (see the module's
    docstring). For the page's tests and measurements."""

    def __init__(self, model, threads=THREADS):
        self.interpreter = interpreter(model, threads)
        names = self.interpreter.get_signature_list()
        self.whole = self.interpreter.get_signature_runner(WHOLE)
        self.stages = [self.interpreter.get_signature_runner(STAGE.format(i))
                       for i in range(len(names)) if STAGE.format(i) in names]
        inputs = self.whole.get_input_details()
        self.window = tuple(int(s) for s in inputs[INPUT]["shape"][1:3])
        self.several_styles = STYLE_WEIGHTS in inputs

    def __call__(self, image, style_weights=None):
        """(height, width, 3) -> float32 (height, width, 3) in [0, 255]. `style_weights`:
        those of a build of several styles."""
        _check_style_weights(style_weights, self.several_styles)
        styles = {} if style_weights is None else {
            STYLE_WEIGHTS: np.asarray(style_weights, np.float32)}
        height, width = image.shape[:2]
        if height <= self.window[0] and width <= self.window[1]:
            window = np.zeros((1, *self.window, 3), np.float32)
            window[0, :height, :width] = image
            return self.whole(**{INPUT: window, "size": np.array([height, width], np.int32)},
                              **styles)[OUTPUT][0, :height, :width].astype(np.float32)
        from perceptual_style.tiling import grid

        # The canvas: the photo padded to a multiple of 4, and to at least one window.
        canvas = [max(-(-side // 4) * 4, window)
                  for side, window in zip((height, width), self.window)]
        tiles = [(rows, cols) for rows in grid(height, canvas[0], self.window[0] - 2 * TILE_MARGIN,
                                               TILE_MARGIN, self.window[0])
                 for cols in grid(width, canvas[1], self.window[1] - 2 * TILE_MARGIN,
                                  TILE_MARGIN, self.window[1])]
        x = np.zeros((*canvas, 3), np.float32)
        x[:height, :width] = image
        first = None  # the sums of a stage's first normalization, from the stage before
        for index, stage in enumerate(self.stages):
            layers, _, channels = stage.get_input_details()["statistics"]["shape"]
            statistics = np.zeros((layers, 2, channels))
            statistics[:, 1] = 1
            if first is not None:  # summed about mean 0
                statistics[:1, :, :first.shape[-1]] = updated_statistics(
                    np.zeros((1, 2, first.shape[-1])), first)
            scale = 1 if index == 0 else 4  # of this stage's input; its output's below
            out_scale, key = (1, OUTPUT) if index == len(self.stages) - 1 else (4, "features")
            sweeps = layers + (first is None)
            for sweep in range(sweeps):
                last = sweep == sweeps - 1
                sums, next_first = np.zeros((layers, 3, channels)), 0.0
                if last:
                    output = np.zeros((canvas[0] // out_scale, canvas[1] // out_scale,
                                       stage.get_output_details()[key]["shape"][-1]), np.float32)
                for (y, y1, wy0, wy1), (x0, x1, wx0, wx1) in tiles:
                    # The core, to the window's end for the last (whose padding counts).
                    y1, x1 = (wy1 if y1 == height else y1), (wx1 if x1 == width else x1)
                    result = stage(**{
                        INPUT if index == 0 else "features":
                            x[wy0 // scale:wy1 // scale, wx0 // scale:wx1 // scale][None],
                        "size": np.array([height - wy0, width - wx0], np.int32),
                        "core": np.array([y - wy0, y1 - wy0, x0 - wx0, x1 - wx0], np.int32),
                        "statistics": statistics.astype(np.float32)}, **styles)
                    sums += result["sums"]
                    if last:
                        output[y // out_scale:y1 // out_scale, x0 // out_scale:x1 // out_scale] = \
                            result[key][0, (y - wy0) // out_scale:(y1 - wy0) // out_scale,
                                        (x0 - wx0) // out_scale:(x1 - wx0) // out_scale]
                        if key != OUTPUT:
                            next_first = next_first + result["next_sums"].astype(np.float64)
                if not last:
                    statistics = updated_statistics(statistics, sums)
            x, first = output, (None if key == OUTPUT else next_first)
        return x[:height, :width]


def updated_statistics(statistics, sums):
    """A stage's statistics [L, 2, C] (mean, variance) measured by the sums [L, 3, C] of a
    sweep made with `statistics` (count, sum of x - mean, sum of (x - mean)^2, over the
    whole photo); channels no layer has keep mean 0 and variance 1."""
    count, shifted, squares = (sums[:, i] for i in range(3))
    counted = count > 0
    shift = np.divide(shifted, count, out=np.zeros_like(shifted), where=counted)
    mean = np.where(counted, statistics[:, 0] + shift, 0)
    variance = np.where(counted, np.divide(squares, count, out=np.ones_like(squares),
                                           where=counted) - shift ** 2, 1)
    return np.stack([mean, np.maximum(variance, 0)], axis=1)


def psnr(output, reference):
    """Peak signal-to-noise ratio in dB of images in [0, 255] (inf when identical)."""
    mse = float(np.mean((np.asarray(output, np.float64) - np.asarray(reference, np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)
