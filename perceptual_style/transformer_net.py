"""The image transformation network of Johnson et al. 2016 (supplementary, table 1).

Downsample twice with strided convolutions, five residual blocks at 128 channels, upsample
twice back to full size, one 9x9 convolution to RGB. Instance normalization (Ulyanov et
al. 2016) follows every convolution but the last; every convolution reflection-pads its
input so borders carry no zero-padding artifacts. Pure Keras 3, so it runs on the
TensorFlow and JAX backends alike. Input and output are RGB in [0, 255].

`padding="replicate"` (repeat the edge pixel) or `"zero"` pads the same amounts another way,
for runtimes without TensorFlow Lite's MIRROR_PAD: the weights are the same in every mode,
so a trained reflect network's weights load into either.

`arch="mobile"` is a smaller network for phones: channels scaled by `width_multiplier`,
fewer residual blocks, depthwise separable 3x3 convolutions (Howard et al. 2017,
MobileNets) and zero "same" padding only.

`num_styles=N` makes one network of N styles (Dumoulin, Shlens and Kudlur 2017, "A Learned
Representation for Artistic Style"): every convolution is shared, and each style owns only
the scale and offset of the instance normalizations (conditional instance normalization).
It is called as `net(images, style_weights=w)`, w of shape (N,) or (batch, N): one-hot
picks a style, a convex combination blends them. A trained network learns a new style by
its normalization parameters alone (`style_network`, `train_normalization_only`,
`add_style`): its convolutions, and so its other styles, stay as they were; the same
holds for a network cut to some of its styles (`select_styles`).
"""

import contextlib
import contextvars
import functools
import operator

import keras
import numpy as np
from keras import ops

PACKAGE = "perceptual_style"
INPUT_SHAPE = (None, None, None, 3)
UPSAMPLING_MODES = ("nearest", "transpose")
ARCHITECTURES = ("full", "mobile")
PADDINGS = ("reflect", "replicate", "zero")
MIN_SIDE = 5  # the smallest side the full network's reflection padding takes
# Bounds far beyond any network here (the paper has 5 blocks at 1.0), so that a crafted
# config cannot ask for a network that takes minutes and gigabytes to build.
MAX_RESIDUAL_BLOCKS = 32
MAX_WIDTH_MULTIPLIER = 4.0
MAX_STYLES = 1024  # the paper's largest network has 32
NARROW = 4  # convolutions to at most this many channels take a `narrow_conv` kernel
_STATISTICS_HOOK = contextvars.ContextVar("statistics_hook", default=None)
_EDGE_HOOK = contextvars.ContextVar("edge_hook", default=None)
_KERNELS = contextvars.ContextVar("kernels", default={})


def _with_channels(shape, channels):
    return (*tuple(shape)[:-1], channels)


def _styled(layer, x, style_weights=None):
    """`layer(x)`, handing on style weights where there are any: a single-style network's
    calls stay as they were (no keyword argument for Keras to convert in each layer)."""
    return layer(x) if style_weights is None else layer(x, style_weights=style_weights)


@contextlib.contextmanager
def statistics_hook(hook):
    """Within this block, eager calls of instance normalization take their mean and
    variance from `hook(layer, x)` instead of from `x` alone. Tiling uses this to normalize
    every tile of a photo with the statistics of the whole photo (see tiling.py)."""
    token = _STATISTICS_HOOK.set(hook)
    try:
        yield
    finally:
        _STATISTICS_HOOK.reset(token)


@contextlib.contextmanager
def edge_hook(hook):
    """Within this block, every convolution's input first goes through `hook(x, mode)`,
    `mode` the padding the convolution applies (one of PADDINGS; an upsampling convolution's
    input is padded at its own resolution, see ConvLayer). A fixed-shape build uses it
    to run an image smaller than its input as if alone: what lies beyond the image is
    replaced with what the padding would put there (`fill_beyond`; see tflite.py)."""
    token = _EDGE_HOOK.set(hook)
    try:
        yield
    finally:
        _EDGE_HOOK.reset(token)


@contextlib.contextmanager
def kernels(**overrides):
    """Within this block, layers call one backend's faster equivalent of their generic ops,
    by name: `instance_norm(x, scale, offset, epsilon)` normalizes `x` by its own statistics
    (scale and offset float32, (channels,) or (batch, channels)); `reflect_pad(x, rows,
    cols)` pads by static amounts; `narrow_conv(x, kernel, bias)` is a stride-1 "valid"
    convolution to a few channels (the output layer's) in `kernel`'s dtype. frozen.py
    traces TensorFlow's into its graphs with it, the trainer `blocked_conv`; elsewhere
    layers stay as they are (TensorFlow Lite builds keep MIRROR_PAD, tiling its
    statistics hook)."""
    unknown = set(overrides) - {"instance_norm", "reflect_pad", "narrow_conv"}
    if unknown:
        raise ValueError(f"no such kernel: {', '.join(sorted(unknown))}")
    token = _KERNELS.set(overrides)
    try:
        yield
    finally:
        _KERNELS.reset(token)


