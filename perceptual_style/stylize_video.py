"""Stylizes a video with a trained style: `python -m perceptual_style.stylize_video IN
--style=NAME [--output=OUT]`.

Any container and codec FFmpeg reads (through PyAV); the output has the input's frame
rate, size, rotation and duration, its audio streams copied unchanged, H.264 in MP4 unless
--output and --codec say otherwise. Frames are stylized in batches, tiled when large (as
photos are: see tiling.py), and made temporally consistent with --temporal (see video.py).
Errors are one line with exit status 1 (130 after Ctrl-C), and the output is written to a
temporary file renamed at the end, so no half-written video is ever left.
`--make_demo_clip=PATH` writes a short clip to try it on, from a sample photo.
"""

import os
import sys
import time

import numpy as np
from absl import flags

from perceptual_style import cli, color, saved_nets, tiling
from perceptual_style.atomic import atomic_write

cli.define_stylize_flags(__name__)
flags.DEFINE_float("temporal", 0.5, "Temporal consistency: how much of the previous output, "
                   "warped along the input's motion, is blended into each frame where that "
                   "motion is reliable (0: each frame on its own).", lower_bound=0.0,
                   upper_bound=1.0)
flags.DEFINE_string("codec", "libx264", "Video encoder (an FFmpeg encoder name: libx264, "
                    "libx265, libvpx-vp9, mpeg4, ...).")
flags.DEFINE_integer("crf", 18, "Constant rate factor of the encoders that have one (lower: "
                     "better quality, larger file).", lower_bound=0, upper_bound=63)
flags.DEFINE_string("make_demo_clip", None, "Write a short demo clip (a camera panning over "
                    "two sample photos, with a cut and a sound track) here and exit.")
FLAGS = flags.FLAGS

# Frames per network pass: as many as make up one tile window's pixels (so a batch needs
# about the memory of one tile), at most MAX_BATCH.
BATCH_PIXELS = (tiling.TILE_SIZE + 2 * tiling.MARGIN) ** 2
MAX_BATCH = 8
DEMO_SIZE, DEMO_FRAMES, DEMO_RATE = (640, 360), 72, 24


def output_path(source, style):
    """--output when it names a file (it has an extension), else a file in that folder."""
    if os.path.splitext(FLAGS.output)[1]:
        return FLAGS.output
    stem = os.path.splitext(os.path.basename(source))[0]
    return os.path.join(FLAGS.output, f"{style}_{stem}.mp4")


def batch_size(reader):
    return max(1, min(MAX_BATCH, BATCH_PIXELS // (reader.width * reader.height)))


def make_demo_clip(path):
    from perceptual_style import video
    from perceptual_style.samples import sample_photos

    try:
        photos = sample_photos()
    except RuntimeError as e:
        raise cli.CommandError(str(e)) from None
    frames = video.camera_path([photos["astronaut"], photos["coffee"]], *DEMO_SIZE, DEMO_FRAMES)
    file_format = video.container_format(path)
    atomic_write(path, lambda f: video.write_clip(f, file_format, frames, DEMO_RATE))
    print(f"wrote {path}: {DEMO_FRAMES} frames, {DEMO_SIZE[0]} x {DEMO_SIZE[1]}, "
          f"{DEMO_FRAMES / DEMO_RATE:g} s")


def frame_processor(net, temporal, timings=None, strength=1.0):
    """`process(frames)` for video.transcode: the network over the batch (tiled when
    large), the temporal blend and the colour controls (`strength`: the pixel blend with
    the frame), frame by frame. `timings`, if given, adds up the seconds spent in the
    network and in the blend."""
    from perceptual_style.video import TemporalBlend

    blend = TemporalBlend(temporal)
    timings = {"network": 0.0, "temporal": 0.0} if timings is None else timings

    def process(frames):
        start = time.perf_counter()
        stylized = tiling.stylize_batch(net, np.stack(frames), FLAGS.tile_size, FLAGS.statistics)
        timings["network"] += time.perf_counter() - start
        results = []
        for frame, result in zip(frames, stylized):
            start = time.perf_counter()
            result = blend(frame, result)
            timings["temporal"] += time.perf_counter() - start
            results.append(color.finish(result, frame, strength, FLAGS.preserve_color))
        return results

    return process


def stylize(reader, net, out, timings=None, strength=1.0):
    """Writes `reader`'s video stylized by `net` to `out`, blended with it by `strength`
    (cli.Chosen's); returns the frames written."""
    import keras

    from perceptual_style import video

    file_format = video.container_format(out)
    bar = keras.utils.Progbar(reader.frame_count or None, unit_name="frame",
                              stateful_metrics=["fps"])
    start, written = time.perf_counter(), []

    def progress(done, finalize=None):
        bar.update(done, [("fps", done / (time.perf_counter() - start))], finalize=finalize)

    def write(file):
        written.append(video.transcode(reader, file, file_format,
                                       frame_processor(net, FLAGS.temporal, timings, strength),
                                       batch_size(reader), FLAGS.codec, FLAGS.crf, progress))
        if bar.target != written[0]:  # the header's frame count was off, or missing
            progress(written[0], finalize=True)

    atomic_write(out, write)
    return written[0]


def main(argv):
    if FLAGS.make_demo_clip:
        if argv[1:]:
            raise cli.CommandError("--make_demo_clip takes no input video")
        make_demo_clip(FLAGS.make_demo_clip)
        return 0
    if len(argv) != 2:
        raise cli.CommandError("give one input video: stylize_video IN --style=NAME")
    source = argv[1]
    if FLAGS.style == ["all"] or len(FLAGS.style) != 1:
        raise cli.CommandError("name one style: --style=NAME (see --saved_dir)")
    style = cli.style_label(FLAGS.style[0], FLAGS.mix)
    out = output_path(source, style)
    if os.path.realpath(out) == os.path.realpath(source) or (
            os.path.exists(out) and os.path.exists(source) and os.path.samefile(out, source)):
        raise cli.CommandError(f"--output={out} is the input; give another file")
    from perceptual_style.video import VideoError, VideoReader, container_format, encoder

    try:
        container_format(out)
        encoder(FLAGS.codec)
        with VideoReader(source) as reader:
            cli.import_quietly(["keras"])  # after the checks above, which are instant
            nets = cli.load_styles(FLAGS.style, saved_nets.find_saved_dir(FLAGS.saved_dir),
                                   FLAGS.precision, FLAGS.mix, FLAGS.strength)
            if len(nets) != 1:
                raise cli.CommandError(f"{style} holds {len(nets)} styles: name one "
                                       f"(--style={FLAGS.style[0]}:STYLE) or blend them (--mix)")
            [(net, strength)] = nets.values()
            frames = stylize(reader, net, out, strength=strength)
    except VideoError as e:
        raise cli.CommandError(str(e)) from None
    except OSError as e:
        raise cli.CommandError(f"cannot write {out} ({e.strerror or e})") from None
    except KeyboardInterrupt:
        print("\nstylize_video: interrupted (no output written)", file=sys.stderr)
        return 130
    print(f"wrote {out} ({frames} frames)")
    return 0


def run():
    cli.run(main, "stylize_video", imports=["perceptual_style.video"], arguments=True)


if __name__ == "__main__":
    run()
