"""TensorFlow Lite builds of trained styles for phones, each verified in LiteRT.

    python tools/export_tflite.py --style=snight        # or --style=snight,wave, or --all

For every style, input size (`--sizes`: fixed-shape builds, plus `resizable`) and
quantization (`--quantizations`), writes `<output_dir>/<style>/<style>_<size>_<quant>.tflite`
(atomically), then runs it in the LiteRT interpreter (XNNPACK, `--threads`) on held-out
photos fitted to its size: output PSNR against the Keras float32 network, median latency,
file size. Prints a markdown table, then one line per build saying whether LiteRT's GPU
delegate takes every op (tflite.gpu_delegate_report), writes it all with every build's
signature details and ops to `<output_dir>/<style>/report.json`, and exits 1 if a build falls
under its PSNR floor.

`--padding=replicate` (or `zero`) builds a style in another padding with its trained weights,
as `<style>_<padding>`, and also measures each build against the style as it was saved.
A network of several styles is built with its style weights as a second input, calibrated
on every style, and measured on every style and on an even blend of them.
See docs/mobile.md for the builds, their signature and which one a phone should use.
"""

import os
import sys
import tempfile

import numpy as np
from absl import flags, logging

from perceptual_style import cli, saved_nets, tflite
from perceptual_style.atomic import atomic_write, writable_folder
from perceptual_style.export import style_sources
from perceptual_style.images import ImageError, composite_on_white, cover, open_image

# Full-integer builds are fixed-shape only: calibrated at one size, the resizable int8 build
# fell to 16 dB at another (snight, 256x256 -> 298x402), against 33 dB at its own size.
FIXED_ONLY = ("int8", "uint8")

flags.DEFINE_list("style", None, "Styles to convert: names in --saved_dir or folders holding "
                  "weights.npz (comma-separated).")
flags.DEFINE_bool("all", False, "Convert every trained style in --saved_dir.")
cli.define_saved_dir(__name__)
flags.DEFINE_string("output_dir", "tflite", "Builds go to <output_dir>/<style>/.")
flags.DEFINE_list("sizes", ["256", "384", "512", "720x1280", tflite.RESIZABLE], "Input sizes: N "
                  "(N x N), HxW, or 'resizable' (any size, every op a TFLite builtin; not "
                  "made for the full-integer int8 and uint8 builds).")
flags.DEFINE_list("quantizations", list(tflite.QUANTIZATIONS), "Among: "
                  f"{', '.join(tflite.QUANTIZATIONS)}.")
flags.DEFINE_string("eval_photos", None, "Held-out photos for PSNR and latency (folder, "
                    "glob or file); required.")
flags.DEFINE_integer("num_eval_photos", 3, "How many of them (the first, sorted).", lower_bound=1)
flags.DEFINE_string("calibration_photos", None, "Representative photos that calibrate the "
                    "int8 and uint8 builds; required.")
flags.DEFINE_integer("num_calibration_photos", 16, "How many of them.", lower_bound=1)
flags.DEFINE_string("resizable_eval_size", "298x402", "HxW at which the resizable builds are "
                    "measured (not a multiple of 4: the padded path).")
flags.DEFINE_integer("runs", 5, "Timed runs per build (the median is reported), after one "
                     "warm-up run.", lower_bound=1)
flags.DEFINE_integer("threads", tflite.THREADS, "LiteRT threads.", lower_bound=1)
flags.DEFINE_string("padding", None, "Build the styles with this padding instead of their own "
                    "(reflect, replicate or zero; same weights), named <style>_<padding>, and "
                    "measure them against the styles as saved too.")
FLAGS = flags.FLAGS


def parse_size(text):
    """'256' -> (256, 256), '720x1280' -> (720, 1280), 'resizable' -> None."""
    if text == tflite.RESIZABLE:
        return None
    try:
        sides = [int(side) for side in text.lower().split("x")]
    except ValueError:
        sides = []
    if len(sides) not in (1, 2) or min(sides) < 16:
        raise cli.CommandError(f"bad size {text!r}: give N, HxW (sides of at least 16) or "
                               f"{tflite.RESIZABLE}")
    return (sides[0], sides[-1])


