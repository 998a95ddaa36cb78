"""Perceptual losses (Johnson et al. 2016, section 3), in `keras.ops`.

Feature maps are (batch, height, width, channels). Every loss returns a scalar averaged
over the batch, so loss weights do not depend on the batch size.
"""

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
