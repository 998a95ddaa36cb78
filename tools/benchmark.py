"""Speed, memory and quality of the transformer network: the README's numbers come from here.

    python tools/benchmark.py [--sizes=256x256,1024x1024] [--paths=keras,xla] [--repeats=3]
    python tools/benchmark.py --quality [--style=snight] [--iterations=50,100,200,500]

Speed: each inference path (see PATHS) runs in its own process, so one path's memory and
compiled code never affect another's; per size it records the median latency of
--repeats runs after --warmup runs and the process's peak resident memory (VmHWM, reset
before each size), plus the throughput of a --batch at --throughput_size. Training runs a
few steps per backend, also in a process each. The convolutions' multiply-accumulates
(perceptual_style/flops.py) turn latencies into GFLOP/s, compared with the machine's peak
measured in the same run by a large float32 matmul. Prints markdown tables and writes
`<output_dir>/speed<tag>.json` and a plot of latency against megapixels.

Quality (--quality): on held-out photos, a trained network's total perceptual loss (the
weights it was trained with, from its metadata) and time, against Gatys et al.'s
optimization of the pixels (perceptual_style/optimize.py) after each of --iterations.
Writes `<output_dir>/quality<tag>.json`.

Timings are only meaningful on an otherwise idle machine: pause other jobs while it runs.
"""

import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # run as a script from anywhere

from perceptual_style import cli, saved_nets  # noqa: E402

flags.DEFINE_list("paths", None, "Inference paths to measure (default: all of them).")
flags.DEFINE_list("sizes", ["256x256", "512x512", "1024x1024", "1920x1080"],
                  "Image sizes, WIDTHxHEIGHT.")
flags.DEFINE_integer("repeats", 3, "Timed runs per size (the median is reported).", lower_bound=1)
flags.DEFINE_integer("warmup", 1, "Untimed runs first (compilation, caches).", lower_bound=1)
flags.DEFINE_integer("batch", 8, "Batch for the throughput measurement (0: none).", lower_bound=0)
flags.DEFINE_integer("throughput_size", 256, "Square side of the throughput images.",
                     lower_bound=16)
flags.DEFINE_list("train_backends", ["tensorflow", "jax"], "Backends whose training step is "
                  "timed (empty: none).")
flags.DEFINE_integer("train_steps", 3, "Timed training steps (after 2 untimed ones).",
                     lower_bound=1)
flags.DEFINE_integer("train_size", 256, "Side of the square training crops.", lower_bound=16)
flags.DEFINE_integer("train_batch", 4, "Training batch size.", lower_bound=1)
flags.DEFINE_integer("matmul_size", 4096, "Side of the float32 matmul that measures the "
                     "peak.", lower_bound=64)
flags.DEFINE_integer("threads", 0, "TensorFlow intra-op threads (0: its default, one per "
                     "core).", lower_bound=0)
flags.DEFINE_string("output_dir", "benchmarks", "Where the JSON and the plot go.")
flags.DEFINE_string("tag", "", "Suffix of the output files' names, to keep experiments apart.")
flags.DEFINE_bool("quality", False, "Measure quality against pixel optimization instead.")
flags.DEFINE_string("style", "snight", "Quality: the trained style (a name in --saved_dir or "
                    "a folder).")
cli.define_saved_dir(__name__)
flags.DEFINE_string("photos", None, "Quality: held-out photos (folder, glob or file); "
                    "required with --quality.")
flags.DEFINE_integer("num_photos", 2, "Quality: how many of them (the first, sorted).",
                     lower_bound=1)
flags.DEFINE_integer("image_size", 128, "Quality: photos are scaled so their shorter side "
                     "is this.", lower_bound=16)
flags.DEFINE_list("iterations", ["50", "100", "200", "500"], "Quality: optimizer iterations "
                  "to report (one run to the largest).")
flags.DEFINE_list("optimizers", ["lbfgs"], "Quality: pixel optimizers (lbfgs, adam).")
flags.DEFINE_string("worker", None, "Internal: the measurement this process makes.")
flags.DEFINE_string("worker_output", None, "Internal: where a worker writes its JSON.")
FLAGS = flags.FLAGS


# --- Inference paths -------------------------------------------------------------------
# A path is a function (make_net, workdir) -> run, where make_net() builds the network and
# run(images) takes float32 numpy images (batch, height, width, 3) in [0, 255] and returns
# the stylized images as numpy (so the work is finished when it returns). Registering one
# more path is one decorated function.
PATHS = {}


def inference_path(name, backend="tensorflow"):
    def register(build):
        PATHS[name] = (backend, build)
        return build
    return register


