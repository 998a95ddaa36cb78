"""A network's forward pass as one TensorFlow graph, with its weights as constants where
it computes in float32. TensorFlow only.

Why: for a float32 convolution of one image whose weights are a variable's, TensorFlow's
oneDNN kernel fixes the weights' memory order to its own (HWIO); oneDNN's AVX2 direct
convolutions refuse that order, which leaves the im2col + matmul one, about 2.5x slower
on the residual convolutions and 4.5x on the 32 -> 3 output one. With the weights as
graph constants TensorFlow lets oneDNN choose the order (and reorders them once), as it
does for any batch over 1. With AVX-512 oneDNN takes HWIO weights directly, and freezing
gains nothing measurable; it costs memory (about 100 MiB more peak). Nor does it in
bfloat16 (which runs only natively, on AVX-512 with BF16), so there the graph reads the
variables (README, Benchmarks). export.py's SavedModel is frozen_function's graph, which
every signature calls: one function, its weights stored once.

Both graphs compute instance normalization with TensorFlow's fused batch normalization
(oneDNN's, statistics in float32), reflection padding with concatenations and the output
layer's convolution to 3 channels as one to 2x2 blocks of them: the ops they replace
took two thirds of a 256x256 pass (README, Benchmarks).
"""

import contextlib
import functools
import weakref

BANDS = 4  # of the output layer's rows, see _narrow_conv


def _instance_norm(x, scale, offset, epsilon, single=False):
    """transformer_net.kernels' `instance_norm`: batch normalization's training mode over
    one image is instance normalization. A batch of any size (`single`: one image, which a
    graph's input shape fixes but its reshapes forget) moves its images into the channels,
    (1, height, width, batch * channels), and back."""
    import tensorflow as tf

    def normalize(x, scale, offset):
        return tf.raw_ops.FusedBatchNormV3(
            x=x, scale=scale, offset=offset, mean=tf.constant([], tf.float32),
            variance=tf.constant([], tf.float32), epsilon=epsilon, is_training=True)[0]

    channels = x.shape[-1]
    if single:
        return normalize(x, tf.reshape(scale, (-1,)), tf.reshape(offset, (-1,)))
    shape = tf.shape(x)
    batch, height, width = shape[0], shape[1], shape[2]
    scale, offset = (tf.reshape(tf.broadcast_to(tf.reshape(v, (-1, channels)), (batch, channels)),
                                (-1,)) for v in (scale, offset))
    y = normalize(tf.reshape(tf.transpose(x, (1, 2, 0, 3)), (1, height, width, -1)), scale,
                  offset)
    return tf.transpose(tf.reshape(y, (height, width, batch, channels)), (2, 0, 1, 3))


def _reflect_pad(x, rows, cols):
    """transformer_net.kernels' `reflect_pad`: slices, reversed, on each side, 2-4x faster
    than MirrorPad in bfloat16 and float32 for the network's tensors."""
    import tensorflow as tf

    for axis, (before, after) in ((1, rows), (2, cols)):
        # Indices from the end (negative) rather than from the size: no shape ops.
        parts = [tf.reverse(_take(x, axis, 1, before + 1), [axis]), x,
                 tf.reverse(_take(x, axis, -after - 1, -1), [axis])]
        x = tf.concat([p for p, n in zip(parts, (before, 1, after)) if n], axis)
    return x


def _take(x, axis, start, stop):
    return x[:, start:stop] if axis == 1 else x[:, :, start:stop]


