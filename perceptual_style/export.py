"""Exports trained styles as SavedModels in TensorFlow Serving's layout.

    python -m perceptual_style.export --style=snight      # or --style=snight,wave, or --all

writes `models/<style>/<version>/`, version one above the highest there. Each version is
written to a hidden temporary folder and renamed into place, so TensorFlow Serving, which
polls `models/<style>/` for integer folders, never loads a half-written model, and an
existing version is never replaced. TensorFlow only: SavedModel is TensorFlow's format.

Signatures (see serving/README.md for `saved_model_cli show --all`):

- `serving_default`: `image_bytes`, a batch of encoded JPEG or PNG strings (REST clients
  send `{"b64": ...}`), and `strength` in [0, 1], one per image or one for all (default
  1: fully stylized; 0 returns the photo) -> `image_bytes`, PNG strings.
- `stylize_jpeg`: the same, returning JPEG strings (`--jpeg_quality`).
- `stylize_tensor`: `images`, float32 [batch, height, width, 3] in [0, 255] -> `images`.

A network of several styles keeps these three, applying its first style, so that a request
written for a single-style model (over REST every instance names every input: a default
in the signature spares gRPC users only) gets a stylized image. Beside them:

- `stylize_mix`, `stylize_mix_jpeg`, `stylize_mix_tensor`: the same, with `style_weights`,
  float32 [n or 1, number of styles]: one weight per style in the order of the network's
  `styles` metadata, one row per image or one for all. Weights must be >= 0, not all zero,
  and are scaled to sum to 1 (as `stylize --mix` scales them): [0, 1, 0] applies the
  second style, [0.7, 0, 0.3] blends the first and third.
- `styles`: `index`, int32 [n] -> `style`, the names of those styles (how a client that
  knows the number of styles, the width of `style_weights`, learns their names).

Images are checked, decoded and stylized one at a time, in the graph. Bytes that are not a
JPEG or PNG image, and images over `--max_pixels` (read from the header, before any pixel
is decoded), fail with an InvalidArgument error naming the image and the problem (HTTP 400
from TensorFlow Serving). `stylize_tensor` checks height x width the same way and refuses
NaN or infinite values; it holds its whole batch in memory, which TensorFlow Serving's
`max_batch_size` bounds (serving/batching.config). Images of any size from 1 x 1 work.

TensorFlow and Keras are imported where they are used, so that `--help` loads neither.
"""

import functools
import itertools
import os
import sys
import time

from absl import flags, logging

from perceptual_style import cli, saved_nets
from perceptual_style.atomic import publish_directory

DEFAULT_MODELS_DIR = "models"
# 2048 x 2048. Memory is what it protects: a stylization's peak grows by about 0.85 GiB
# per megapixel (measured), about 3.5 GiB here; a big server may export with a higher
# --max_pixels (4096 x 4096 needs about 14 GiB per request).
MAX_PIXELS = 2048 * 2048
JPEG_QUALITY = 90
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
# Signature names, by output; a network of several styles has a twin of each that takes
# style_weights (MIX_SIGNATURES), and STYLES_SIGNATURE.
SIGNATURES = {"png": "serving_default", "jpeg": "stylize_jpeg", "tensor": "stylize_tensor"}
MIX_SIGNATURES = {"serving_default": "stylize_mix", "stylize_jpeg": "stylize_mix_jpeg",
                  "stylize_tensor": "stylize_mix_tensor"}
STYLES_SIGNATURE = "styles"
FLAGS = flags.FLAGS


def _header_size(data, index):
    """(height, width) read from a JPEG or PNG header, so that the pixel limit is
    checked before decoding (a small file can hold a huge image)."""
    import tensorflow as tf

    is_png = tf.logical_and(tf.strings.length(data) >= 24,
                            tf.equal(tf.strings.substr(data, 0, 8), PNG_SIGNATURE))
    is_jpeg = tf.equal(tf.strings.substr(data, 0, 3), JPEG_SIGNATURE)
    check = tf.debugging.Assert(tf.logical_or(is_png, is_jpeg), [tf.strings.format(
        "image_bytes[{}] is not a JPEG or PNG image", index)])
    with tf.control_dependencies([check]):
        # PNG: big-endian width then height at bytes 16-23 (the IHDR chunk).
        return tf.cond(
            is_png,
            lambda: tf.reverse(tf.io.decode_raw(tf.strings.substr(data, 16, 8), tf.int32,
                                                little_endian=False), [0]),
            lambda: tf.io.extract_jpeg_shape(data)[:2])