def block_kernel(kernel):
    """A stride-1 convolution's `kernel` (rows, cols, in, out) as that of a stride-2 one
    to the 2x2 blocks of its output, (rows + 1, cols + 1, in, 4 * out), each block's
    channels in the order depth to space reads them: (row, column, out)."""
    rows, cols, _, channels = kernel.shape
    blocks = ops.stack([ops.pad(kernel, [(r, 1 - r), (c, 1 - c), (0, 0), (0, 0)])
                        for r in (0, 1) for c in (0, 1)], axis=3)
    return ops.reshape(blocks, (rows + 1, cols + 1, -1, 4 * channels))


def blocked_conv(x, kernel, bias):
    """A `narrow_conv` kernel in keras.ops, for either backend, which the trainer takes:
    the stride-1 "valid" convolution as a stride-2 one to 2x2 blocks (block_kernel), put
    into space. The gradients of the output layer's 9x9 convolution to 3 channels were
    70% of the transformer's backward pass (oneDNN, float32, 128x128 crops; measured)."""
    rows, cols, _, channels = kernel.shape
    height, width = x.shape[1] - rows + 1, x.shape[2] - cols + 1
    # In `kernel`'s dtype, as the layer's convolution casts (a bfloat16 network's output
    # layer computes in float32).
    x = ops.pad(ops.cast(x, kernel.dtype), [(0, 0), (0, height % 2), (0, width % 2), (0, 0)])
    y = ops.conv(x, block_kernel(kernel), strides=2) + ops.tile(bias, [4])
    down, across = y.shape[1], y.shape[2]
    y = ops.transpose(ops.reshape(y, (-1, down, across, 2, 2, channels)), (0, 1, 3, 2, 4, 5))
    return ops.reshape(y, (-1, 2 * down, 2 * across, channels))[:, :height, :width]


def _edged(x, mode):
    hook = _EDGE_HOOK.get()
    return x if hook is None else hook(x, mode)


@keras.saving.register_keras_serializable(PACKAGE)
class InstanceNormalization(keras.layers.Layer):
    """Normalizes each image's channels by their own mean and variance over space,
    then applies a learned per-channel scale and offset.

    With `num_styles` N > 1 it is conditional instance normalization: scale and offset
    hold one row per style, (N, channels), and a call takes `style_weights` of shape (N,)
    or (batch, N), whose products with them are the scale and offset applied.
    """

    def __init__(self, epsilon=1e-5, num_styles=1, **kwargs):
        super().__init__(**kwargs)
        self.epsilon, self.num_styles = epsilon, num_styles

    def build(self, input_shape):
        channels = input_shape[-1]
        shape = (channels,) if self.num_styles == 1 else (self.num_styles, channels)
        # Not autocast: a blend of styles is taken in float32, then cast to the compute
        # dtype as a single style's parameters are.
        self.scale = self.add_weight(shape=shape, initializer="ones", name="scale",
                                     autocast=False)
        self.offset = self.add_weight(shape=shape, initializer="zeros", name="offset",
                                      autocast=False)

    def call(self, x, style_weights=None):
        hook, kernel = _STATISTICS_HOOK.get(), _KERNELS.get().get("instance_norm")
        scale, offset = self.scale, self.offset
        weights = self._style_weights(style_weights)
        if weights is not None:
            # (N,) -> (channels,), or (batch, N) -> (batch, channels).
            scale, offset = (ops.matmul(weights, v) for v in (scale, offset))
        if hook is None and kernel is not None:
            return kernel(x, scale, offset, self.epsilon)
        if hook is None:
            mean, variance = ops.moments(x, axes=(1, 2), keepdims=True)
        else:  # float32 statistics, whatever precision the network computes in
            mean, variance = (ops.cast(v, x.dtype) for v in hook(self, x))
        # Broadcast as (batch or 1, 1, 1, channels).
        scale, offset = (ops.cast(ops.reshape(v, (-1, 1, 1, v.shape[-1])), x.dtype)
                         for v in (scale, offset))
        # Folded into one multiply-add over the activations: fewer full-size temporaries.
        multiplier = ops.rsqrt(variance + self.epsilon) * scale
        return x * multiplier + (offset - mean * multiplier)

    def _style_weights(self, style_weights):
        """float32 `style_weights` (None for a single style); a ValueError when they do not
        fit. (A bfloat16 network receives them rounded to bfloat16, as Keras casts every
        call argument: a blend moves by under 0.4%, a one-hot choice not at all.)"""
        if self.num_styles == 1:
            if style_weights is not None:
                raise ValueError("a single-style network takes no style_weights")
            return None
        n = self.num_styles
        weights = None if style_weights is None else ops.cast(style_weights, "float32")
        shape = None if weights is None else tuple(weights.shape)
        if shape is None or len(shape) not in (1, 2) or shape[-1] not in (n, None):
            raise ValueError(f"a network of {n} styles takes style_weights of shape ({n},) or "
                             f"(batch, {n}), got {'none' if shape is None else shape}")
        return weights

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "num_styles": self.num_styles}


