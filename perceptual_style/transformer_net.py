"""The image transformation network of Johnson et al. 2016 (supplementary, table 1).

Downsample twice with strided convolutions, five residual blocks at 128 channels, upsample
twice back to full size, one 9x9 convolution to RGB. Instance normalization (Ulyanov et
al. 2016) follows every convolution but the last; every convolution reflection-pads its
input so borders carry no zero-padding artifacts. Pure Keras 3, so it runs on the
TensorFlow and JAX backends alike. Input and output are RGB in [0, 255].

`arch="mobile"` is a smaller network for phones: channels scaled by `width_multiplier`,
fewer residual blocks, depthwise separable 3x3 convolutions (Howard et al. 2017,
MobileNets) and zero padding, because TensorFlow Lite's GPU delegate has no MirrorPad
(reflection padding).
"""

import contextlib
import contextvars

import keras
from keras import ops

PACKAGE = "perceptual_style"
INPUT_SHAPE = (None, None, None, 3)
UPSAMPLING_MODES = ("nearest", "transpose")
ARCHITECTURES = ("full", "mobile")
MIN_SIDE = 5  # the smallest side the full network's reflection padding takes
# Bounds far beyond any network here (the paper has 5 blocks at 1.0), so that a crafted
# config cannot ask for a network that takes minutes and gigabytes to build.
MAX_RESIDUAL_BLOCKS = 32
MAX_WIDTH_MULTIPLIER = 4.0
_STATISTICS_HOOK = contextvars.ContextVar("statistics_hook", default=None)


def _with_channels(shape, channels):
    return (*tuple(shape)[:-1], channels)


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