def _narrow_conv(x, kernel, bias):
    """transformer_net.kernels' `narrow_conv`: a stride-2 convolution to the 2x2 blocks of
    the output, four times the channels through a kernel one tap wider each way (1.23x the
    multiplies for a 9x9 kernel), rearranged into space. oneDNN's convolution to 3 channels
    runs 3.5-4x slower than that one (measured, float32): the output layer's alone was a
    third of a 256x256 pass. Where `kernel` is wider than `x` (a bfloat16 network's float32
    output layer), in BANDS bands of rows one after another, each casting its own rows:
    `x` cast whole was a pass's largest tensor (130 MiB at 1024x1024), and TensorFlow's
    pool keeps every page it once touched."""
    import tensorflow as tf

    from perceptual_style.transformer_net import block_kernel

    rows, cols = kernel.shape[:2]
    blocks = block_kernel(kernel)
    shape = tf.shape(x)
    height, width = shape[1] - rows + 1, shape[2] - cols + 1
    count = BANDS if x.dtype != kernel.dtype else 1
    bounds = [(height + 1) // 2 * i // count for i in range(count + 1)]  # in 2-row blocks
    bands = []
    for start, stop in zip(bounds, bounds[1:]):
        with tf.control_dependencies(bands[-1:]):  # else the executor runs them at once
            band = tf.cast(x[:, 2 * start:2 * stop + rows - 1], kernel.dtype)
            # Rows and a column of zeros where the output's are odd, and for an empty band.
            missing = tf.maximum(2 * (stop - start), 2) + rows - 1 - tf.shape(band)[1]
            band = tf.pad(band, [(0, 0), (0, missing), (0, width % 2), (0, 0)])
            y = tf.nn.bias_add(tf.nn.conv2d(band, blocks, 2, "VALID"), tf.tile(bias, [4]))
            bands.append(y[:, :stop - start])
    return tf.nn.depth_to_space(tf.concat(bands, axis=1), 2)[:, :height, :width]


@contextlib.contextmanager
def _fused(batch):
    """Traces in this block take the fused kernels, for graphs of `batch` images."""
    from perceptual_style.transformer_net import kernels

    with kernels(instance_norm=functools.partial(_instance_norm, single=batch == 1),
                 reflect_pad=_reflect_pad, narrow_conv=_narrow_conv):
        yield


def _specs(net, batch=None):
    """The graph's inputs: float32 images (`batch` of them, any number if None), and a
    network of several styles' style weights as rows, (1 or batch, num_styles): one graph
    for cli.py's one vector for the batch and the SavedModel's one row per image."""
    import tensorflow as tf

    specs = [tf.TensorSpec((batch, None, None, 3), tf.float32)]
    if net.num_styles > 1:
        specs.append(tf.TensorSpec((None, net.num_styles), tf.float32))
    return specs


def _inputs(images, style_weights):
    import tensorflow as tf

    images = tf.convert_to_tensor(images, tf.float32)
    if style_weights is None:
        return [images]
    style_weights = tf.convert_to_tensor(style_weights, tf.float32)
    return [images, tf.reshape(style_weights, (-1, style_weights.shape[-1]))]


def frozen_function(net, batch=None):
    """`net` (a TransformerNet, in any precision policy) as a function `(images,
    style_weights=None)` of float32 images (batch, height, width, 3) in [0, 255] -> the
    stylized images as a tensor, one graph for every size (and every batch, or `batch`
    images only), with the weights `net` has now folded in: for inference only, as later
    changes to them do not reach it. `style_weights`, (num_styles,) or (1 or batch,
    num_styles), for a network of several styles only."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    with _fused(batch):
        graph = convert_variables_to_constants_v2(
            tf.function(net).get_concrete_function(*_specs(net, batch)))
    # A frozen function returns its outputs as a list: the network has one.
    return lambda images, style_weights=None: graph(*_inputs(images, style_weights))[0]


def compiled_function(net):
    """`net`'s forward pass as frozen_function's, as fast as TensorFlow runs it: frozen
    where `net` computes in float32, else graphs over its variables, which hold `net`
    only weakly (so that a cache of these keyed by the network lets it go). One graph for
    single images, whose normalization needs no transposes, and one for batches, each
    made at its first call."""
    import tensorflow as tf

    network, graphs = weakref.ref(net), {}

    def trace(batch):
        if network().compute_dtype == "float32":
            return frozen_function(network(), batch)
        with _fused(batch):
            graph = tf.function(lambda *inputs: network()(*inputs)).get_concrete_function(
                *_specs(network(), batch))
        return lambda images, style_weights=None: graph(*_inputs(images, style_weights))

    def forward(images, style_weights=None):
        batch = 1 if len(images) == 1 else None
        if batch not in graphs:
            graphs[batch] = trace(batch)
        return graphs[batch](images, style_weights)

    return forward
