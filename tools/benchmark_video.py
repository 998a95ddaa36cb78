"""Video stylization measured: speed, temporal consistency and memory; the README's video
numbers come from here.

    python tools/benchmark_video.py [--nets=snight,snight_mobile] [--sizes=640x360,1280x720]
        [--frames=24] [--tile_size=1280] [--figure=docs/video_temporal.jpg]

For each network and frame size, a clip of --frames frames (a camera panning and zooming
over scikit-image's sample photos, at the demo clip's speed) is stylized twice by the CLI's own code
(perceptual_style.stylize_video.stylize), frame by frame (--temporal=0) and with --temporal
at its default: frames per second (after a warm-up pass), the seconds per frame of the
network and of the temporal blend, and Lai et al.'s warping error of each output (see
perceptual_style/video.py). Then the whole CLI runs in a process of its own on a clip of
--frames and of 6 x --frames frames (the first network, the first size) for its peak
resident memory. Prints markdown tables and writes `<output_dir>/video<tag>.json`;
--figure writes three consecutive frames with and without --temporal (first network and
size). Timings are only meaningful on an otherwise idle machine.
"""

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # run as a script from anywhere

from perceptual_style import cli, saved_nets, stylize_video  # noqa: E402

flags.DEFINE_list("nets", ["snight", "snight_mobile"], "Trained styles to measure.")
flags.DEFINE_list("sizes", ["640x360", "1280x720"], "Frame sizes, WIDTHxHEIGHT.")
flags.DEFINE_integer("frames", 24, "Frames per clip (the memory run also uses 6x).",
                     lower_bound=4)
flags.DEFINE_string("output_dir", "benchmarks", "Where the JSON goes.")
flags.DEFINE_string("tag", "", "Suffix of the JSON file's name.")
flags.DEFINE_bool("memory", True, "Measure the peak memory of a short and a 6x longer clip.")
flags.DEFINE_string("figure", None, "Also write three consecutive frames, input, frame by "
                    "frame and with --temporal, here (PNG).")
FLAGS = flags.FLAGS
FIGURE_FRAMES = (12, 13, 14)  # mid-pan


def clip(folder, width, height, count):
    """The demo clip's camera path at this size (at least its length, so that the camera
    moves as fast as in the demo), cut to `count` frames."""
    from perceptual_style import video
    from perceptual_style.samples import sample_photos

    photos = sample_photos()
    path = os.path.join(folder, f"clip_{width}x{height}_{count}.mp4")
    frames = video.camera_path([photos["astronaut"], photos["coffee"]], width, height,
                               max(count, stylize_video.DEMO_FRAMES))[:count]
    with open(path, "wb") as f:
        video.write_clip(f, "mp4", frames, 24)
    return path


def stylized(net, source, out, temporal):
    """Runs the CLI's stylization in this process: (seconds, frames, timings)."""
    from perceptual_style import video

    FLAGS.temporal = temporal
    timings = {"network": 0.0, "temporal": 0.0}
    with video.VideoReader(source) as reader, contextlib.redirect_stdout(io.StringIO()):
        start = time.perf_counter()
        frames = stylize_video.stylize(reader, net, out, timings)
        seconds = time.perf_counter() - start
    return seconds, frames, timings


def peak_rss_mib(source, out, style):
    """Peak resident memory of the CLI stylizing `source`, in a process of its own."""
    process = subprocess.Popen([sys.executable, "-m", "perceptual_style.stylize_video",
                                source, f"--style={style}", f"--output={out}",
                                f"--saved_dir={FLAGS.saved_dir}", f"--tile_size={FLAGS.tile_size}"],
                               cwd=REPO, stdout=subprocess.DEVNULL,
                               env={k: v for k, v in os.environ.items()
                                    if k != "TF_CPP_MIN_LOG_LEVEL"})  # its lines dropped
    _, status, usage = os.wait4(process.pid, 0)
    if status:
        raise RuntimeError(f"stylize_video failed on {source}")
    return usage.ru_maxrss / 1024