def _style_rows(net, style_weights, count):
    """`style_weights` [1 or count, net.num_styles], checked and each row scaled to sum to
    1, broadcast to [count, net.num_styles]."""
    import tensorflow as tf

    rows, width, n = tf.shape(style_weights)[0], tf.shape(style_weights)[1], net.num_styles
    checks = [
        tf.debugging.Assert(tf.logical_or(tf.equal(rows, 1), tf.equal(rows, count)), [
            tf.strings.format("style_weights has {} rows for {} images: give one, or one per image",
                              (rows, count))]),
        # The signature says n columns, but a server feeds tensors as they come.
        tf.debugging.Assert(tf.equal(width, n), [tf.strings.format(
            f"style_weights rows have {{}} values for the {n} styles of this model", width)]),
        tf.debugging.Assert(tf.reduce_all(tf.math.is_finite(style_weights) & (style_weights >= 0)),
                            [tf.strings.format("style_weights must be numbers >= 0, got {}",
                                               style_weights)]),
    ]
    with tf.control_dependencies(checks):
        totals = tf.reduce_sum(style_weights, axis=1, keepdims=True)
    nonzero = tf.debugging.Assert(tf.reduce_all(totals > 0), [tf.strings.format(
        "style_weights: the weights of a row are all zero, got {}", style_weights)])
    with tf.control_dependencies([nonzero]):
        return tf.broadcast_to(style_weights / totals, [count, n])


def _stylize_encoded(net, forward, image_bytes, strength, max_pixels, encode,
                     style_weights=None):
    """Decodes, stylizes with `forward` (`net`'s forward pass, see build_archive), blends by
    `strength` and re-encodes each image on its own, so images of different sizes share a
    batch and memory holds one image at a time. `style_weights`: for a network of several
    styles (see _style_rows)."""
    import tensorflow as tf

    count = tf.shape(image_bytes)[0]
    check = tf.debugging.Assert(
        tf.logical_or(tf.equal(tf.size(strength), 1), tf.equal(tf.size(strength), count)),
        [tf.strings.format("strength has {} values for {} images: give one, or one per image",
                           (tf.size(strength), count))])
    in_range = tf.debugging.Assert(
        tf.reduce_all((strength >= 0.0) & (strength <= 1.0)),
        [tf.strings.format("strength must be in [0, 1], got {}", strength)])
    with tf.control_dependencies([check, in_range]):
        strength = tf.broadcast_to(tf.reshape(strength, [-1]), [count])

    elements = (tf.range(count), image_bytes, strength)
    if style_weights is not None:
        elements += (_style_rows(net, style_weights, count),)

    def one(args):
        index, data, weight, *styles = args
        size = tf.cast(_header_size(data, index), tf.int64)
        limit = tf.debugging.Assert(size[0] * size[1] <= max_pixels, [tf.strings.format(
            f"image_bytes[{{}}] is {{}} x {{}} pixels, over the limit of {max_pixels} pixels "
            "of this model", (index, size[1], size[0]))])
        with tf.control_dependencies([limit]):
            photo = tf.io.decode_image(data, channels=3, expand_animations=False)
        photo = tf.cast(photo, tf.float32)[tf.newaxis]
        styled = forward(photo, styles[0] if styles else None)
        stylized = weight * styled + (1.0 - weight) * photo
        return encode(tf.cast(tf.round(tf.clip_by_value(stylized[0], 0.0, 255.0)), tf.uint8))

    return tf.map_fn(one, elements, fn_output_signature=tf.string, parallel_iterations=1)


def _stylize_tensor(net, forward, images, max_pixels, style_weights=None):
    """`images` [batch, height, width, 3] stylized as one batch by `forward`, after the
    checks of size and values; `style_weights` as in _stylize_encoded."""
    import tensorflow as tf

    shape = tf.cast(tf.shape(images), tf.int64)
    limit = tf.debugging.Assert(shape[1] * shape[2] <= max_pixels, [tf.strings.format(
        f"images are {{}} x {{}} pixels, over the limit of {max_pixels} pixels of this model",
        (shape[2], shape[1]))])
    finite = tf.debugging.Assert(tf.reduce_all(tf.math.is_finite(images)), [
        "images hold NaN or infinite values: give RGB values in [0, 255]"])
    with tf.control_dependencies([limit, finite]):
        if style_weights is not None:
            style_weights = _style_rows(net, style_weights, tf.shape(images)[0])
        # An empty batch comes back empty (reflection padding refuses empty tensors).
        return tf.cond(shape[0] > 0, lambda: forward(images, style_weights), lambda: images)


