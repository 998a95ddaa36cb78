"""Our transformer network (perceptual_style/transformer_net.py, arch="full" with nearest
upsampling) written again in PyTorch: the peer that tools/benchmark.py times our inference
paths against. The same arithmetic on the same weights, so that only the runtime differs.
It imports neither TensorFlow nor Keras, so that the peer's process holds PyTorch alone.
"""

import os

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from perceptual_style import saved_nets

MIN_SIDE = 5  # transformer_net.MIN_SIDE, which cannot be imported without Keras


class ConvLayer(nn.Module):
    """Reflection padding, convolution, then (optionally) instance norm and ReLU."""

    def __init__(self, channels_in, channels_out, kernel_size, stride=1, normalize=True,
                 relu=True):
        super().__init__()
        self.padding, self.relu = kernel_size // 2, relu
        self.conv = nn.Conv2d(channels_in, channels_out, kernel_size, stride)
        # As transformer_net.InstanceNormalization: statistics of each image alone (biased
        # variance), epsilon 1e-5, a learned scale and offset.
        self.norm = nn.InstanceNorm2d(channels_out, eps=1e-5, affine=True) if normalize else None

    def forward(self, x):
        p = self.padding
        x = self.conv(functional.pad(x, (p, p, p, p), mode="reflect"))
        if self.norm is not None:
            x = self.norm(x)
        return functional.relu(x) if self.relu else x


class ResidualBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3)
        self.conv2 = ConvLayer(channels, channels, 3, relu=False)

    def forward(self, x):
        return x + self.conv2(self.conv1(x))


class TransformerNet(nn.Module):
    """Its parameters come in the order of the Keras network's weights."""

    def __init__(self, channels=(32, 64, 128), num_residual_blocks=5):
        super().__init__()
        c1, c2, c3 = channels
        self.layers = nn.Sequential(
            ConvLayer(3, c1, 9), ConvLayer(c1, c2, 3, stride=2), ConvLayer(c2, c3, 3, stride=2),
            *(ResidualBlock(c3) for _ in range(num_residual_blocks)),
            nn.Upsample(scale_factor=2), ConvLayer(c3, c2, 3),
            nn.Upsample(scale_factor=2), ConvLayer(c2, c1, 3),
            ConvLayer(c1, 3, 9, normalize=False, relu=False))

    def forward(self, images):
        """RGB [0, 255] images (batch, 3, height, width) -> stylized, the same shape."""
        height, width = images.shape[2:]
        x = images
        # Sides under MIN_SIDE repeat their last row or column: reflection padding needs
        # more pixels than it pads.
        if height < MIN_SIDE:
            x = x[:, :, torch.arange(MIN_SIDE).clamp(max=height - 1)]
        if width < MIN_SIDE:
            x = x[:, :, :, torch.arange(MIN_SIDE).clamp(max=width - 1)]
        # Reflected up to a multiple of 4 (the two stride-2 stages), cropped back after.
        x = functional.pad(x, (0, -x.shape[3] % 4, 0, -x.shape[2] % 4), mode="reflect")
        logits = self.layers(x / 127.5 - 1.0)[:, :, :height, :width]
        return 127.5 * (torch.tanh(logits) + 1.0)


def from_keras(config, weights):
    """The float32 network of a Keras TransformerNet's get_config() and get_weights(), in
    eval mode. Keras kernels are (height, width, in, out), PyTorch's (out, in, height, width)."""
    padding = config.get("padding") or "reflect"  # saved before the key existed: reflect
    if config["arch"] != "full" or config["upsampling"] != "nearest" or padding != "reflect":
        raise ValueError(f"the PyTorch peer is the full network with nearest upsampling and "
                         f"reflection padding, got arch={config['arch']!r}, upsampling="
                         f"{config['upsampling']!r}, padding={padding!r}")
    values = [np.asarray(w, np.float32) for w in weights]
    values = [w.transpose(3, 2, 0, 1) if w.ndim == 4 else w for w in values]
    # The widths as Keras rounded them from width_multiplier: the first three convolutions'.
    channels = [w.shape[0] for w in values if w.ndim == 4][:3]
    net = TransformerNet(channels, config["num_residual_blocks"])
    parameters = list(net.parameters())
    if [tuple(p.shape) for p in parameters] != [w.shape for w in values]:
        raise ValueError("the weights do not match the architecture in the config")
    with torch.no_grad():
        for parameter, value in zip(parameters, values):
            parameter.copy_(torch.from_numpy(value))
    return net.eval()


def load(style):
    """The network of a saved style's folder (see perceptual_style/saved_nets.py)."""
    path = os.path.join(saved_nets.resolve(style), saved_nets.WEIGHTS_FILE)
    return from_keras(*saved_nets.read_weights(path))