@keras.saving.register_keras_serializable(PACKAGE)
class InstanceNormalization(keras.layers.Layer):
    """Normalizes each image's channels by their own mean and variance over space,
    then applies a learned per-channel scale and offset."""

    def __init__(self, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        channels = input_shape[-1]
        self.scale = self.add_weight(shape=(channels,), initializer="ones", name="scale")
        self.offset = self.add_weight(shape=(channels,), initializer="zeros", name="offset")

    def call(self, x):
        hook = _STATISTICS_HOOK.get()
        if hook is None:
            mean, variance = ops.moments(x, axes=(1, 2), keepdims=True)
        else:  # float32 statistics, whatever precision the network computes in
            mean, variance = (ops.cast(v, x.dtype) for v in hook(self, x))
        # Folded into one multiply-add over the activations: fewer full-size temporaries.
        multiplier = ops.rsqrt(variance + self.epsilon) * self.scale
        return x * multiplier + (self.offset - mean * multiplier)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(PACKAGE)
class ReflectionPadding2D(keras.layers.Layer):
    """Pads height and width by mirroring the image at its border."""

    def __init__(self, padding=1, **kwargs):
        super().__init__(**kwargs)
        self.padding = padding

    def call(self, x):
        p = self.padding
        return ops.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


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


@keras.saving.register_keras_serializable(PACKAGE)
class ConvLayer(keras.layers.Layer):
    """Reflection padding, convolution, then (optionally) instance norm and ReLU."""

    def __init__(self, filters, kernel_size, strides=1, normalize=True, relu=True, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.strides = filters, kernel_size, strides
        self.normalize, self.relu = normalize, relu
        policy = {"dtype": self.dtype_policy}  # its parts compute as it does
        self.pad = ReflectionPadding2D(kernel_size // 2, **policy)
        self.conv = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="valid",
                                        **policy)
        self.norm = InstanceNormalization(**policy) if normalize else None

    def build(self, input_shape):
        # Only the channel count shapes the weights: height and width may stay unknown.
        self.conv.build(input_shape)
        if self.norm is not None:
            self.norm.build(_with_channels(input_shape, self.filters))

    def call(self, x):
        x = self.conv(self.pad(x))
        if self.norm is not None:
            x = self.norm(x)
        return ops.relu(x) if self.relu else x

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "normalize": self.normalize, "relu": self.relu}


@keras.saving.register_keras_serializable(PACKAGE)
class ResidualBlock(keras.layers.Layer):
    """Two 3x3 convolutions with an identity shortcut (He et al. 2016)."""

    def __init__(self, filters=128, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.conv1 = ConvLayer(filters, 3)
        self.conv2 = ConvLayer(filters, 3, relu=False)

    def build(self, input_shape):
        self.conv1.build(input_shape)
        self.conv2.build(_with_channels(input_shape, self.filters))

    def call(self, x):
        return x + self.conv2(self.conv1(x))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


@keras.saving.register_keras_serializable(PACKAGE)
class UpsampleConvLayer(keras.layers.Layer):
    """Doubles height and width.

    `nearest`: nearest-neighbour resize then a 3x3 convolution, which avoids the
    checkerboard artifacts of transposed convolutions (Odena et al. 2016).
    `transpose`: the paper's fractionally-strided convolution.
    """

    def __init__(self, filters, mode="nearest", **kwargs):
        super().__init__(**kwargs)
        if mode not in UPSAMPLING_MODES:
            raise ValueError(f"upsampling must be one of {UPSAMPLING_MODES}, got {mode!r}")
        self.filters, self.mode = filters, mode
        if mode == "nearest":
            self.upsample = NearestUpsampling2D()
            self.conv = ConvLayer(filters, 3)
        else:
            self.upsample = None
            self.conv = keras.layers.Conv2DTranspose(filters, 3, strides=2, padding="same")
            self.norm = InstanceNormalization()

    def build(self, input_shape):
        self.conv.build(input_shape)
        if self.mode == "transpose":
            self.norm.build(_with_channels(input_shape, self.filters))

    def call(self, x):
        if self.mode == "nearest":
            return self.conv(self.upsample(x))
        return ops.relu(self.norm(self.conv(x)))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "mode": self.mode}


@keras.saving.register_keras_serializable(PACKAGE)
class SeparableConvLayer(keras.layers.Layer):
    """The mobile network's convolution: a depthwise 3x3 then a pointwise 1x1 (about 8x
    fewer multiplies than a full 3x3 at these widths), zero "same" padding, instance norm
    and ReLU. Optionally upsamples by 2 (nearest) first. No bias: the norm removes it."""

    def __init__(self, filters, strides=1, upsample=False, relu=True, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.strides, self.upsample, self.relu = filters, strides, upsample, relu
        self.resize = NearestUpsampling2D() if upsample else None
        self.conv = keras.layers.SeparableConv2D(filters, 3, strides=strides, padding="same",
                                                 use_bias=False)
        self.norm = InstanceNormalization()

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.norm.build(_with_channels(input_shape, self.filters))

    def call(self, x):
        if self.resize is not None:
            x = self.resize(x)
        x = self.norm(self.conv(x))
        return ops.relu(x) if self.relu else x

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides,
                "upsample": self.upsample, "relu": self.relu}


@keras.saving.register_keras_serializable(PACKAGE)
class MobileResidualBlock(keras.layers.Layer):
    """Two separable convolutions with an identity shortcut."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.conv1 = SeparableConvLayer(filters)
        self.conv2 = SeparableConvLayer(filters, relu=False)

    def build(self, input_shape):
        self.conv1.build(input_shape)
        self.conv2.build(_with_channels(input_shape, self.filters))

    def call(self, x):
        return x + self.conv2(self.conv1(x))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


def _edge_pad(x, axis, size):
    """`x` with its last row (axis 1) or column (axis 2) repeated up to MIN_SIDE pixels.
    Reflection padding needs more pixels than it pads (4 for the 9x9 convolutions), so
    smaller images are grown first and cropped back. Nothing is added for a static size
    that needs none; an unknown size gets the (identity, for large images) gather."""
    if isinstance(size, int) and size >= MIN_SIDE:
        return x
    target = max(size, MIN_SIDE) if isinstance(size, int) else ops.maximum(size, MIN_SIDE)
    return ops.take(x, ops.minimum(ops.arange(target), size - 1), axis=axis)


@keras.saving.register_keras_serializable(PACKAGE)
class TransformerNet(keras.Model):
    """Feed-forward style network: any image size in, the same size out.

    Height and width are reflection-padded up to a multiple of 4 (the two stride-2
    stages) and the result cropped back, so odd sizes come out exactly as they went in;
    sides under MIN_SIDE pixels are first grown by repeating their edge.
    """

    def __init__(self, upsampling="nearest", num_residual_blocks=5, arch="full",
                 width_multiplier=1.0, **kwargs):
        super().__init__(**kwargs)
        if arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {ARCHITECTURES}, got {arch!r}")
        blocks_ok = isinstance(num_residual_blocks, int) and not isinstance(num_residual_blocks, bool)
        if not (blocks_ok and 0 <= num_residual_blocks <= MAX_RESIDUAL_BLOCKS):
            raise ValueError(f"num_residual_blocks must be an integer from 0 to "
                             f"{MAX_RESIDUAL_BLOCKS}, got {num_residual_blocks!r}")
        number = isinstance(width_multiplier, (int, float)) and not isinstance(width_multiplier, bool)
        if not (number and 0 < width_multiplier <= MAX_WIDTH_MULTIPLIER):
            raise ValueError(f"width_multiplier must be a number in (0, {MAX_WIDTH_MULTIPLIER:g}], "
                             f"got {width_multiplier!r}")
        self.upsampling, self.num_residual_blocks = upsampling, num_residual_blocks
        self.arch, self.width_multiplier = arch, width_multiplier
        c1, c2, c3 = (max(4, round(c * width_multiplier)) for c in (32, 64, 128))
        if arch == "full":
            self.down = [ConvLayer(c1, 9), ConvLayer(c2, 3, strides=2), ConvLayer(c3, 3, strides=2)]
            self.residuals = [ResidualBlock(c3) for _ in range(num_residual_blocks)]
            self.up = [UpsampleConvLayer(c2, upsampling), UpsampleConvLayer(c1, upsampling)]
            self.out = ConvLayer(3, 9, normalize=False, relu=False, dtype="float32")
        else:
            # A full 9x9 convolution on the 3 input channels is cheap and sees wide; the
            # output convolution is 3x3, where a 9x9 would cost as much as the rest.
            first = keras.layers.Conv2D(c1, 9, padding="same", use_bias=False)
            self.down = [first, InstanceNormalization(), keras.layers.ReLU(),
                         SeparableConvLayer(c2, strides=2), SeparableConvLayer(c3, strides=2)]
            self.residuals = [MobileResidualBlock(c3) for _ in range(num_residual_blocks)]
            self.up = [SeparableConvLayer(c2, upsample=True), SeparableConvLayer(c1, upsample=True)]
            self.out = keras.layers.Conv2D(3, 3, padding="same", dtype="float32")

    def build(self, input_shape):
        """Creates every weight from the input's channel count, Keras' way: nothing needs
        calling the network on an image first."""
        shape = tuple(input_shape)
        for layer in self.down + self.residuals + self.up + [self.out]:
            layer.build(shape)
            shape = _with_channels(shape, getattr(layer, "filters", shape[-1]))

    def call(self, images, return_logits=False):
        """RGB [0, 255] -> stylized RGB [0, 255]; with `return_logits`, (stylized, the output
        layer's values before the tanh), which training keeps in the tanh's working range."""
        height, width = ops.shape(images)[1], ops.shape(images)[2]
        x = images
        if self.arch == "full":
            x = _edge_pad(_edge_pad(x, 1, height), 2, width)
        grown_h, grown_w = ops.shape(x)[1], ops.shape(x)[2]
        pad_h, pad_w = (-grown_h) % 4, (-grown_w) % 4
        # With a static shape that needs none, padding and cropping stay out of the graph
        # (a TensorFlow Lite build then has no pad op at all).
        unpadded = x is images and all(isinstance(p, int) and p == 0 for p in (pad_h, pad_w))
        if not unpadded:
            x = ops.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)),
                        mode="reflect" if self.arch == "full" else "constant")
            # Restates the channel count, which TensorFlow loses through a pad by amounts
            # it cannot infer; without it the first convolution is no TFLite builtin.
            x = ops.reshape(x, (-1, grown_h + pad_h, grown_w + pad_w, images.shape[-1]))
        x = x / 127.5 - 1.0  # small activations keep float16 builds in range
        for layer in self.down + self.residuals + self.up:
            x = layer(x)
        # Scaled tanh, as in the paper, bounds the output to [0, 255]. The output layer
        # computes in float32 whatever the policy: bfloat16 would round the image to
        # steps of about one grey level.
        logits = self.out(x)
        if not unpadded:
            logits = logits[:, :height, :width, :]
        stylized = 127.5 * (ops.tanh(logits) + 1.0)
        return (stylized, logits) if return_logits else stylized

    def get_config(self):
        return {**super().get_config(), "upsampling": self.upsampling,
                "num_residual_blocks": self.num_residual_blocks, "arch": self.arch,
                "width_multiplier": self.width_multiplier}