def build_archive(net, max_pixels=MAX_PIXELS, jpeg_quality=JPEG_QUALITY, styles=None):
    """A `keras.export.ExportArchive` with the signatures (see the module's docstring);
    `styles`, the names of a network's several styles in order, adds the `_mix` ones and
    `styles`. Every endpoint calls one graph of the network with its weights as constants
    (frozen.frozen_function), a function that the SavedModel stores once: read from
    variables, a float32 convolution of one image takes oneDNN's im2col kernel on CPUs
    without AVX-512, about 2x slower (README, Serving)."""
    import keras
    import tensorflow as tf

    from perceptual_style.frozen import frozen_function

    archive = keras.export.ExportArchive()
    several = net.num_styles > 1
    if several != (styles is not None) or (several and len(styles) != net.num_styles):
        raise ValueError(f"a network of {net.num_styles} styles is exported with the names of "
                         f"its styles, got {styles!r}")
    forward = frozen_function(net)
    image_bytes = tf.TensorSpec([None], tf.string, name="image_bytes")
    strength = tf.TensorSpec([None], tf.float32, name="strength")
    images = tf.TensorSpec([None, None, None, 3], tf.float32, name="images")
    style_weights = tf.TensorSpec([None, net.num_styles], tf.float32, name="style_weights")
    encoders = {SIGNATURES["png"]: tf.io.encode_png,
                SIGNATURES["jpeg"]: functools.partial(tf.io.encode_jpeg, quality=jpeg_quality)}
    # What the signatures without style_weights apply: the first style.
    first = tf.one_hot([0], net.num_styles) if several else None

    # The Python defaults become the SignatureDef's defaults: TensorFlow Serving fills in
    # strength=[1.0] when a request leaves it out.
    def encoded(encode):
        def endpoint(image_bytes, strength=tf.constant([1.0])):
            return {"image_bytes": _stylize_encoded(net, forward, image_bytes, strength,
                                                    max_pixels, encode, first)}
        return endpoint

    def encoded_mix(encode):
        def endpoint(image_bytes, style_weights, strength=tf.constant([1.0])):
            return {"image_bytes": _stylize_encoded(net, forward, image_bytes, strength,
                                                    max_pixels, encode, style_weights)}
        return endpoint

    for name, encode in encoders.items():
        archive.add_endpoint(name, encoded(encode), input_signature=[image_bytes, strength])
    archive.add_endpoint(SIGNATURES["tensor"], lambda images: {
        "images": _stylize_tensor(net, forward, images, max_pixels, first)},
        input_signature=[images])
    if several:
        for name, encode in encoders.items():
            archive.add_endpoint(MIX_SIGNATURES[name], encoded_mix(encode),
                                 input_signature=[image_bytes, style_weights, strength])
        archive.add_endpoint(MIX_SIGNATURES[SIGNATURES["tensor"]], lambda images, style_weights: {
            "images": _stylize_tensor(net, forward, images, max_pixels, style_weights)},
            input_signature=[images, style_weights])
        archive.add_endpoint(STYLES_SIGNATURE, lambda index: {"style": _style_names(styles, index)},
                             input_signature=[tf.TensorSpec([None], tf.int32, name="index")])
    return archive


def _style_names(styles, index):
    """The names of the styles at `index`; an error names the valid range."""
    import tensorflow as tf

    check = tf.debugging.Assert(tf.reduce_all((index >= 0) & (index < len(styles))), [
        tf.strings.format(f"style index {{}} out of range: this model has {len(styles)} styles, "
                          f"0 to {len(styles) - 1}", index)])
    with tf.control_dependencies([check]):
        return tf.gather(tf.constant(styles), index)


def versions(style_dir):
    """The integer version folders TensorFlow Serving would see in `style_dir`."""
    if not os.path.isdir(style_dir):
        return []
    return sorted(int(name) for name in os.listdir(style_dir)
                  if name.isdigit() and os.path.isdir(os.path.join(style_dir, name)))


