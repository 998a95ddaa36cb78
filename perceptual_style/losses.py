"""Perceptual losses (Johnson et al. 2016, section 3), in `keras.ops`.

Feature maps are (batch, height, width, channels). Every loss returns a scalar averaged
over the batch, so loss weights do not depend on the batch size, or with `per_image` one
value per image (batch,). `PerceptualLoss` is their weighted total for one style: what
training minimizes over the network's weights and optimize.py over an image's pixels.
`MultiStylePerceptualLoss` is that of a network of several styles (Dumoulin et al. 2017):
each image against its own style's loss.
"""

import numpy as np
from keras import ops

LOSS_NAMES = ("content", "style", "tv", "saturation", "total")


def _mean(values, per_image):
    """The mean over the batch, or with `per_image` over each image's own values."""
    if per_image:
        return ops.mean(values, axis=tuple(range(1, len(values.shape))))
    return ops.mean(values)


def gram_matrix(features):
    """(B, H, W, C) -> (B, C, C) channel correlations, divided by H*W*C so the value does
    not depend on the image size."""
    shape = ops.shape(features)
    height, width, channels = shape[1], shape[2], features.shape[-1]
    flat = ops.reshape(features, (-1, height * width, channels))
    gram = ops.matmul(ops.transpose(flat, (0, 2, 1)), flat)
    return gram / ops.cast(height * width * channels, gram.dtype)


def content_loss(features, target_features, per_image=False):
    """Feature reconstruction loss: mean squared distance of two feature maps."""
    return _mean(ops.square(features - target_features), per_image)


def style_loss(features, target_grams, layer_weights, per_image=False, grams=None):
    """Weighted sum over layers of the squared Frobenius distance between Gram matrices.

    `features`: {layer: (B, H, W, C)}; `target_grams`: {layer: (1 or B, C, C)};
    `layer_weights`: {layer: weight}; `grams`: the features' Gram matrices {layer: (B, C,
    C)} where already computed (the styles of one network judge the same images).
    """
    total = 0.0
    for layer, weight in layer_weights.items():
        gram = gram_matrix(features[layer]) if grams is None else grams[layer]
        distance = ops.sum(ops.square(gram - target_grams[layer]), axis=(1, 2))
        total = total + weight * (distance if per_image else ops.mean(distance))
    return total


def total_variation_loss(images, per_image=False):
    """Mean squared difference between vertically and horizontally adjacent pixels: a
    smoothness prior against high-frequency noise."""
    dy = images[:, 1:, :, :] - images[:, :-1, :, :]
    dx = images[:, :, 1:, :] - images[:, :, :-1, :]
    return _mean(ops.square(dy), per_image) + _mean(ops.square(dx), per_image)


# tanh(2) = 0.964: beyond it an output channel is within 5 grey levels of 0 or 255.
SATURATION_LOGIT = 2.0


def saturation_loss(logits, per_image=False):
    """Mean squared excess of the output layer's pre-tanh values beyond +-SATURATION_LOGIT.

    Trained nets grow isolated spikes there (logits of 5 to 200 where the rest stay within
    +-1.5): blots of pure white. The scaled tanh is flat at such values, so the image losses
    cannot pull them back; this term acts before the tanh, where the gradient does not vanish.
    """
    return _mean(ops.square(ops.relu(ops.abs(logits) - SATURATION_LOGIT)), per_image)