def measure(folder):
    from keras import ops

    from perceptual_style import video

    default = FLAGS["temporal"].default
    report = {"temporal_default": default, "frames": FLAGS.frames,
              "tile_size": FLAGS.tile_size, "rows": []}
    saved_dir = saved_nets.find_saved_dir(FLAGS.saved_dir)
    for name in FLAGS.nets:
        [(net, _)] = cli.load_styles([name], saved_dir).values()
        for size in FLAGS.sizes:
            width, height = map(int, size.split("x"))
            source = clip(folder, width, height, FLAGS.frames)
            batch = np.zeros((min(stylize_video.MAX_BATCH, max(1, stylize_video.BATCH_PIXELS
                                                                 // (width * height))),
                              height, width, 3), np.float32)
            ops.convert_to_numpy(net(batch))  # warm-up: tracing and allocation
            row = {"net": name, "size": size}
            for label, temporal in (("frame_by_frame", 0.0), ("temporal", default)):
                out = os.path.join(folder, f"{name}_{size}_{label}.mp4")
                seconds, frames, timings = stylized(net, source, out, temporal)
                error, pairs = video.warping_error(video.frames(source), video.frames(out))
                row[label] = {"fps": frames / seconds, "seconds_per_frame": seconds / frames,
                              **{f"{k}_seconds_per_frame": v / frames for k, v in timings.items()},
                              "warping_error": error, "pairs": pairs, "path": out}
                print(name, size, label, json.dumps(row[label]), flush=True)
            report["rows"].append(row)
    first = report["rows"][0]
    name, size = first["net"], first["size"]
    width, height = map(int, size.split("x"))
    report["memory"] = {"net": name, "size": size}
    for count in (FLAGS.frames, 6 * FLAGS.frames) if FLAGS.memory else ():
        source = clip(folder, width, height, count)
        report["memory"][str(count)] = peak_rss_mib(source, os.path.join(folder, "memory.mp4"),
                                                    name)
        print("peak RSS", count, "frames:", report["memory"][str(count)], "MiB", flush=True)
    if FLAGS.figure:
        figure(first)
    return report


def figure(row):
    from perceptual_style import video
    from perceptual_style.contact_sheet import contact_sheet
    from perceptual_style.images import save_image

    sources = [video.frames(os.path.join(os.path.dirname(row["temporal"]["path"]),
                                         f"clip_{row['size']}_{FLAGS.frames}.mp4")),
               video.frames(row["frame_by_frame"]["path"]), video.frames(row["temporal"]["path"])]
    rows = [[] for _ in FIGURE_FRAMES]
    for frames in sources:
        for index, frame in enumerate(frames):
            if index in FIGURE_FRAMES:
                rows[FIGURE_FRAMES.index(index)].append(frame)
    save_image(contact_sheet(rows, ["input", "frame by frame (--temporal=0)",
                                    f"--temporal={FLAGS['temporal'].default:g}"], 240),
               FLAGS.figure)
    print("figure:", FLAGS.figure)


def print_report(report):
    print(f"\n{report['frames']} frames, --tile_size={report['tile_size']}\n")
    print("| network | size | fps, frame by frame | fps, --temporal | network s/frame | "
          "blend s/frame | extra time | warping error, frame by frame | warping error, "
          "--temporal | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in report["rows"]:
        a, b = row["frame_by_frame"], row["temporal"]
        print(f"| {row['net']} | {row['size']} | {a['fps']:.2f} | {b['fps']:.2f} | "
              f"{b['network_seconds_per_frame']:.3f} | {b['temporal_seconds_per_frame']:.3f} | "
              f"{b['temporal_seconds_per_frame'] / a['seconds_per_frame']:.1%} | "
              f"{a['warping_error']:.5f} | {b['warping_error']:.5f} | "
              f"{b['warping_error'] / a['warping_error']:.2f} |")
    memory = report["memory"]
    counts = [k for k in memory if k.isdigit()]
    if counts:
        print(f"\npeak resident memory, {memory['net']} at {memory['size']}: " + ", ".join(
            f"{count} frames {memory[count]:.0f} MiB" for count in counts))


def main(argv):
    with tempfile.TemporaryDirectory() as folder:
        report = measure(folder)
    for row in report["rows"]:
        for label in ("frame_by_frame", "temporal"):
            del row[label]["path"]
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    path = os.path.join(FLAGS.output_dir, f"video{FLAGS.tag}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print_report(report)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    cli.run(main, "benchmark_video", imports=["perceptual_style.video", "keras"])
