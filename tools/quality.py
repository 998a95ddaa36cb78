"""Quality of the trained styles on held-out photos, with the losses they were trained on.

For every style in savedNets/ and every photo (never trained on), with the style's own VGG19
layers, layer weights and style image from its metadata:
- style ratio: style loss of the stylized photo / style loss of the photo itself. A style
  passes at <= --max_style_ratio (0.25: the Gram matrices moved at least 4x closer).
- content ratio: content loss of the stylized photo / content loss of a different photo of
  the set (scaled to the same size), i.e. against a picture with none of its content. A
  style passes at <= --max_content_ratio: the stylized photo stays clearly closer to its
  own content than another photo is.
- clipped: the share of output pixels blown out to white (255 in every channel) or black
  (0 in every channel) where the photo's pixel is not; a style passes at <= --max_clipped
  (0.5%).
- near clipped (shown, not judged): the same within NEAR_LEVELS grey levels of 255 or 0. A
  blot of 250 is as visible as one of 255, and training's saturation loss (losses.py) stops
  blots near there, so it shows what `clipped` alone would flatter; it also counts a
  painting's own deep blacks, which is why it is not the bar.
Prints a markdown table of the means over the photos; exits 1 if any style fails. A network
of several styles is measured style by style (NET:STYLE), each with its own recorded loss.

    python tools/quality.py --photos=PHOTOS [--styles=snight,wave,paintings:wave]
"""

import sys

import numpy as np
from absl import flags

from perceptual_style import cli, saved_nets
from perceptual_style.images import ImageError, load_rgb, resize, to_uint8
from perceptual_style.tiling import stylize_image

flags.DEFINE_list("styles", None, "Styles to measure, NET:STYLE for one style of a network "
                  "of several (default: all in --saved_dir, each style of such a network).")
cli.define_saved_dir(__name__)
flags.DEFINE_string("photos", None, "Held-out photos (folder or glob); required.")
flags.DEFINE_integer("num_photos", None, "How many of them (the first, sorted; default all).",
                     lower_bound=1)
flags.DEFINE_integer("size", 256, "Photos are scaled so their shorter side is this.",
                     lower_bound=32)
flags.DEFINE_float("max_style_ratio", 0.20, "Pass mark for the style ratio.")
flags.DEFINE_float("max_content_ratio", 0.75, "Pass mark for the content ratio.")
flags.DEFINE_float("max_clipped", 0.005, "Pass mark for the share of clipped pixels.")
flags.DEFINE_string("json", None, "Also write the table here as JSON.")
FLAGS = flags.FLAGS


def to_numpy(value):
    from keras import ops

    return float(ops.convert_to_numpy(value))


NEAR_LEVELS = 8


def clipped_share(photo, stylized, levels=0):
    """Share of pixels within `levels` of 255 (or of 0) in every channel of `stylized` but
    not of `photo` (uint8 images)."""
    def near(image, value):
        return np.all(np.abs(image.astype(np.int16) - value) <= levels, axis=-1)

    white = near(stylized, 255) & ~near(photo, 255)
    black = near(stylized, 0) & ~near(photo, 0)
    return float(np.mean(white | black))


def each_style(names):
    """The entries to measure: a network of several styles given as NET is measured as
    NET:STYLE for each of its styles."""
    entries = []
    for name in names:
        styles = [] if ":" in name else saved_nets.load_metadata(name, FLAGS.saved_dir).get(
            "styles", [])
        entries += [f"{name}:{style['name']}" for style in styles] or [name]
    return entries