class PerceptualLoss:
    """The total loss of stylized images for one style image, with the style's weights.

    `loss_network` maps RGB [0, 255] images to {layer: features} (vgg.build_loss_network);
    the style's Gram matrices are computed once here, as constants. With no style layers
    the style image may be None: a content-only loss, that of a network that reproduces
    the photo (the identity style, saved_nets.IDENTITY).
    """

    def __init__(self, loss_network, style_image, content_layer="block4_conv2",
                 style_layers=None, content_weight=1.0, style_weight=1.0, tv_weight=0.0,
                 saturation_weight=0.0):
        self.loss_network = loss_network
        self.content_layer = content_layer
        self.style_layers = dict(style_layers or {})
        self.content_weight, self.style_weight, self.tv_weight, self.saturation_weight = (
            float(content_weight), float(style_weight), float(tv_weight), float(saturation_weight))
        if style_image is None and self.style_layers:
            raise ValueError("style layers need a style image")
        features = (self.features(np.asarray(style_image, np.float32)[None])
                    if self.style_layers else {})
        self.style_grams = {layer: np.asarray(ops.convert_to_numpy(gram_matrix(features[layer])))
                            for layer in self.style_layers}

    def features(self, images):
        """{layer: features} in float32, whatever precision the loss network computes in:
        Gram matrices sum over a whole feature map, too many terms for bfloat16."""
        return {k: ops.cast(v, "float32") for k, v in self.loss_network(images).items()}

    def content_target(self, content_images):
        """The content layer's features of the photos the stylized images must keep."""
        return ops.stop_gradient(self.features(content_images)[self.content_layer])

    def __call__(self, stylized, content_target, stylized_features=None, logits=None,
                 per_image=False):
        """{content, style, tv, saturation, total} of `stylized` (features computed unless
        given), batch means or with `per_image` each image's. Saturation needs the
        transformer's `logits`; pixels optimized directly have none, and their term is 0."""
        stylized = ops.cast(stylized, "float32")
        if stylized_features is None:
            stylized_features = self.features(stylized)
        losses = image_losses(stylized, stylized_features[self.content_layer], content_target,
                              logits, per_image)
        return self.weighted({**losses, "style": self.style(stylized_features, per_image)})

    def style(self, stylized_features, per_image=False, grams=None):
        """The style loss of images with `stylized_features` (and, where computed, their
        Gram matrices `grams`); 0 without style layers."""
        if not self.style_layers:
            batch = ops.shape(stylized_features[self.content_layer])[:1]
            return ops.zeros(batch if per_image else (), "float32")
        return style_loss(stylized_features, self.style_grams, self.style_layers, per_image,
                          grams)

    def weighted(self, losses):
        """`losses` {content, style, tv, saturation} with their weighted sum as `total`."""
        losses = {name: losses[name] for name in LOSS_NAMES[:-1]}
        return {**losses, "total": self.content_weight * losses["content"]
                + self.style_weight * losses["style"]
                + self.tv_weight * losses["tv"]
                + self.saturation_weight * losses["saturation"]}


def image_losses(stylized, content_features, content_target, logits=None, per_image=False):
    """{content, tv, saturation}: the terms that do not depend on the style (float32
    `stylized`, the content layer's features of it, and its target)."""
    zero = ops.zeros(ops.shape(stylized)[:1] if per_image else (), "float32")
    return {
        "content": content_loss(content_features, content_target, per_image),
        "tv": total_variation_loss(stylized, per_image),
        "saturation": (zero if logits is None
                       else saturation_loss(ops.cast(logits, "float32"), per_image)),
    }


class MultiStylePerceptualLoss:
    """The total loss of a network of several styles: each image against the style its
    row of one-hot `style_weights` (batch, N) selects, with that style's Gram matrices and
    weights, as the mean of the images' own losses. `losses`: one PerceptualLoss per style,
    sharing one loss network (computing every style's layers) and one content layer, so
    one pass of it serves the whole batch."""

    def __init__(self, losses):
        self.losses = list(losses)
        self.loss_network = self.losses[0].loss_network
        self.content_layer = self.losses[0].content_layer
        if any(loss.loss_network is not self.loss_network
               or loss.content_layer != self.content_layer for loss in self.losses):
            raise ValueError("the styles' losses must share one loss network and content layer")
        self.features = self.losses[0].features
        self.content_target = self.losses[0].content_target

    def __call__(self, stylized, content_target, stylized_features, logits, style_weights):
        # The terms every style shares, and the images' Gram matrices, are computed once.
        style_weights = ops.cast(style_weights, "float32")
        stylized = ops.cast(stylized, "float32")
        shared = image_losses(stylized, stylized_features[self.content_layer], content_target,
                              logits, per_image=True)
        grams = {layer: gram_matrix(stylized_features[layer])
                 for layer in dict.fromkeys(l for loss in self.losses for l in loss.style_layers)}
        per_style = [loss.weighted({**shared, "style": loss.style(stylized_features, True, grams)})
                     for loss in self.losses]
        return {name: ops.mean(sum(style_weights[:, i] * losses[name]
                                   for i, losses in enumerate(per_style)))
                for name in LOSS_NAMES}