def pad(x, rows, cols, mode):
    """`x` (batch, height, width, channels) with `rows` (top, bottom) and `cols` (left, right)
    pixels added in `mode`, one of PADDINGS: the one place that picks the padding op.
    "replicate" is built from ops that TensorFlow Lite's GPU delegate runs: static amounts
    become slices and one concatenation per axis, amounts known only at run time (the
    resizable build's pad to a multiple of 4) a gather of clipped indices."""
    if all(isinstance(a, int) and a == 0 for a in (*rows, *cols)):
        return x
    kernel = _KERNELS.get().get("reflect_pad")
    if mode == "reflect" and kernel is not None and all(isinstance(a, int) for a in (*rows, *cols)):
        return kernel(x, rows, cols)
    if mode != "replicate":
        return ops.pad(x, ((0, 0), rows, cols, (0, 0)),
                       mode="reflect" if mode == "reflect" else "constant")
    for axis, (before, after) in ((1, rows), (2, cols)):
        if isinstance(before, int) and isinstance(after, int):
            first, last = (x[:, :1], x[:, -1:]) if axis == 1 else (x[:, :, :1], x[:, :, -1:])
            x = ops.concatenate([first] * before + [x] + [last] * after, axis=axis)
        else:
            size = ops.shape(x)[axis]
            x = ops.take(x, ops.clip(ops.arange(-before, size + after), 0, size - 1), axis=axis)
    return x


def fill_beyond(x, rows, cols, mode):
    """`x` (batch, height, width, channels) with everything below its first `rows` and right
    of its first `cols` (integers or int32 tensors; past the tensor's own sides, nothing is
    replaced) replaced as padding those would in `mode`, as far as one padding reaches: a
    convolution then sees the image `x[:, :rows, :cols]` exactly as it would alone. Gathers
    of clipped indices ("reflect": no edge repeat, as `pad`), a product with a mask
    ("zero")."""
    for axis, count in ((1, rows), (2, cols)):
        index = ops.arange(ops.shape(x)[axis], dtype="int32")
        inside = index < count
        if mode == "zero":
            shape = (1, -1, 1, 1) if axis == 1 else (1, 1, -1, 1)
            x = x * ops.reshape(ops.cast(inside, x.dtype), shape)
            continue
        beyond = 2 * (count - 1) - index if mode == "reflect" else count - 1 + 0 * index
        x = ops.take(x, ops.clip(ops.where(inside, index, beyond), 0, count - 1), axis=axis)
    return x


@keras.saving.register_keras_serializable(PACKAGE)
class Padding2D(keras.layers.Layer):
    """Pads height and width by `padding` pixels on every side, in `mode` (see `pad`)."""

    def __init__(self, padding=1, mode="reflect", **kwargs):
        # Pads in the dtype it is given: padding copies values, so padding before a cast
        # (the float32 output layer's) gives the same result with a smaller copy.
        super().__init__(autocast=False, **kwargs)
        self.padding, self.mode = padding, mode

    def call(self, x):
        p = self.padding
        return pad(_edged(x, self.mode), (p, p), (p, p), self.mode)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "mode": self.mode}


@keras.saving.register_keras_serializable(PACKAGE)
class NearestUpsampling2D(keras.layers.Layer):
    """Doubles height and width by repeating pixels, with two concatenations and two
    reshapes that keep the channel count static. (`UpSampling2D` repeats through a reshape
    whose channels TensorFlow cannot infer when height and width are unknown, which turns
    the next convolution into a TensorFlow op that TensorFlow Lite lacks as a builtin.)"""

    def call(self, x):
        height, width, channels = ops.shape(x)[1], ops.shape(x)[2], x.shape[-1]
        x = ops.reshape(ops.concatenate([x, x], axis=-1), (-1, height, 2 * width, channels))
        return ops.reshape(ops.concatenate([x, x], axis=2), (-1, 2 * height, 2 * width, channels))


