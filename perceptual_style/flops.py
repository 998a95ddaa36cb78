"""Multiply-accumulates of one TransformerNet pass, counted from its layers' shapes.

Only the convolutions are counted, as this network computes them: they are over 99% of the
arithmetic; instance normalization, ReLU and padding add a few operations per activation.
The nearest upsampling layers count the 2x2 convolution they compute at the input's
resolution (transformer_net.ConvLayer's `upsample`): 16 multiplies per input pixel and
weight pair, where a 3x3 convolution of the upsampled image (as the PyTorch peer computes
it) does 36. One multiply-accumulate is two floating-point operations. Pure Keras: no
backend needed.
"""

import keras

from perceptual_style.transformer_net import (ConvLayer, InstanceNormalization,
                                              MobileResidualBlock, ResidualBlock,
                                              SeparableConvLayer, UpsampleConvLayer)


def _conv(conv, height, width):
    """(MACs, output height, output width) of a Conv2D, SeparableConv2D or Conv2DTranspose."""
    if isinstance(conv, keras.layers.Conv2DTranspose):  # each input pixel scatters a kernel
        kernel_h, kernel_w, channels_out, channels_in = conv.kernel.shape
        return height * width * kernel_h * kernel_w * channels_in * channels_out, 2 * height, 2 * width
    stride = conv.strides[0]
    # Reflection padding of kernel // 2 then a valid convolution, or "same" padding:
    # ceil(size / stride) either way.
    out_h, out_w = -(-height // stride), -(-width // stride)
    if isinstance(conv, keras.layers.SeparableConv2D):
        kernel_h, kernel_w, channels_in, multiplier = conv.depthwise_kernel.shape
        per_pixel = (kernel_h * kernel_w * channels_in * multiplier
                     + channels_in * multiplier * conv.pointwise_kernel.shape[-1])
        return out_h * out_w * per_pixel, out_h, out_w
    kernel_h, kernel_w, channels_in, channels_out = conv.kernel.shape
    return out_h * out_w * kernel_h * kernel_w * channels_in * channels_out, out_h, out_w


def _layer(layer, height, width):
    if isinstance(layer, (InstanceNormalization, keras.layers.ReLU)):
        return 0, height, width
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.SeparableConv2D)):
        return _conv(layer, height, width)
    if isinstance(layer, ConvLayer):
        if layer.upsample:  # one 2x2 convolution over the padded input, 4 output pixels each
            _, _, channels_in, channels_out = layer.conv.kernel.shape
            macs = (height + 1) * (width + 1) * 2 * 2 * channels_in * 4 * channels_out
            return macs, 2 * height, 2 * width
        return _conv(layer.conv, height, width)
    if isinstance(layer, (ResidualBlock, MobileResidualBlock)):
        first, height, width = _layer(layer.conv1, height, width)
        second, height, width = _layer(layer.conv2, height, width)
        return first + second, height, width
    if isinstance(layer, SeparableConvLayer):
        scale = 2 if layer.upsample else 1
        return _conv(layer.conv, scale * height, scale * width)
    if isinstance(layer, UpsampleConvLayer):
        if layer.mode == "nearest":
            return _layer(layer.conv, height, width)
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
