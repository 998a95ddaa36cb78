"""Stylizes photos with trained styles: `python -m perceptual_style.stylize [PHOTO ...]`.

With no photos it is the main job: every style in savedNets/ applied to the photos in
`transferSource/` when that folder exists, else to scikit-image's sample photos, written to
`results/<style>_<photo>.jpg` with a contact sheet. Photos may be files, folders (searched
recursively) or globs, of any size, aspect and colour mode; each output has its input's
size. Large photos are tiled (see tiling.py). A bad file is reported in one line and
skipped; the exit status is 1 if any photo failed, 130 after Ctrl-C. Outputs are written
atomically and an input is never overwritten.
"""

import os
import sys

import numpy as np
from absl import flags
from PIL import Image

from perceptual_style import cli, color, saved_nets, tiling
from perceptual_style.contact_sheet import contact_sheet, fit_height
from perceptual_style.images import MAX_PIXELS, ImageError, composite_on_white, open_image
from perceptual_style.images import save_image

SOURCE_DIR = "transferSource"
FILE_EXTENSIONS = (".jpg", ".jpeg", ".png")  # an --output ending so names one file

cli.define_stylize_flags(__name__)
flags.DEFINE_enum("format", "jpg", ["jpg", "png"], "Output format (photos with "
                  "transparency are always written as PNG, alpha kept).")
flags.DEFINE_integer("quality", 95, "JPEG quality.", lower_bound=1, upper_bound=100)
flags.DEFINE_integer("max_pixels", MAX_PIXELS, "Largest photo (width x height) to read; "
                     "larger ones are skipped. The default is Pillow's decompression-bomb "
                     "limit, which no value may exceed.", lower_bound=1, upper_bound=MAX_PIXELS)
flags.DEFINE_string("contact_sheet", None, "Also write a contact sheet (photos x styles) "
                    "here. Default: <output>/contact_sheet.jpg for the main job, else none.")
flags.DEFINE_list("sweep", None, "A mixing sweep: two styles A,B of the network of several "
                  "styles that --style names; each photo is stylized in --sweep_steps blends "
                  "from all A to all B, side by side on the contact sheet.")
flags.DEFINE_integer("sweep_steps", 5, "Blends in a --sweep, both ends included.",
                     lower_bound=2, upper_bound=21)
FLAGS = flags.FLAGS


def photo_sources(args, failures):
    """[(output stem, source path or None, loader)], reporting arguments that match nothing."""
    if not args:
        if os.path.isdir(SOURCE_DIR):
            args = [SOURCE_DIR]
        else:
            from perceptual_style.samples import sample_photos

            try:
                photos = sample_photos()
            except RuntimeError as e:
                raise cli.CommandError(str(e)) from None
            return [(name, None, lambda a=array: Image.fromarray(a)) for name, array in photos.items()]
    from perceptual_style.data import list_images

    sources = []
    for arg in args:
        try:
            files = list_images(arg)
        except FileNotFoundError as e:
            skip(failures, str(e))
            continue
        root = arg if os.path.isdir(arg) else None
        for path in files:
            stem = os.path.splitext(os.path.relpath(path, root) if root else os.path.basename(path))[0]
            sources.append((stem, path, lambda p=path: open_image(p, FLAGS.max_pixels)))
    return sources


def output_path(stem, style, has_alpha, single):
    if single and os.path.splitext(FLAGS.output)[1].lower() in FILE_EXTENSIONS:
        path = FLAGS.output
        if has_alpha:
            path = os.path.splitext(path)[0] + ".png"
        return path
    extension = "png" if has_alpha else FLAGS.format
    folder, name = os.path.split(stem)
    return os.path.join(FLAGS.output, folder, f"{style}_{name}.{extension}")


def skip(failures, message):
    """Reports a photo that could not be done, at once and in one line, and counts it."""
    print(f"\nstylize: skipped {message}", file=sys.stderr, flush=True)
    failures.append(message)