# How the 3x3 convolution of an image upsampled 2x (nearest) and padded by 1 pixel is
# computed at the image's own resolution. Along one axis, padded row i of the upsampled image
# is row floor(i / 2) of the image padded by 1 (in "replicate" mode for reflect and replicate
# padding, whose outer rows are the image's edge rows either way; zeros for zero padding).
# So the two rows k and k + 1 of the padded image (image rows k - 1 and k) are all that
# output rows 2k - 1 and 2k see: row 2k - 1 through taps w0 + w1 and w2, row 2k through w0
# and w1 + w2. _WINDOW_TAPS[r, i, p] is the share of 3x3 tap p in tap i of output row r of
# the window (the same along columns).
_LOW_RESOLUTION_PADDING = {"reflect": "replicate", "replicate": "replicate", "zero": "zero"}
_WINDOW_TAPS = np.array([[[1, 1, 0], [0, 0, 1]], [[1, 0, 0], [0, 1, 1]]], "float32")


@keras.saving.register_keras_serializable(PACKAGE)
class ConvLayer(keras.layers.Layer):
    """Padding (reflection by default), convolution, then (optionally) instance norm and
    ReLU.

    With `upsample`, the 3x3 convolution is of the input upsampled 2x by nearest-neighbour
    repetition, computed without the upsampled image: every 2x2 window of the input padded
    at its own resolution gives a 2x2 block of the output (`_WINDOW_TAPS`), 16 multiplies
    per input pixel and weight pair instead of 36. Its weights are the 3x3 convolution's,
    as any network's trained before."""

    def __init__(self, filters, kernel_size, strides=1, normalize=True, relu=True,
                 num_styles=1, padding="reflect", upsample=False, **kwargs):
        # No cast of the input on entry: the padding is done in the dtype it comes in, the
        # convolution casts (see Padding2D); an upsampling kernel's taps are summed in float32.
        super().__init__(autocast=False, **kwargs)
        if upsample and (kernel_size, strides) != (3, 1):
            raise ValueError("an upsampling ConvLayer is a 3x3 convolution of stride 1")
        self.filters, self.kernel_size, self.strides = filters, kernel_size, strides
        self.normalize, self.relu, self.num_styles = normalize, relu, num_styles
        self.padding, self.upsample = padding, upsample
        policy = {"dtype": self.dtype_policy}  # its parts compute as it does
        self.pad = Padding2D(kernel_size // 2,
                             _LOW_RESOLUTION_PADDING[padding] if upsample else padding, **policy)
        self.conv = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="valid",
                                        **policy)
        self.norm = InstanceNormalization(num_styles=num_styles, **policy) if normalize else None

    def build(self, input_shape):
        # Only the channel count shapes the weights: height and width may stay unknown.
        self.conv.build(input_shape)
        if self.norm is not None:
            self.norm.build(_with_channels(input_shape, self.filters))

    def call(self, x, style_weights=None):
        x = self.pad(x)
        narrow = _KERNELS.get().get("narrow_conv")
        if self.upsample:
            x = self._upsampling_conv(x)
        elif narrow is not None and self.filters <= NARROW and self.strides == 1:
            dtype = self.conv.compute_dtype
            x = narrow(x, ops.cast(self.conv.kernel, dtype), ops.cast(self.conv.bias, dtype))
        else:
            x = self.conv(x)
        if self.norm is not None:
            x = _styled(self.norm, x, style_weights)
        return ops.relu(x) if self.relu else x

    def _upsampling_conv(self, x):
        """One 2x2 convolution of `x` (the padded input) whose output channels are the 2x2
        output block of each window, rearranged into space (depth to space), less the
        outer rows and columns the windows at the edges give (rows -1 and 2 * height)."""
        x = ops.cast(x, self.compute_dtype)
        # kernel[i, j, :, (r, s, :)]: tap (i, j) of block pixel (r, s). This layer does not
        # autocast: the taps are summed from the float32 weights, then rounded once.
        kernel = ops.einsum("rip,sjq,pqcd->ijcrsd", _WINDOW_TAPS, _WINDOW_TAPS,
                            ops.cast(self.conv.kernel, "float32"))
        channels = self.filters
        kernel = ops.reshape(kernel, (2, 2, kernel.shape[2], 4 * channels))
        bias = ops.tile(ops.cast(self.conv.bias, "float32"), [4])
        y = ops.conv(x, ops.cast(kernel, x.dtype)) + ops.cast(bias, x.dtype)
        rows, cols = 2 * ops.shape(y)[1], 2 * ops.shape(y)[2]
        # (rows of windows, window columns, r, (s, channels)) -> (rows of windows, r,
        # window columns, (s, channels)): 4-D, a transpose every runtime takes.
        y = ops.transpose(ops.reshape(y, (-1, cols // 2, 2, 2 * channels)), (0, 2, 1, 3))
        return ops.reshape(y, (-1, rows, cols, channels))[:, 1:-1, 1:-1]

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "normalize": self.normalize, "relu": self.relu, "num_styles": self.num_styles,
                "padding": self.padding, "upsample": self.upsample}


@keras.saving.register_keras_serializable(PACKAGE)
class ResidualBlock(keras.layers.Layer):
    """Two 3x3 convolutions with an identity shortcut (He et al. 2016)."""

    def __init__(self, filters=128, num_styles=1, padding="reflect", **kwargs):
        super().__init__(**kwargs)
        self.filters, self.num_styles, self.padding = filters, num_styles, padding
        self.conv1 = ConvLayer(filters, 3, num_styles=num_styles, padding=padding)
        self.conv2 = ConvLayer(filters, 3, relu=False, num_styles=num_styles, padding=padding)

    def build(self, input_shape):
        self.conv1.build(input_shape)
        self.conv2.build(_with_channels(input_shape, self.filters))

    def call(self, x, style_weights=None):
        y = _styled(self.conv1, x, style_weights)
        return x + _styled(self.conv2, y, style_weights)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "num_styles": self.num_styles,
                "padding": self.padding}


@keras.saving.register_keras_serializable(PACKAGE)
class UpsampleConvLayer(keras.layers.Layer):
    """Doubles height and width.

    `nearest`: nearest-neighbour resize then a 3x3 convolution, which avoids the
    checkerboard artifacts of transposed convolutions (Odena et al. 2016); computed at the
    input's resolution (ConvLayer's `upsample`).
    `transpose`: the paper's fractionally-strided convolution.
    """

    def __init__(self, filters, mode="nearest", num_styles=1, padding="reflect", **kwargs):
        super().__init__(**kwargs)
        if mode not in UPSAMPLING_MODES:
            raise ValueError(f"upsampling must be one of {UPSAMPLING_MODES}, got {mode!r}")
        self.filters, self.mode, self.num_styles, self.padding = filters, mode, num_styles, padding
        if mode == "nearest":
            self.conv = ConvLayer(filters, 3, num_styles=num_styles, padding=padding,
                                  upsample=True)
        else:
            self.conv = keras.layers.Conv2DTranspose(filters, 3, strides=2, padding="same")
            self.norm = InstanceNormalization(num_styles=num_styles)

    def build(self, input_shape):
        self.conv.build(input_shape)
        if self.mode == "transpose":
            self.norm.build(_with_channels(input_shape, self.filters))

    def call(self, x, style_weights=None):
        if self.mode == "nearest":
            return _styled(self.conv, x, style_weights)
        # The transposed convolution's "same" padding is zeros.
        return ops.relu(_styled(self.norm, self.conv(_edged(x, "zero")), style_weights))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "mode": self.mode,
                "num_styles": self.num_styles, "padding": self.padding}