def export_style(net, style_dir, version=None, max_pixels=MAX_PIXELS, jpeg_quality=JPEG_QUALITY,
                 styles=None):
    """Writes `net` as a new version in `style_dir` and returns (version, path).
    Without `version`, the next free one is taken (and the one after that if a
    concurrent export takes it first); a given `version` must not exist yet. `styles`:
    the names of a network's several styles, in order."""
    taken = cli.CommandError(f"{os.path.join(style_dir, str(version))} exists: a served version "
                             "is never overwritten (leave out --version for the next one)")
    if version is not None and os.path.lexists(os.path.join(style_dir, str(version))):
        raise taken  # before the work of building; publish_directory checks again
    archive = build_archive(net, max_pixels, jpeg_quality, styles)
    candidates = ([str(version)] if version is not None else
                  (str(v) for v in itertools.count(max(versions(style_dir), default=0) + 1)))
    try:
        path = publish_directory(style_dir, lambda tmp: archive.write_out(tmp, verbose=False),
                                 candidates)
    except FileExistsError:
        raise taken from None
    return int(os.path.basename(path)), path


def directory_size(path):
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)


def define_flags():
    """The CLI's flags, defined only when it runs, so importing this module (as tests
    do) registers none that could clash with other commands' (stylize's `--style`)."""
    flags.DEFINE_list("style", None, "Styles to export: names in --saved_dir or folders "
                      "holding weights.npz (comma-separated).")
    flags.DEFINE_bool("all", False, "Export every trained style in --saved_dir.")
    cli.define_saved_dir(__name__)
    flags.DEFINE_string("models_dir", DEFAULT_MODELS_DIR, "TensorFlow Serving model base "
                        "paths: each style goes to <models_dir>/<style>/<version>/.")
    flags.DEFINE_integer("version", None, "Version number to write (it must not exist). "
                         "Default: one above the highest present.", lower_bound=1)
    flags.DEFINE_integer("max_pixels", MAX_PIXELS, "Largest image (height x width) the "
                         "model accepts.", lower_bound=1)
    flags.DEFINE_integer("jpeg_quality", JPEG_QUALITY, "JPEG quality of stylize_jpeg.",
                         lower_bound=1, upper_bound=100)


def style_sources(styles, all_styles, saved_dir):
    """[(name, folder)] for --style (`styles`) or --all (`all_styles`), the flags of this
    command and of tools/export_tflite.py."""
    if all_styles == bool(styles):
        raise cli.CommandError("give --style=NAME[,NAME...] or --all (see --helpfull)")
    if all_styles:
        names = saved_nets.list_styles(saved_dir)
        if not names:
            raise cli.CommandError(f"no trained styles in {saved_dir}/ (train one with "
                                   "perceptual_style.train first)")
        return [(name, os.path.join(saved_dir, name)) for name in names]
    try:
        return [(os.path.basename(os.path.normpath(style)), saved_nets.resolve(style, saved_dir))
                for style in styles]
    except FileNotFoundError as e:
        raise cli.CommandError(str(e)) from None


def main(argv):
    logging.set_verbosity(logging.WARNING)  # saving logs a dozen INFO lines per style
    try:
        for name, folder in style_sources(FLAGS.style, FLAGS.all,
                                           saved_nets.find_saved_dir(FLAGS.saved_dir)):
            started = time.time()
            net = saved_nets.load_transformer(folder)
            styles = (saved_nets.load_style_names(folder, FLAGS.saved_dir, net.num_styles)
                      if net.num_styles > 1 else None)
            version, path = export_style(net, os.path.join(FLAGS.models_dir, name), FLAGS.version,
                                         FLAGS.max_pixels, FLAGS.jpeg_quality, styles)
            print(f"Exported {name} version {version}"
                  + (f" (styles: {', '.join(styles)})" if styles else "")
                  + f": {path} ({directory_size(path) / 1e6:.1f} MB, "
                  f"{time.time() - started:.1f} s)")
    except (ValueError, OSError) as e:  # one line, not a traceback
        sys.exit(f"export: error: {e}")
    return 0


def run():
    define_flags()
    cli.run(main, "export", imports=["tensorflow", "keras"])


if __name__ == "__main__":
    run()