def load_photos(source, count):
    from perceptual_style.data import list_images

    return [composite_on_white(open_image(f)) for f in list_images(source)[:count]]


def fit(photo, shape):
    """Scaled to cover (height, width), centre-cropped: float32 (height, width, 3)."""
    return cover(photo, shape[1], shape[0]).astype(np.float32)


def build_label(name):
    """The name a style's builds go under: `<style>_<padding>` with --padding."""
    return f"{name}_{FLAGS.padding}" if FLAGS.padding else name


def style_vectors(net):
    """The style weights a build is measured with: [None] for a network of one style;
    each style (one-hot) and an even blend of them for one of several."""
    if net.num_styles == 1:
        return [None]
    return [*np.eye(net.num_styles, dtype=np.float32),
            np.full(net.num_styles, 1 / net.num_styles, np.float32)]


def keras_outputs(net, images):
    """The network's outputs for each image with each of style_vectors, in that order."""
    import keras

    return [keras.ops.convert_to_numpy(net(image[None]) if weights is None
                                       else net(image[None], style_weights=weights))[0]
            for image in images for weights in style_vectors(net)]


def convert_style(name, folder, shapes, eval_photos, calibration_photos, progress):
    """Makes, writes and measures every build of one style; returns the report rows."""
    from perceptual_style.transformer_net import with_padding

    saved = saved_nets.load_transformer(folder)
    styles = (saved_nets.load_style_names(folder, FLAGS.saved_dir, saved.num_styles)
              if saved.num_styles > 1 else None)
    net = with_padding(saved, FLAGS.padding) if FLAGS.padding else saved
    vectors = style_vectors(net)
    name = build_label(name)
    out_dir = os.path.join(FLAGS.output_dir, name)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for shape in shapes:
            label = tflite.size_label(shape)
            saved_model = os.path.join(tmp, label)
            tflite.write_saved_model(net, saved_model, shape)
            eval_shape = shape or parse_size(FLAGS.resizable_eval_size)
            images = [fit(photo, eval_shape) for photo in eval_photos]
            references = keras_outputs(net, images)
            originals = keras_outputs(saved, images) if FLAGS.padding else None
            quantizations = [q for q in FLAGS.quantizations if shape or q not in FIXED_ONLY]
            calibration = (tflite.calibration_batches([fit(p, shape) for p in calibration_photos],
                                                      net.num_styles)
                           if shape and set(FIXED_ONLY) & set(quantizations) else None)
            for quantization in quantizations:
                # The calibrator's and LiteRT's native info lines would cut through the bar.
                with cli.native_stderr_dropped():
                    model = tflite.convert(saved_model, quantization, calibration)
                    runner = tflite.Runner(model, FLAGS.threads)
                    outputs = [runner(image, weights) for image in images for weights in vectors]
                psnrs = [tflite.psnr(o, r) for o, r in zip(outputs, references)]
                path = os.path.join(out_dir, tflite.build_name(name, shape, quantization))
                atomic_write(path, lambda f: f.write(model))
                details = tflite.signature_details(model)
                rows.append({
                    "style": name, "size": label, "measured_at": tflite.size_label(eval_shape),
                    "quantization": quantization, "path": path, "bytes": len(model),
                    "latency_s": runner.latency(images[0], FLAGS.runs, vectors[0]),
                    "threads": FLAGS.threads,
                    "psnr_mean": float(np.mean(psnrs)), "psnr_min": float(np.min(psnrs)),
                    "psnr_floor": tflite.PSNR_FLOORS[quantization],
                    "ops": tflite.op_names(model), "signature": {tflite.SIGNATURE: details},
                    "gpu_delegate": tflite.gpu_delegate_report(model),
                })
                if styles:  # PSNR over every style and their even blend
                    rows[-1]["styles"] = styles
                if originals:  # how far the padding moved it from the style as saved
                    against = [tflite.psnr(o, r) for o, r in zip(outputs, originals)]
                    rows[-1].update(padding=net.padding, saved_padding=saved.padding,
                                    psnr_vs_saved_mean=float(np.mean(against)),
                                    psnr_vs_saved_min=float(np.min(against)))
                progress.add(1)
    return rows