@inference_path("keras")
def keras_tf_function(make_net, workdir):
    """The Keras model traced by tf.function (TensorFlow's graph runtime, oneDNN kernels)."""
    net = make_net()
    import tensorflow as tf

    function = tf.function(net, reduce_retracing=True)
    return lambda images: function(images).numpy()


@inference_path("auto")
def keras_auto_precision(make_net, workdir):
    """The keras path in the precision `stylize --precision=auto` picks on this machine:
    bfloat16 where the CPU has it natively (see perceptual_style/precision.py), else
    float32."""
    net = make_net()
    import tensorflow as tf

    from perceptual_style import precision
    from perceptual_style.transformer_net import INPUT_SHAPE, TransformerNet

    with precision.policy(precision.resolve("auto", "tensorflow")):
        chosen = TransformerNet.from_config({**net.get_config(), "dtype": None})
        chosen.build(INPUT_SHAPE)
    chosen.set_weights(net.get_weights())
    function = tf.function(chosen, reduce_retracing=True)
    return lambda images: function(images).numpy()


@inference_path("xla")
def keras_xla(make_net, workdir):
    """The same, compiled by XLA (`jit_compile=True`), one compilation per size."""
    net = make_net()
    import tensorflow as tf

    function = tf.function(net, jit_compile=True)
    return lambda images: function(images).numpy()


@inference_path("savedmodel")
def saved_model(make_net, workdir):
    """The exported SavedModel's `stylize_tensor` signature (what TensorFlow Serving runs)."""
    net = make_net()
    import tensorflow as tf

    from perceptual_style.export import export_style

    largest = max(w * h for w, h in sizes())
    _, path = export_style(net, os.path.join(workdir, "model"), max_pixels=largest)
    signature = tf.saved_model.load(path).signatures["stylize_tensor"]
    return lambda images: signature(images=tf.constant(images))["images"].numpy()


@inference_path("jax", backend="jax")
def jax_jit(make_net, workdir):
    """The Keras model on the JAX backend, `jax.jit` of its stateless call."""
    net = make_net()
    import jax

    trainable = [v.value for v in net.trainable_variables]
    non_trainable = [v.value for v in net.non_trainable_variables]
    function = jax.jit(lambda t, n, images: net.stateless_call(t, n, images)[0])
    return lambda images: np.asarray(function(trainable, non_trainable, images))


def litert_path(quantization):
    """A resizable LiteRT build of one quantization (perceptual_style/tflite.py), run by the
    LiteRT interpreter with XNNPACK and 2 threads, one image at a time as a phone would.
    Converted in a child process, so that this one holds only the interpreter: its memory
    is what a phone's app would need, not TensorFlow's and the converter's."""
    def build(make_net, workdir):
        from perceptual_style import tflite

        converted = in_subprocess(f"convert:{quantization}", folder=workdir)
        with open(converted["model"], "rb") as f:
            runner = tflite.Runner(f.read())
        return lambda images: np.stack([runner(image) for image in images])
    return build


def convert_litert(quantization):
    """The child process of litert_path: writes the seeded network's build beside its
    JSON answer, which names it."""
    from perceptual_style import tflite

    folder = os.path.dirname(FLAGS.worker_output)
    saved_model_dir = os.path.join(folder, "saved_model")
    tflite.write_saved_model(seeded_net(), saved_model_dir)
    path = os.path.join(folder, f"{quantization}.tflite")
    with open(path, "wb") as f:
        f.write(tflite.convert(saved_model_dir, quantization))
    return {"model": path}


for quantization in ("float32", "float16", "dynamic_int8"):
    inference_path(f"litert_{quantization}")(litert_path(quantization))


# --- Measuring, in worker processes ----------------------------------------------------

def sizes():
    """--sizes as [(width, height)]."""
    try:
        parsed = [tuple(int(v) for v in size.lower().split("x")) for size in FLAGS.sizes]
    except ValueError:
        parsed = []
    if not parsed or any(len(s) != 2 or min(s) < 4 for s in parsed):
        raise cli.CommandError(f"--sizes must be WIDTHxHEIGHT values of at least 4, got "
                               f"{','.join(FLAGS.sizes)}")
    return parsed