@keras.saving.register_keras_serializable(PACKAGE)
class SeparableConvLayer(keras.layers.Layer):
    """The mobile network's convolution: a depthwise 3x3 then a pointwise 1x1 (about 8x
    fewer multiplies than a full 3x3 at these widths), zero "same" padding, instance norm
    and ReLU. Optionally upsamples by 2 (nearest) first. No bias: the norm removes it."""

    def __init__(self, filters, strides=1, upsample=False, relu=True, num_styles=1, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.strides, self.upsample, self.relu = filters, strides, upsample, relu
        self.num_styles = num_styles
        self.resize = NearestUpsampling2D() if upsample else None
        self.conv = keras.layers.SeparableConv2D(filters, 3, strides=strides, padding="same",
                                                 use_bias=False)
        self.norm = InstanceNormalization(num_styles=num_styles)

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.norm.build(_with_channels(input_shape, self.filters))

    def call(self, x, style_weights=None):
        if self.resize is not None:
            x = self.resize(x)
        x = _styled(self.norm, self.conv(_edged(x, "zero")), style_weights)
        return ops.relu(x) if self.relu else x

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides,
                "upsample": self.upsample, "relu": self.relu, "num_styles": self.num_styles}


@keras.saving.register_keras_serializable(PACKAGE)
class MobileResidualBlock(keras.layers.Layer):
    """Two separable convolutions with an identity shortcut."""

    def __init__(self, filters, num_styles=1, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.num_styles = filters, num_styles
        self.conv1 = SeparableConvLayer(filters, num_styles=num_styles)
        self.conv2 = SeparableConvLayer(filters, relu=False, num_styles=num_styles)

    def build(self, input_shape):
        self.conv1.build(input_shape)
        self.conv2.build(_with_channels(input_shape, self.filters))

    def call(self, x, style_weights=None):
        y = _styled(self.conv1, x, style_weights)
        return x + _styled(self.conv2, y, style_weights)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "num_styles": self.num_styles}


