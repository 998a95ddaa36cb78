"""Multiply-accumulates of one TransformerNet pass, counted from its layers' shapes.

Only the convolutions are counted: they are over 99% of the arithmetic; instance
normalization, ReLU, padding and resizing add a few operations per activation. One
multiply-accumulate is two floating-point operations. Pure Keras: no backend needed.
"""

import keras

from perceptual_style.transformer_net import ConvLayer, ResidualBlock, UpsampleConvLayer


def _conv(conv, height, width, upsample=False):
    """(MACs, output height, output width) of a Conv2D or Conv2DTranspose layer."""
    kernel_h, kernel_w, channels_in, channels_out = conv.kernel.shape
    if isinstance(conv, keras.layers.Conv2DTranspose):  # each input pixel scatters a kernel
        return height * width * kernel_h * kernel_w * channels_in * channels_out, 2 * height, 2 * width
    stride = conv.strides[0]
    # Reflection padding of kernel // 2 then a valid convolution: ceil(size / stride).
    out_h, out_w = -(-height // stride), -(-width // stride)
    return out_h * out_w * kernel_h * kernel_w * channels_in * channels_out, out_h, out_w


def _layer(layer, height, width):
    if isinstance(layer, ConvLayer):
        return _conv(layer.conv, height, width)
    if isinstance(layer, ResidualBlock):
        first, height, width = _conv(layer.conv1.conv, height, width)
        second, height, width = _conv(layer.conv2.conv, height, width)
        return first + second, height, width
    if isinstance(layer, UpsampleConvLayer):
        if layer.mode == "nearest":
            return _conv(layer.conv.conv, 2 * height, 2 * width)
        return _conv(layer.conv, height, width)
    raise TypeError(f"no multiply-accumulate count for {type(layer).__name__}")


def multiply_accumulates(net, height, width):
    """MACs of `net` (a built TransformerNet) on one height x width image, padded to a
    multiple of 4 as the network does."""
    height, width = height + (-height) % 4, width + (-width) % 4
    total = 0
    for layer in net.down + net.residuals + net.up + [net.out]:
        macs, height, width = _layer(layer, height, width)
        total += macs
    return total