def reset_peak_memory():
    """Resets the kernel's peak resident memory count (VmHWM) of this process; False
    when the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_memory_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def timed(function, argument, warmup, repeats):
    for _ in range(warmup):
        function(argument)
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function(argument)
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds)), seconds


def configure_threads():
    if FLAGS.threads and os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)


def seeded_net():
    """Speed does not depend on the weights: an untrained network, the same every run."""
    import keras

    from perceptual_style.transformer_net import INPUT_SHAPE, TransformerNet

    keras.utils.set_random_seed(0)
    net = TransformerNet()
    net.build(INPUT_SHAPE)
    return net


def measure_inference(name):
    if not name.startswith("litert_"):  # LiteRT sets its own threads; no TensorFlow here
        configure_threads()
    rng = np.random.default_rng(0)
    results = {"path": name, "backend": PATHS[name][0], "sizes": [], "throughput": None}
    with tempfile.TemporaryDirectory() as workdir:
        run = PATHS[name][1](seeded_net, workdir)
        # Smallest first, so memory kept by an earlier size rarely sets a later peak.
        for width, height in sorted(sizes(), key=lambda s: s[0] * s[1]):
            images = rng.uniform(0, 255, (1, height, width, 3)).astype(np.float32)
            exact = reset_peak_memory()
            median, seconds = timed(run, images, FLAGS.warmup, FLAGS.repeats)
            results["sizes"].append({"width": width, "height": height, "seconds": median,
                                     "all_seconds": seconds, "peak_memory_mib": peak_memory_mib(),
                                     "peak_memory_per_size": exact})
        if FLAGS.batch:
            side = FLAGS.throughput_size
            images = rng.uniform(0, 255, (FLAGS.batch, side, side, 3)).astype(np.float32)
            median, _ = timed(run, images, FLAGS.warmup, FLAGS.repeats)
            results["throughput"] = {"batch": FLAGS.batch, "size": side,
                                     "images_per_second": FLAGS.batch / median}
    return results


def measure_training(backend):
    """Seconds per `train_on_batch` step of the trainer that train.py builds, on random
    images (the data pipeline is not timed), with the default loss of styles/*.flags."""
    configure_threads()
    import keras

    from perceptual_style.losses import PerceptualLoss
    from perceptual_style.trainer import StyleTransferTrainer
    from perceptual_style.transformer_net import TransformerNet
    from perceptual_style.vgg import build_loss_network

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    style_layers = {f"block{i}_conv1": 1.0 for i in range(1, 6)}
    loss = PerceptualLoss(build_loss_network(["block4_conv2", *style_layers]),
                          rng.uniform(0, 255, (256, 256, 3)), "block4_conv2", style_layers,
                          content_weight=1.0, style_weight=3e-5, tv_weight=1e-2)
    trainer = StyleTransferTrainer(TransformerNet(), loss)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    size = FLAGS.train_size
    batch = rng.uniform(0, 255, (FLAGS.train_batch, size, size, 3)).astype(np.float32)
    median, seconds = timed(trainer.train_on_batch, batch, 2, FLAGS.train_steps)
    return {"backend": backend, "size": size, "batch": FLAGS.train_batch,
            "seconds_per_step": median, "all_seconds": seconds,
            "images_per_second": FLAGS.train_batch / median}


def measure_peak():
    """GFLOP/s of a large float32 matmul, by numpy (its BLAS) and by TensorFlow."""
    import tensorflow as tf

    configure_threads()
    n = FLAGS.matmul_size
    a, b = (np.random.default_rng(i).standard_normal((n, n), np.float32) for i in (0, 1))
    flop = 2.0 * n ** 3
    numpy_seconds, _ = timed(lambda x: x @ b, a, 1, 3)
    ta, tb = tf.constant(a), tf.constant(b)
    tf_seconds, _ = timed(lambda x: tf.linalg.matmul(x, tb).numpy(), ta, 1, 3)
    return {"matmul_size": n, "numpy_gflops": flop / numpy_seconds / 1e9,
            "tensorflow_gflops": flop / tf_seconds / 1e9}


def worker(kind):
    task, _, name = kind.partition(":")
    if task == "inference":
        return measure_inference(name)
    if task == "train":
        return measure_training(name)
    if task == "peak":
        return measure_peak()
    if task == "convert":
        return convert_litert(name)
    raise cli.CommandError(f"unknown --worker {kind}")


FORWARDED = ("sizes", "repeats", "warmup", "batch", "throughput_size", "train_steps",
             "train_size", "train_batch", "matmul_size", "threads")


def in_subprocess(kind, backend="tensorflow", folder=None):
    """Runs `worker(kind)` in a fresh Python process on `backend`; returns its JSON. Its
    answer is written in `folder` (default: a temporary one), where it may leave files."""
    with contextlib.ExitStack() as stack:
        tmp = folder or stack.enter_context(tempfile.TemporaryDirectory())
        output = os.path.join(tmp, "result.json")
        command = [sys.executable, os.path.abspath(__file__), f"--worker={kind}",
                   f"--worker_output={output}"]
        command += [f"--{name}={FLAGS[name].serialize().split('=', 1)[1]}" for name in FORWARDED]
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode or not os.path.isfile(output):
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise cli.CommandError(f"{kind} on {backend} failed: {last}")
        with open(output) as f:
            return json.load(f)


# --- Reporting -------------------------------------------------------------------------

def machine():
    import keras

    from perceptual_style import precision

    versions = {"python": platform.python_version(), "keras": keras.__version__}
    for module in ("tensorflow", "jax"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            pass
    return {"cpu": precision.cpu_model(), "cores": os.cpu_count(),
            "description": precision.machine_description(),
            "native_bf16": precision.native_bf16(), "versions": versions,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def output_path(stem, extension):
    return os.path.join(FLAGS.output_dir, f"{stem}{FLAGS.tag and '-' + FLAGS.tag}.{extension}")


def plot_latency(inference, path):
    try:
        import matplotlib
    except ImportError:  # the measurements are in the JSON; the plot is the `bench` extra's
        print('benchmark: no latency plot: matplotlib is not installed (pip install -e ".[bench]")',
              file=sys.stderr)
        return

    matplotlib.use("Agg")
    from matplotlib import pyplot

    from perceptual_style.atomic import atomic_write

    figure, axes = pyplot.subplots(figsize=(7, 4.5), dpi=100)
    for result in inference:
        points = sorted((s["width"] * s["height"] / 1e6, s["seconds"]) for s in result["sizes"])
        axes.plot(*zip(*points), marker="o", label=result["path"])
    axes.set_xlabel("megapixels")
    axes.set_ylabel("seconds per image (median)")
    axes.set_title("Transformer network inference latency")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    atomic_write(path, lambda f: figure.savefig(f, format="png"))
    pyplot.close(figure)


def speed():
    from perceptual_style.flops import multiply_accumulates

    sizes()  # a bad --sizes fails before any work
    paths = FLAGS.paths or list(PATHS)
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        raise cli.CommandError(f"unknown --paths {unknown}; choose from {sorted(PATHS)}")
    net = seeded_net()
    macs = {f"{w}x{h}": multiply_accumulates(net, h, w) for w, h in sizes()}
    peak = in_subprocess("peak")
    peak_gflops = max(peak["numpy_gflops"], peak["tensorflow_gflops"])
    inference = []
    for name in paths:
        print(f"measuring {name} ...", flush=True)
        result = in_subprocess(f"inference:{name}", PATHS[name][0])
        for s in result["sizes"]:
            s["gflops"] = 2 * macs[f"{s['width']}x{s['height']}"] / s["seconds"] / 1e9
            s["fraction_of_peak"] = s["gflops"] / peak_gflops
        inference.append(result)
    training = []
    for backend in FLAGS.train_backends:
        print(f"training on {backend} ...", flush=True)
        training.append(in_subprocess(f"train:{backend}", backend))
    report = {"machine": machine(), "peak": peak, "peak_gflops": peak_gflops,
              "multiply_accumulates": macs, "inference": inference, "training": training}
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    saved_nets.write_json(output_path("speed", "json"), report)
    if inference:
        plot_latency(inference, output_path("latency", "png"))
    print_speed(report)


def print_speed(report):
    m = report["machine"]
    print(f"\n{m['description']}; {', '.join(f'{k} {v}' for k, v in m['versions'].items())}")
    p = report["peak"]
    print(f"Peak: {p['matmul_size']}x{p['matmul_size']} float32 matmul, numpy "
          f"{p['numpy_gflops']:.1f} GFLOP/s, TensorFlow {p['tensorflow_gflops']:.1f} GFLOP/s\n")
    print("| path | size | GMAC | median s | peak memory MiB | GFLOP/s | of peak |")
    print("|---|---|---|---|---|---|---|")
    for r in report["inference"]:
        for s in r["sizes"]:
            key = f"{s['width']}x{s['height']}"
            print(f"| {r['path']} | {key} | {report['multiply_accumulates'][key] / 1e9:.1f} "
                  f"| {s['seconds']:.3f} | {s['peak_memory_mib']:.0f} | {s['gflops']:.1f} "
                  f"| {100 * s['fraction_of_peak']:.0f}% |")
    throughput = [r for r in report["inference"] if r["throughput"]]
    if throughput:
        print("\n| path | batch | images/s |")
        print("|---|---|---|")
        for r in throughput:
            t = r["throughput"]
            print(f"| {r['path']} | {t['batch']} x {t['size']}x{t['size']} "
                  f"| {t['images_per_second']:.2f} |")
    if report["training"]:
        print("\n| backend | batch | s/step | images/s |")
        print("|---|---|---|---|")
        for t in report["training"]:
            print(f"| {t['backend']} | {t['batch']} x {t['size']}x{t['size']} "
                  f"| {t['seconds_per_step']:.2f} | {t['images_per_second']:.2f} |")


# --- Quality against pixel optimization ------------------------------------------------

def quality():
    import keras

    from perceptual_style.data import list_images
    from perceptual_style.images import load_rgb
    from perceptual_style.optimize import OPTIMIZERS, optimize_image
    from perceptual_style.style_flags import saved_style_loss

    try:
        counts = sorted({int(i) for i in FLAGS.iterations})
    except ValueError:
        raise cli.CommandError(f"--iterations must be integers, got {FLAGS.iterations}") from None
    if not counts or counts[0] < 1:
        raise cli.CommandError("--iterations must be positive")
    unknown = sorted(set(FLAGS.optimizers) - set(OPTIMIZERS))
    if unknown:
        raise cli.CommandError(f"unknown --optimizers {unknown}; choose from {list(OPTIMIZERS)}")
    cli.require("photos")
    saved_dir = saved_nets.find_saved_dir(FLAGS.saved_dir)
    net = saved_nets.load_transformer(FLAGS.style, saved_dir)
    metadata = saved_nets.load_metadata(FLAGS.style, saved_dir)
    loss = saved_style_loss(metadata)
    files = list_images(FLAGS.photos)[: FLAGS.num_photos]
    photos = [load_rgb(f, shorter_side=FLAGS.image_size).astype(np.float32) for f in files]
    # The network is timed on the compiled path of this backend, after a warm-up.
    run = PATHS["jax" if keras.backend.backend() == "jax" else "keras"][1](lambda: net, None)
    rows = []
    for path, photo in zip(files, photos):
        content = photo[None]
        target = loss.content_target(content)
        network_seconds, _ = timed(run, content, 1, 3)
        stylized = run(content)
        row = {"photo": os.path.basename(path), "height": photo.shape[0], "width": photo.shape[1],
               "photo_loss": float(loss(content, target)["total"]),
               "network": {"seconds": network_seconds,
                           "loss": float(loss(stylized, target)["total"])}}
        for optimizer in FLAGS.optimizers:
            print(f"{os.path.basename(path)}: {optimizer} for {counts[-1]} iterations ...",
                  flush=True)
            _, history = optimize_image(loss, photo, counts[-1], optimizer, verbose=True)
            row[optimizer] = {str(count): {"seconds": history[min(count, len(history) - 1)][0],
                                           "loss": history[min(count, len(history) - 1)][1],
                                           "iterations_run": min(count, len(history) - 1)}
                              for count in counts}
        rows.append(row)
    report = {"machine": machine(), "style": FLAGS.style, "steps": metadata.get("steps"),
              "image_size": FLAGS.image_size, "photos": rows, "iterations": counts,
              "optimizers": FLAGS.optimizers}
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    saved_nets.write_json(output_path("quality", "json"), report)
    print_quality(report)


def print_quality(report):
    rows = report["photos"]
    print(f"\nStyle {report['style']} (trained {report['steps']} steps); {len(rows)} held-out "
          f"photos, shorter side {report['image_size']}; total perceptual loss (mean over the "
          "photos) and seconds per photo\n")
    print("| method | total loss | loss / network's | seconds | time / network's |")
    print("|---|---|---|---|---|")
    network_loss = np.mean([r["network"]["loss"] for r in rows])
    network_seconds = np.mean([r["network"]["seconds"] for r in rows])
    print(f"| photo itself | {np.mean([r['photo_loss'] for r in rows]):.4g} "
          f"| {np.mean([r['photo_loss'] for r in rows]) / network_loss:.2f} | — | — |")
    print(f"| network | {network_loss:.4g} | 1.00 | {network_seconds:.3f} | 1x |")
    for optimizer in report["optimizers"]:
        for count in report["iterations"]:
            cells = [r[optimizer][str(count)] for r in rows]
            value = np.mean([c["loss"] for c in cells])
            seconds = np.mean([c["seconds"] for c in cells])
            print(f"| {optimizer} {count} iterations | {value:.4g} | {value / network_loss:.2f} "
                  f"| {seconds:.1f} | {seconds / network_seconds:.0f}x |")


def main(argv):
    try:
        if FLAGS.worker:
            result = worker(FLAGS.worker)
            with open(FLAGS.worker_output, "w") as f:
                json.dump(result, f)
        elif FLAGS.quality:
            quality()
        else:
            speed()
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"benchmark: error: {e}")
    return 0


if __name__ == "__main__":
    cli.run(main, "benchmark")