@keras.saving.register_keras_serializable(PACKAGE)
class TransformerNet(keras.Model):
    """Feed-forward style network: any image size in, the same size out.

    Height and width are padded up to a multiple of 4 (the two stride-2 stages) and the
    result cropped back, so odd sizes come out exactly as they went in (see `pad_input`).
    `padding`, one of PADDINGS, is how every convolution pads: by default "reflect" for the
    full network (as every saved network before the key existed) and "zero" for the mobile
    network, which has no other. With `num_styles` N > 1 every instance normalization is
    conditional, and a call takes `style_weights`.
    """

    def __init__(self, upsampling="nearest", num_residual_blocks=5, arch="full",
                 width_multiplier=1.0, num_styles=1, padding=None, **kwargs):
        super().__init__(**kwargs)
        if arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {ARCHITECTURES}, got {arch!r}")
        padding = padding or ("reflect" if arch == "full" else "zero")
        if padding not in (PADDINGS if arch == "full" else ("zero",)):
            raise ValueError(f"padding must be one of {PADDINGS} (the mobile network: zero), "
                             f"got {padding!r}")
        blocks_ok = isinstance(num_residual_blocks, int) and not isinstance(num_residual_blocks, bool)
        if not (blocks_ok and 0 <= num_residual_blocks <= MAX_RESIDUAL_BLOCKS):
            raise ValueError(f"num_residual_blocks must be an integer from 0 to "
                             f"{MAX_RESIDUAL_BLOCKS}, got {num_residual_blocks!r}")
        number = isinstance(width_multiplier, (int, float)) and not isinstance(width_multiplier, bool)
        if not (number and 0 < width_multiplier <= MAX_WIDTH_MULTIPLIER):
            raise ValueError(f"width_multiplier must be a number in (0, {MAX_WIDTH_MULTIPLIER:g}], "
                             f"got {width_multiplier!r}")
        styles_ok = isinstance(num_styles, int) and not isinstance(num_styles, bool)
        if not (styles_ok and 1 <= num_styles <= MAX_STYLES):
            raise ValueError(f"num_styles must be an integer from 1 to {MAX_STYLES}, "
                             f"got {num_styles!r}")
        self.upsampling, self.num_residual_blocks = upsampling, num_residual_blocks
        self.arch, self.width_multiplier, self.num_styles = arch, width_multiplier, num_styles
        self.padding = padding
        c1, c2, c3 = (max(4, round(c * width_multiplier)) for c in (32, 64, 128))
        styles = {"num_styles": num_styles}
        if arch == "full":
            styles["padding"] = padding
            self.down = [ConvLayer(c1, 9, **styles), ConvLayer(c2, 3, strides=2, **styles),
                         ConvLayer(c3, 3, strides=2, **styles)]
            self.residuals = [ResidualBlock(c3, **styles) for _ in range(num_residual_blocks)]
            self.up = [UpsampleConvLayer(c2, upsampling, **styles),
                       UpsampleConvLayer(c1, upsampling, **styles)]
            self.out = ConvLayer(3, 9, normalize=False, relu=False, padding=padding,
                                 dtype="float32")
        else:
            # A full 9x9 convolution on the 3 input channels is cheap and sees wide; the
            # output convolution is 3x3, where a 9x9 would cost as much as the rest.
            first = keras.layers.Conv2D(c1, 9, padding="same", use_bias=False)
            self.down = [first, InstanceNormalization(**styles), keras.layers.ReLU(),
                         SeparableConvLayer(c2, strides=2, **styles),
                         SeparableConvLayer(c3, strides=2, **styles)]
            self.residuals = [MobileResidualBlock(c3, **styles) for _ in range(num_residual_blocks)]
            self.up = [SeparableConvLayer(c2, upsample=True, **styles),
                       SeparableConvLayer(c1, upsample=True, **styles)]
            self.out = keras.layers.Conv2D(3, 3, padding="same", dtype="float32")

    def build(self, input_shape):
        """Creates every weight from the input's channel count, Keras' way: nothing needs
        calling the network on an image first."""
        shape = tuple(input_shape)
        for layer in self.down + self.residuals + self.up + [self.out]:
            layer.build(shape)
            shape = _with_channels(shape, getattr(layer, "filters", shape[-1]))

    def call(self, images, style_weights=None, return_logits=False):
        """RGB [0, 255] -> stylized RGB [0, 255]; with `return_logits`, (stylized, the output
        layer's values before the tanh), which training keeps in the tanh's working range.
        `style_weights`, for a network of N styles only: (N,) for the whole batch or
        (batch, N), weighting the styles' normalization parameters."""
        height, width = ops.shape(images)[1], ops.shape(images)[2]
        x = self.pad_input(images)
        # With a static shape that needs none, padding and cropping stay out of the graph
        # (a TensorFlow Lite build then has no pad op at all).
        unpadded = x is images
        for stage in self.stages():
            x = stage(x, style_weights)
        logits = x if unpadded else x[:, :height, :width, :]
        stylized = to_rgb(logits)
        return (stylized, logits) if return_logits else stylized

    def stages(self):
        """The network as the functions `(x, style_weights)` that `call` runs in turn: the
        downsampling layers (from RGB in [0, 255]), each residual block, then the upsampling
        and output layers (to the output layer's logits; `to_rgb` makes them an image).
        Staged tiling (tflite.py) runs them one at a time over a photo's tiles."""
        blocks = [functools.partial(_styled, block) for block in self.residuals]
        return [self._downsample, *blocks, self._upsample]

    def _downsample(self, x, style_weights=None):
        # Small activations keep float16 builds in range. Divided in float32, then rounded
        # as a bfloat16 division rounds: in a bfloat16 graph TensorFlow turns the division
        # into a multiply by 1 / 127.5 rounded to bfloat16 (0.4% off), which moved outputs
        # by up to 173 grey levels.
        x = ops.cast(ops.cast(x, "float32") / 127.5, x.dtype) - 1.0
        return self._run_layers(self.down, x, style_weights)

    def _upsample(self, x, style_weights=None):
        x = self._run_layers(self.up, x, style_weights)
        # The output layer computes in float32 whatever the policy: bfloat16 would round
        # the image to steps of about one grey level.
        return self.out(_edged(x, "zero") if isinstance(self.out, keras.layers.Conv2D) else x)

    @staticmethod
    def _run_layers(layers, x, style_weights):
        for layer in layers:
            if isinstance(layer, keras.layers.Conv2D):  # the mobile stem: zero "same" padding
                x = _edged(x, "zero")
            # The mobile stem's Keras Conv2D and ReLU hold no per-style parameters.
            x = _styled(layer, x, style_weights) if hasattr(layer, "num_styles") else layer(x)
        return x

    def pad_input(self, images):
        """`images` (any dtype) padded as the network pads them before its first layer, for
        it and for tiling.py: with reflection, sides under MIN_SIDE are first grown by
        repeating their edge (reflection needs more pixels than the 9x9 convolutions pad);
        then bottom and right are padded to a multiple of 4 in the network's padding. The
        same tensor when a static shape needs nothing."""
        x = images
        if self.padding == "reflect":
            grow = [max(MIN_SIDE - s, 0) if isinstance(s, int) else ops.maximum(MIN_SIDE - s, 0)
                    for s in ops.shape(x)[1:3]]
            x = pad(x, (0, grow[0]), (0, grow[1]), "replicate")
        height, width = ops.shape(x)[1], ops.shape(x)[2]
        pad_h, pad_w = (-height) % 4, (-width) % 4
        x = pad(x, (0, pad_h), (0, pad_w), self.padding)
        if x is images:
            return x
        # Restates the channel count, which TensorFlow loses through a pad by amounts it
        # cannot infer; without it the first convolution is no TFLite builtin.
        return ops.reshape(x, (-1, height + pad_h, width + pad_w, images.shape[-1]))

    def padded_size(self, height, width):
        """The height and width (int32 tensors) that `pad_input` pads a photo of `height` x
        `width` to."""
        if self.padding == "reflect":
            height, width = ops.maximum(height, MIN_SIDE), ops.maximum(width, MIN_SIDE)
        return (height + 3) // 4 * 4, (width + 3) // 4 * 4

    def fill_input(self, images, height, width):
        """`pad_input` for a photo in the top-left `height` x `width` pixels (int32 tensors)
        of a larger fixed-shape input: the input with `pad_input`'s padding where it would
        put it. (Beyond that is for `edge_hook` to fill, before each convolution.)"""
        if self.padding == "reflect":
            images = fill_beyond(images, height, width, "replicate")
            height, width = ops.maximum(height, MIN_SIDE), ops.maximum(width, MIN_SIDE)
        return fill_beyond(images, height, width, self.padding)

    def get_config(self):
        return {**super().get_config(), "upsampling": self.upsampling,
                "num_residual_blocks": self.num_residual_blocks, "arch": self.arch,
                "width_multiplier": self.width_multiplier, "num_styles": self.num_styles,
                "padding": self.padding}