def stylize_all(nets, sources, failures, sheet_rows):
    import keras

    inputs = {os.path.realpath(path) for _, path, _ in sources if path}
    written = {}
    single = len(sources) == 1 and len(nets) == 1
    bar = keras.utils.Progbar(len(sources) * len(nets), unit_name="image") if (
        len(sources) * len(nets) > 1) else None
    done = 0
    for stem, path, load in sources:
        label = path or stem
        try:
            image = load()
        except ImageError as e:
            skip(failures, str(e))
            done += len(nets)
            continue
        if image.info.get("frames", 1) > 1:
            print(f"\nstylize: warning: {label} has {image.info['frames']} frames; only the "
                  "first is stylized", file=sys.stderr, flush=True)
        alpha = image.getchannel("A") if image.mode == "RGBA" else None
        photo = np.asarray(composite_on_white(image), np.uint8)
        row = [fit_height(photo, 192)] if sheet_rows is not None else None
        for style, (net, strength) in nets.items():
            out = output_path(stem, style, alpha is not None, single)
            real = os.path.realpath(out)
            if real in inputs or real in written:
                skip(failures, f"{label}: not written: {out} is " + (
                    "an input" if real in inputs else f"also the output for {written[real]}"))
                done += 1
                continue

            def progress(tiles_done, tiles, base=done):
                nonlocal bar
                if single:  # one photo, tiled (one pass reports nothing): its tile passes
                    bar = bar or keras.utils.Progbar(tiles, unit_name="tile pass")
                    bar.update(tiles_done)
                else:
                    bar.update(base + tiles_done / tiles)

            try:
                stylized = tiling.stylize_image(net, photo, FLAGS.tile_size,
                                                statistics=FLAGS.statistics, progress=progress)
                result = color.finish(stylized, photo, strength, FLAGS.preserve_color)
                del stylized
                if alpha is not None:
                    result = np.dstack([result, np.asarray(alpha, np.uint8)])
                save_image(result, out, quality=FLAGS.quality)
            except OSError as e:
                skip(failures, f"{label}: cannot write {out} ({e.strerror or e})")
            except Exception as e:  # whatever one photo does, the others are still done
                reason = (str(e).strip().splitlines() or ["no message"])[0]
                skip(failures, f"{label}: {style} failed ({type(e).__name__}: {reason})")
            else:
                written[real] = label
                if row is not None:
                    row.append(fit_height(result[..., :3], 192))
            done += 1
            if not single:
                bar.update(done)
        if row is not None and len(row) > 1:
            sheet_rows.append(row)
    return written


def main(argv):
    failures = []
    try:
        nets = cli.load_styles(FLAGS.style, saved_nets.find_saved_dir(FLAGS.saved_dir),
                               FLAGS.precision, FLAGS.mix, FLAGS.strength, FLAGS.sweep,
                               FLAGS.sweep_steps)
        sources = photo_sources(argv[1:], failures)
        if not sources:
            raise cli.CommandError("no photos to stylize: " + "; ".join(failures))
        if (os.path.splitext(FLAGS.output)[1].lower() in FILE_EXTENSIONS
                and len(sources) * len(nets) > 1):
            raise cli.CommandError(f"--output={FLAGS.output} names one file, but there are "
                                   f"{len(sources)} photos and {len(nets)} styles: give a folder")
        sheet = FLAGS.contact_sheet
        if sheet is None and not argv[1:]:
            sheet = os.path.join(FLAGS.output, "contact_sheet.jpg")
        sheet_rows = [] if sheet else None
        written = stylize_all(nets, sources, failures, sheet_rows)
        if sheet_rows:
            save_image(contact_sheet(sheet_rows, ["photo", *nets]), sheet, quality=90)
            print(f"contact sheet: {sheet}")
    except OSError as e:
        sys.exit(f"stylize: error: {e}")
    except KeyboardInterrupt:
        print("stylize: interrupted (everything written so far is complete)", file=sys.stderr)
        return 130
    print(f"wrote {len(written)} image{'' if len(written) == 1 else 's'} to {FLAGS.output}"
          + (f"; {len(failures)} failed" if failures else ""))
    return 1 if failures else 0


def run():
    cli.run(main, "stylize", imports=["keras"], arguments=True)


if __name__ == "__main__":
    run()
