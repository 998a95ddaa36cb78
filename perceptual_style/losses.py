"""Perceptual losses (Johnson et al. 2016, section 3), in `keras.ops`.

Feature maps are (batch, height, width, channels). Every loss returns a scalar averaged
over the batch, so loss weights do not depend on the batch size. `PerceptualLoss` is their
weighted total for one style: what training minimizes over the network's weights and
optimize.py over an image's pixels.
"""

import numpy as np
from keras import ops


def gram_matrix(features):
    """(B, H, W, C) -> (B, C, C) channel correlations, divided by H*W*C so the value does
    not depend on the image size."""
    shape = ops.shape(features)
    height, width, channels = shape[1], shape[2], features.shape[-1]
    flat = ops.reshape(features, (-1, height * width, channels))
    gram = ops.matmul(ops.transpose(flat, (0, 2, 1)), flat)
    return gram / ops.cast(height * width * channels, gram.dtype)


def content_loss(features, target_features):
    """Feature reconstruction loss: mean squared distance of two feature maps."""
    return ops.mean(ops.square(features - target_features))


def style_loss(features, target_grams, layer_weights):
    """Weighted sum over layers of the squared Frobenius distance between Gram matrices.

    `features`: {layer: (B, H, W, C)}; `target_grams`: {layer: (1 or B, C, C)};
    `layer_weights`: {layer: weight}.
    """
    total = 0.0
    for layer, weight in layer_weights.items():
        difference = gram_matrix(features[layer]) - target_grams[layer]
        total = total + weight * ops.mean(ops.sum(ops.square(difference), axis=(1, 2)))
    return total


def total_variation_loss(images):
    """Mean squared difference between vertically and horizontally adjacent pixels: a
    smoothness prior against high-frequency noise."""
    dy = images[:, 1:, :, :] - images[:, :-1, :, :]
    dx = images[:, :, 1:, :] - images[:, :, :-1, :]
    return ops.mean(ops.square(dy)) + ops.mean(ops.square(dx))


# tanh(2) = 0.964: beyond it an output channel is within 5 grey levels of 0 or 255.
SATURATION_LOGIT = 2.0


def saturation_loss(logits):
    """Mean squared excess of the output layer's pre-tanh values beyond +-SATURATION_LOGIT.

    Trained nets grow isolated spikes there (logits of 5 to 200 where the rest stay within
    +-1.5): blots of pure white. The scaled tanh is flat at such values, so the image losses
    cannot pull them back; this term acts before the tanh, where the gradient does not vanish.
    """
    return ops.mean(ops.square(ops.relu(ops.abs(logits) - SATURATION_LOGIT)))


class PerceptualLoss:
    """The total loss of stylized images for one style image, with the style's weights.

    `loss_network` maps RGB [0, 255] images to {layer: features} (vgg.build_loss_network);
    the style's Gram matrices are computed once here, as constants.
    """

    def __init__(self, loss_network, style_image, content_layer="block4_conv2",
                 style_layers=None, content_weight=1.0, style_weight=1.0, tv_weight=0.0,
                 saturation_weight=0.0):
        self.loss_network = loss_network
        self.content_layer = content_layer
        self.style_layers = dict(style_layers or {})
        self.content_weight, self.style_weight, self.tv_weight, self.saturation_weight = (
            float(content_weight), float(style_weight), float(tv_weight), float(saturation_weight))
        features = self.features(np.asarray(style_image, np.float32)[None])
        self.style_grams = {layer: np.asarray(ops.convert_to_numpy(gram_matrix(features[layer])))
                            for layer in self.style_layers}

    def features(self, images):
        """{layer: features} in float32, whatever precision the loss network computes in:
        Gram matrices sum over a whole feature map, too many terms for bfloat16."""
        return {k: ops.cast(v, "float32") for k, v in self.loss_network(images).items()}

    def content_target(self, content_images):
        """The content layer's features of the photos the stylized images must keep."""
        return ops.stop_gradient(self.features(content_images)[self.content_layer])

    def __call__(self, stylized, content_target, stylized_features=None, logits=None):
        """{content, style, tv, saturation, total} of `stylized` (features computed unless
        given). Saturation needs the transformer's `logits`; pixels optimized directly have
        none, and their term is 0."""
        stylized = ops.cast(stylized, "float32")
        if stylized_features is None:
            stylized_features = self.features(stylized)
        losses = {
            "content": content_loss(stylized_features[self.content_layer], content_target),
            "style": style_loss(stylized_features, self.style_grams, self.style_layers),
            "tv": total_variation_loss(stylized),
            "saturation": (ops.zeros((), "float32") if logits is None
                           else saturation_loss(ops.cast(logits, "float32"))),
        }
        losses["total"] = (self.content_weight * losses["content"]
                           + self.style_weight * losses["style"]
                           + self.tv_weight * losses["tv"]
                           + self.saturation_weight * losses["saturation"])
        return losses