def to_rgb(logits):
    """The output layer's logits -> RGB in [0, 255]: the paper's scaled tanh, which bounds
    the output."""
    return 127.5 * (ops.tanh(logits) + 1.0)


def with_padding(net, padding):
    """A copy of `net` that pads in `padding` (one of PADDINGS) with the same weights:
    padding holds none, so a trained style converts without retraining."""
    copy = TransformerNet.from_config({**net.get_config(), "padding": padding})
    copy.build(INPUT_SHAPE)
    copy.set_weights(net.get_weights())
    return copy


def _rebuilt(net, num_styles):
    """A built network of `net`'s architecture with `num_styles` styles, computing in the
    global dtype policy, as any network created here (a style added to a float32 network
    trains in bfloat16 within precision.policy)."""
    copy = TransformerNet.from_config({**net.get_config(), "dtype": None, "num_styles": num_styles})
    copy.build(INPUT_SHAPE)
    return copy


def is_normalization(variable):
    """Whether `variable` is an instance normalization's scale or offset: the parameters
    each style of a network owns."""
    return variable.path.endswith(("/scale", "/offset"))


def _style_rows(net, value):
    """A normalization parameter's value as (styles, channels) rows, of one style too."""
    return np.reshape(value, (net.num_styles, -1))


def repeat_style(net, num_styles):
    """A network of `num_styles` styles, each computing as `net`'s one: its convolutions,
    and its normalization parameters in every style's row. Where several styles start
    training from one trained style (train --styles with --init_from a single-style
    network), whose convolutions already paint."""
    if net.num_styles != 1:
        raise ValueError(f"repeat_style takes a network of one style, not {net.num_styles}")
    grown = _rebuilt(net, num_styles)
    grown.set_weights([np.reshape(np.tile(np.reshape(w, (1, -1)), (num_styles, 1)), v.shape)
                       if is_normalization(v) else w
                       for v, w in zip(grown.weights, net.get_weights())])
    return grown