def measure(name, photos):
    from perceptual_style.losses import content_loss, style_loss
    from perceptual_style.style_flags import saved_style_loss

    path, colon, style = name.rpartition(":")
    path, style = (path, style) if colon else (name, None)
    [(net, _)] = cli.load_styles([name], FLAGS.saved_dir).values()
    metadata = saved_nets.load_metadata(path, FLAGS.saved_dir)
    loss = saved_style_loss(metadata, style)
    rows = []
    for i, photo in enumerate(photos):
        stylized = stylize_image(net, photo)
        other = photos[(i + 1) % len(photos)]
        other = np.asarray(resize(other, photo.shape[1], photo.shape[0]))
        batch = np.stack([photo, stylized, other]).astype(np.float32)
        features = loss.features(batch)
        per_image = [{k: v[i:i + 1] for k, v in features.items()} for i in range(3)]
        style_photo, style_stylized = (
            to_numpy(style_loss(per_image[i], loss.style_grams, loss.style_layers)) for i in (0, 1))
        target = per_image[0][loss.content_layer]
        content_stylized, content_other = (
            to_numpy(content_loss(per_image[i][loss.content_layer], target)) for i in (1, 2))
        stylized = to_uint8(stylized)
        rows.append((style_photo, style_stylized, content_stylized, content_other,
                     clipped_share(photo, stylized), clipped_share(photo, stylized, NEAR_LEVELS)))
    (style_photo, style_stylized, content_stylized, content_other, clipped,
     near_clipped) = np.mean(rows, axis=0)
    return {
        "style": name,
        "steps": metadata.get("steps"), "images_seen": metadata.get("images_seen"),
        "style_loss_photo": style_photo, "style_loss_stylized": style_stylized,
        "style_ratio": float(np.mean([r[1] / r[0] for r in rows])),
        "content_loss_stylized": content_stylized, "content_loss_other": content_other,
        "content_ratio": float(np.mean([r[2] / r[3] for r in rows])),
        "clipped": float(clipped), "near_clipped": float(near_clipped),
    }


def main(argv):
    del argv
    from perceptual_style.data import list_images

    cli.require("photos")
    try:
        files = list_images(FLAGS.photos)[: FLAGS.num_photos]
        photos = [load_rgb(f, shorter_side=FLAGS.size) for f in files]
        FLAGS.saved_dir = saved_nets.find_saved_dir(FLAGS.saved_dir)
        names = each_style(FLAGS.styles or saved_nets.list_styles(FLAGS.saved_dir))
        results = [measure(name, photos) for name in names]
    except (FileNotFoundError, ImageError, KeyError, ValueError) as e:
        sys.exit(f"quality: error: {e}")
    print(f"\n{len(photos)} held-out photos from {FLAGS.photos}, shorter side {FLAGS.size}; "
          f"pass: style ratio <= {FLAGS.max_style_ratio}, content ratio <= "
          f"{FLAGS.max_content_ratio}, clipped <= {FLAGS.max_clipped:.1%}\n")
    print("| style | steps | images seen | style loss photo | style loss stylized | style ratio "
          f"| content loss stylized | content loss other photo | content ratio | clipped "
          f"| near clipped (<= {NEAR_LEVELS} levels) | pass |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    failed = 0
    for r in results:
        ok = (r["style_ratio"] <= FLAGS.max_style_ratio and r["content_ratio"] <= FLAGS.max_content_ratio
              and r["clipped"] <= FLAGS.max_clipped)
        failed += not ok
        print(f"| {r['style']} | {r['steps']} | {r['images_seen']} | {r['style_loss_photo']:.3g} "
              f"| {r['style_loss_stylized']:.3g} | {r['style_ratio']:.3f} "
              f"| {r['content_loss_stylized']:.3g} | {r['content_loss_other']:.3g} "
              f"| {r['content_ratio']:.3f} | {r['clipped']:.2%} | {r['near_clipped']:.2%} "
              f"| {'yes' if ok else 'NO'} |")
    if FLAGS.json:
        try:
            saved_nets.write_json(FLAGS.json, results)
        except OSError as e:
            sys.exit(f"quality: error: cannot write --json: {e}")
    return 1 if failed else 0


if __name__ == "__main__":
    cli.run(main, "quality", imports=["keras"])
