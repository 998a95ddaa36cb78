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

In either graph, the float32 output layer of a bfloat16 network convolves its input in
BANDS bands of rows, one after another (_in_bands), so that its float32 copy is made a band
at a time: whole, it was a pass's largest tensor (130 MiB at 1024x1024), and TensorFlow's
pool keeps every page it once touched.
"""

import weakref

BANDS = 4


def _specs(net):
    """The graph's inputs: float32 images, and a network of several styles' style weights
    as rows, (1 or batch, num_styles): one graph for cli.py's one vector for the batch and
    the SavedModel's one row per image."""
    import tensorflow as tf

    specs = [tf.TensorSpec((None, None, None, 3), tf.float32)]
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


def _in_bands(conv, x):
    """`conv(x)` (a ConvLayer's Conv2D, "valid") in BANDS bands of output rows, each after the
    previous one, where `conv` computes in a wider dtype than `x`: each band's rows of `x`
    are cast by `conv` as they are needed, not all of `x` at once. Every output pixel sees
    what it sees in one convolution."""
    import tensorflow as tf

    if x.dtype == tf.as_dtype(conv.compute_dtype) or tuple(conv.strides) != (1, 1):
        return conv(x)
    reach = conv.kernel_size[0] - 1  # input rows past a band's last output row
    rows = tf.shape(x)[1] - reach
    bounds = [i * rows // BANDS for i in range(BANDS + 1)]
    bands = []
    for start, stop in zip(bounds, bounds[1:]):
        with tf.control_dependencies(bands[-1:]):  # else the executor runs them at once
            bands.append(conv(x[:, start:stop + reach]))
    return tf.concat(bands, axis=1)


def _banded(call):
    """`call`, a network's forward pass, traced with its output layer in bands (_in_bands)."""
    from perceptual_style.transformer_net import convolution_hook

    def traced(*inputs):
        with convolution_hook(_in_bands):
            return call(*inputs)
    return traced


def frozen_function(net):
    """`net` (a TransformerNet, in any precision policy) as a function `(images,
    style_weights=None)` of float32 images (batch, height, width, 3) in [0, 255] -> the
    stylized images as a tensor, one graph for every size and batch, with the weights `net`
    has now folded in: for inference only, as later changes to them do not reach it.
    `style_weights`, (num_styles,) or (1 or batch, num_styles), for a network of several
    styles only."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    graph = convert_variables_to_constants_v2(
        tf.function(_banded(net)).get_concrete_function(*_specs(net)))
    # A frozen function returns its outputs as a list: the network has one.
    return lambda images, style_weights=None: graph(*_inputs(images, style_weights))[0]


def compiled_function(net):
    """`net`'s forward pass as frozen_function's, as fast as TensorFlow runs it: frozen
    where `net` computes in float32, else one graph over its variables, which holds `net`
    only weakly (so that a cache of these keyed by the network lets it go)."""
    import tensorflow as tf

    if net.compute_dtype == "float32":
        return frozen_function(net)
    network = weakref.ref(net)
    graph = tf.function(_banded(lambda *inputs: network()(*inputs)), input_signature=_specs(net))
    return lambda images, style_weights=None: graph(*_inputs(images, style_weights))