def style_network(net, style_weights):
    """The single-style network of `net`'s convolutions whose normalization parameters are
    `style_weights` (N,) times `net`'s N styles' (computed in NumPy): one style of it
    (one-hot), a blend, or where a new style starts (their mean)."""
    weights = np.asarray(style_weights, np.float32)
    single = _rebuilt(net, num_styles=1)
    single.set_weights([weights @ _style_rows(net, w) if is_normalization(v) else w
                        for v, w in zip(net.weights, net.get_weights())])
    return single


def train_normalization_only(net):
    """Freezes every weight of `net` but its normalization parameters: a style learned on
    the convolutions of a trained network leaves its other styles as they were."""
    for variable in net.weights:
        variable.trainable = is_normalization(variable)


def add_style(net, style):
    """`net` grown by one style, after its own: every weight of `net` as it was (its
    styles compute exactly as before), the new style's normalization parameters those of
    `style`, a single-style network with `net`'s convolutions (a ValueError otherwise:
    the new style was learned on them)."""
    if any(not is_normalization(v) and not np.array_equal(w, new) for v, w, new in zip(
            net.weights, net.get_weights(), style.get_weights())):
        raise ValueError("the new style's network has other convolutions than the network "
                         "it is added to")
    grown = _rebuilt(net, num_styles=net.num_styles + 1)
    grown.set_weights([np.concatenate([_style_rows(net, w), np.reshape(new, (1, -1))])
                       if is_normalization(v) else w
                       for v, w, new in zip(net.weights, net.get_weights(), style.get_weights())])
    return grown


def select_styles(net, indices):
    """A network of `net`'s styles `indices`, in that order: `net`'s convolutions and those
    styles' normalization rows, so each computes exactly as in `net` (a network shipped
    with only the styles that pass the quality bar, no retraining). One index gives a
    single-style network, as style_network of that style does. A ValueError for none, a
    repeated one or one out of range."""
    indices = [operator.index(i) for i in indices]
    if not indices:
        raise ValueError("select_styles needs at least one style index")
    if len(set(indices)) != len(indices):
        raise ValueError(f"style indices repeat: {indices}")
    if not all(0 <= i < net.num_styles for i in indices):
        raise ValueError(f"style indices {indices}: a network of {net.num_styles} styles has "
                         f"indices 0 to {net.num_styles - 1}")
    kept = _rebuilt(net, num_styles=len(indices))
    kept.set_weights([np.reshape(_style_rows(net, w)[indices], v.shape) if is_normalization(v)
                      else w for v, w in zip(kept.weights, net.get_weights())])
    return kept