def print_table(rows):
    print(f"\nLiteRT {FLAGS.threads} threads, XNNPACK; latency: median of {FLAGS.runs} runs; "
          f"PSNR against the Keras float32 network on {FLAGS.num_eval_photos} photos of "
          f"{FLAGS.eval_photos}\n")
    print("| style | input | build | in / out | MB | latency ms | PSNR dB mean (min) | floor | pass |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        details = r["signature"][tflite.SIGNATURE]
        io = (f"{details['inputs'][tflite.INPUT]['dtype']} / "
              f"{details['outputs'][tflite.OUTPUT]['dtype']}")
        size = (r["size"] if r["size"] != tflite.RESIZABLE
                else f"{tflite.RESIZABLE} (at {r['measured_at']})")
        print(f"| {r['style']} | {size} | {r['quantization']} | {io} | {r['bytes'] / 1e6:.2f} "
              f"| {1000 * r['latency_s']:.0f} | {r['psnr_mean']:.1f} ({r['psnr_min']:.1f}) "
              f"| {r['psnr_floor']:.0f} | {'yes' if r['psnr_min'] >= r['psnr_floor'] else 'NO'} |")
    print()
    for r in rows:
        against = (f"; against the saved {r['saved_padding']} network: PSNR "
                   f"{r['psnr_vs_saved_mean']:.1f} dB mean ({r['psnr_vs_saved_min']:.1f} min)"
                   if "psnr_vs_saved_mean" in r else "")
        styles = (f"; PSNR over its styles ({', '.join(r['styles'])}) and their even blend"
                  if "styles" in r else "")
        print(f"{r['style']} {r['size']} {r['quantization']}: {r['gpu_delegate']}{against}{styles}")


def main(argv):
    import keras

    from perceptual_style.transformer_net import PADDINGS

    logging.set_verbosity(logging.WARNING)  # SavedModel writing logs INFO lines per build
    try:
        if FLAGS.padding not in (None, *PADDINGS):
            raise cli.CommandError(f"unknown padding {FLAGS.padding!r}: one of "
                                   f"{', '.join(PADDINGS)}")
        unknown = sorted(set(FLAGS.quantizations) - set(tflite.QUANTIZATIONS))
        if unknown:
            raise cli.CommandError(f"unknown quantization {', '.join(unknown)}: give some of "
                                   f"{', '.join(tflite.QUANTIZATIONS)}")
        shapes = [parse_size(size) for size in FLAGS.sizes]
        FLAGS.saved_dir = saved_nets.find_saved_dir(FLAGS.saved_dir)
        styles = style_sources(FLAGS.style, FLAGS.all, FLAGS.saved_dir)
        for folder in [FLAGS.output_dir, *(os.path.join(FLAGS.output_dir, build_label(n))
                                           for n, _ in styles)]:
            writable_folder(folder)  # before the conversions, not after them
        cli.require("eval_photos", "calibration_photos")
        eval_photos = load_photos(FLAGS.eval_photos, FLAGS.num_eval_photos)
        calibration_photos = load_photos(FLAGS.calibration_photos, FLAGS.num_calibration_photos)
        per_style = sum(len(FLAGS.quantizations) if shape else
                        len(set(FLAGS.quantizations) - set(FIXED_ONLY)) for shape in shapes)
        progress = keras.utils.Progbar(len(styles) * per_style, unit_name="build")
        rows = []
        for name, folder in styles:
            style_rows = convert_style(name, folder, shapes, eval_photos, calibration_photos,
                                       progress)
            saved_nets.write_json(os.path.join(FLAGS.output_dir, build_label(name), "report.json"),
                                  style_rows)
            rows += style_rows
    except (tflite.TFLiteError, ImageError, OSError, ValueError) as e:
        sys.exit(f"export_tflite: error: {e}")
    print_table(rows)
    return 0 if all(r["psnr_min"] >= r["psnr_floor"] for r in rows) else 1


if __name__ == "__main__":
    cli.run(main, "export_tflite", imports=["tensorflow", "keras"])
