"""Speed, memory and quality of the transformer network: the README's numbers come from here.

    python tools/benchmark.py [--sizes=256x256,1024x1024] [--paths=keras,xla] [--repeats=3]
    python tools/benchmark.py --quality [--style=snight] [--iterations=50,100,200,500]

Speed: each inference path (see PATHS) runs in its own process, so one path's memory and
compiled code never affect another's. The processes live together and are asked for their
timed runs in turn, so that whatever else slows the machine slows every path alike; per
size each records the median latency of --repeats runs after --warmup runs and its peak
resident memory (VmHWM, reset before each size), plus the throughput of each of --batches
at --throughput_size. TensorFlow's paths import it as the commands do, without what it
would import for nothing here (cli.SKIPPED_BY_TENSORFLOW): their memory is a core
install's, whichever extras are installed. The peer, our network in PyTorch
(tools/torch_peer.py, the `peer` extra), is measured the same way, and every path's times
are also given as a ratio to the peer's (torch_compile, else torch). Training runs a few
steps per backend, in a process each. The convolutions' multiply-accumulates
(perceptual_style/flops.py) turn latencies into GFLOP/s, compared with the peak of the
precision the path computes in, measured in the same run by large matmuls. --isa=avx2
runs it all as on a CPU without AVX-512 (ISA_CAPS). Prints the CPU's flags and markdown
tables, and writes `<output_dir>/speed<tag>.json` and a plot of latency against megapixels
(the `bench` extra; without it, a notice).

Quality (--quality): on held-out photos, a trained network's total perceptual loss (the
weights it was trained with, from its metadata) and time, against Gatys et al.'s
optimization of the pixels (perceptual_style/optimize.py) after each of --iterations.
Writes `<output_dir>/quality<tag>.json`.

Timings are only meaningful on an otherwise idle machine: pause other jobs while it runs.
As the paths' processes live at once, the memory they hold adds up: measure fewer --paths
at a time where it is short.
"""

import collections
import contextlib
import importlib.util
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
flags.DEFINE_list("batches", ["1", "4", "16"], "Batch sizes of the throughput measurement "
                  "(empty: none).")
flags.DEFINE_integer("throughput_size", 512, "Square side of the throughput images.",
                     lower_bound=16)
flags.DEFINE_list("train_backends", ["tensorflow", "jax"], "Backends whose training step is "
                  "timed (empty: none).")
flags.DEFINE_integer("train_steps", 3, "Timed training steps (after 2 untimed ones).",
                     lower_bound=1)
flags.DEFINE_integer("train_size", 256, "Side of the square training crops.", lower_bound=16)
flags.DEFINE_integer("train_batch", 4, "Training batch size.", lower_bound=1)
flags.DEFINE_integer("matmul_size", 4096, "Side of the matmuls that measure the peaks.",
                     lower_bound=64)
flags.DEFINE_integer("threads", 0, "Intra-op threads of TensorFlow and PyTorch (0: one per "
                     "core, TensorFlow's default).", lower_bound=0)
flags.DEFINE_enum("isa", "native", ["native", "avx2"], "Vector instructions the kernels may "
                  "use: avx2 caps oneDNN, PyTorch and XLA at AVX2 (see ISA_CAPS), to measure "
                  "an AVX2-only CPU on a newer one.")
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
flags.DEFINE_string("worker_output", None, "Internal: where a worker writes its JSON (an "
                    "inference worker answers on its stdout instead).")
FLAGS = flags.FLAGS


# --- Inference paths -------------------------------------------------------------------
# A path is a function (make_net, workdir) -> run, where make_net() builds the network and
# run(images) takes float32 numpy images (batch, height, width, 3) in [0, 255] and returns
# the stylized images as numpy (so the work is finished when it returns). Registering one
# more path is one decorated function. `needs`: (module, extra) of a path that needs an
# optional dependency; without it the path is skipped, or refused when asked for by name.
# `precision`: what its multiplies mostly compute in, whose peak its GFLOP/s are compared
# with ("auto": what precision.resolve picks here). `capped`: whether its kernels honour
# --isa (LiteRT's XNNPACK picks its own).
Path = collections.namedtuple("Path", "backend build needs precision capped")
PATHS = {}
PEERS = ("torch_compile", "torch")  # the ratios' reference: the first of these measured
# --isa: the environment that caps each runtime's vector instructions, for every process
# of the run (oneDNN in TensorFlow and PyTorch, PyTorch's own and Inductor's kernels, XLA).
ISA_CAPS = {"native": {},
            "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
                     "XLA_FLAGS": "--xla_cpu_max_isa=AVX2"}}


def inference_path(name, backend="tensorflow", needs=None, precision="float32", capped=True):
    def register(build):
        PATHS[name] = Path(backend, build, needs, precision, capped)
        return build
    return register


@inference_path("keras")
def keras_tf_function(make_net, workdir):
    """The Keras model traced by tf.function (TensorFlow's graph runtime, oneDNN kernels)."""
    net = make_net()
    import tensorflow as tf

    function = tf.function(net, reduce_retracing=True)
    return lambda images: function(images).numpy()


@inference_path("auto", precision="auto")
def keras_auto_precision(make_net, workdir):
    """What `stylize --precision=auto` runs for a photo that needs no tiling: the network
    in the precision auto picks on this machine (bfloat16 where the CPU has it natively,
    see perceptual_style/precision.py, else float32), through tiling.forward, stylize's
    own compiled pass (with its weights as constants in float32, see
    perceptual_style/frozen.py). The seeded network is built in that precision, as
    stylize loads a network: one network, not a float32 one beside it."""
    from perceptual_style import precision, tiling

    with precision.policy(precision.resolve("auto", "tensorflow")):
        net = make_net()
    function = tiling.forward(net)
    # tiling.forward's graph holds the network weakly: the path holds it.
    return lambda images, network=net: function(images).numpy()


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


@inference_path("jax", backend="jax", needs=("jax", "jax"))
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
    inference_path(f"litert_{quantization}", needs=("ai_edge_litert", "tflite"),
                   precision="int8" if quantization == "dynamic_int8" else "float32",
                   capped=False)(litert_path(quantization))


def torch_path(compiled):
    """The peer: our network written in PyTorch (tools/torch_peer.py) with the seeded
    weights, under torch.inference_mode(), channels-last (the memory order of our NHWC
    images, so nothing is copied in or out). A child process stores the weights, so that
    this one holds PyTorch alone, not TensorFlow. `compiled`: by torch.compile (Inductor's
    default mode, not max-autotune) with freezing (weights folded in as constants), one
    compilation per shape as for xla."""
    def build(make_net, workdir):
        import torch
        import torch_peer

        net = torch_peer.load(in_subprocess("store", folder=workdir)["style"])
        net = net.to(memory_format=torch.channels_last)
        if compiled:
            import torch._inductor.config

            torch._inductor.config.freezing = True
            # A compilation per size and per batch: past the limit, torch.compile
            # would fall back to eager with no more than a warning.
            torch._dynamo.config.recompile_limit = len(sizes()) + len(batches())
            net = torch.compile(net, dynamic=False)

        def run(images):
            with torch.inference_mode():
                # An NCHW view of NHWC memory: channels-last, as the network is.
                stylized = net(torch.from_numpy(images).permute(0, 3, 1, 2))
                return stylized.permute(0, 2, 3, 1).numpy()
        return run
    return build


def store_seeded_net():
    """The child process of torch_path: stores the seeded network as a trained style beside
    its JSON answer, which names it."""
    folder = os.path.join(os.path.dirname(FLAGS.worker_output), "seeded")
    saved_nets.save_transformer(seeded_net(), folder)
    return {"style": folder}


inference_path("torch", backend="torch", needs=("torch", "peer"))(torch_path(compiled=False))
inference_path("torch_compile", backend="torch", needs=("torch", "peer"))(
    torch_path(compiled=True))


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


def batches():
    """--batches as [int]."""
    try:
        parsed = [int(b) for b in FLAGS.batches]
    except ValueError:
        parsed = [0]
    if any(b < 1 for b in parsed):
        raise cli.CommandError(f"--batches must be positive integers, got "
                               f"{','.join(FLAGS.batches)}")
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


def seconds_of(function, argument):
    started = time.perf_counter()
    function(argument)
    return time.perf_counter() - started


def timed(function, argument, warmup, repeats):
    for _ in range(warmup):
        function(argument)
    seconds = [seconds_of(function, argument) for _ in range(repeats)]
    return float(np.median(seconds)), seconds


def configure_threads():
    """--threads for this process's backend (KERAS_BACKEND, set by worker_command). PyTorch
    defaults to one thread per physical core: it gets one per core, as TensorFlow has."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend == "torch":
        import torch

        torch.set_num_threads(FLAGS.threads or os.cpu_count())
    elif FLAGS.threads and backend == "tensorflow":
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


def serve_inference(name):
    """A path's process: builds the path, then answers the parent's requests (Worker.ask),
    one JSON line each, until its stdin closes. ["images", batch, width, height]: random
    images of that shape, the peak memory reset, the warm-up runs; ["time"]: one timed run;
    ["summary"]: the median of the runs timed since, and the peak memory."""
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # what the libraries print goes to stderr, not among the answers
    if not name.startswith("litert_"):  # LiteRT sets its own threads; no TensorFlow here
        configure_threads()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as workdir:
        run = PATHS[name].build(seeded_net, workdir)
        for line in sys.stdin:
            request, *arguments = json.loads(line)
            if request == "images":
                batch, width, height = arguments
                images = rng.uniform(0, 255, (batch, height, width, 3)).astype(np.float32)
                seconds, exact = [], reset_peak_memory()
                for _ in range(FLAGS.warmup):
                    run(images)
                answer = {}
            elif request == "time":
                seconds.append(seconds_of(run, images))
                answer = {}
            else:
                answer = {"seconds": float(np.median(seconds)), "all_seconds": seconds,
                          "peak_memory_mib": peak_memory_mib(), "peak_memory_per_size": exact}
            answers.write(json.dumps(answer) + "\n")
            answers.flush()


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
    """What large matmuls reach here, the most each precision's multiplies can: float32
    (GFLOP/s) by numpy (its BLAS) and by TensorFlow, bfloat16 by TensorFlow (oneDNN) where
    the CPU has it natively (under an ISA cap below it, TensorFlow's bfloat16 matmul
    crashes), and, where PyTorch is installed, int8 into int32 (GOP/s) by its `_int_mm`."""
    import tensorflow as tf

    from perceptual_style.precision import native_bf16

    configure_threads()
    n = FLAGS.matmul_size
    a, b = (np.random.default_rng(i).standard_normal((n, n), np.float32) for i in (0, 1))
    flop = 2.0 * n ** 3
    numpy_seconds, _ = timed(lambda x: x @ b, a, 1, 3)
    ta, tb = tf.constant(a), tf.constant(b)
    tf_seconds, _ = timed(lambda x: tf.linalg.matmul(x, tb).numpy(), ta, 1, 3)
    peak = {"matmul_size": n, "numpy_gflops": flop / numpy_seconds / 1e9,
            "tensorflow_gflops": flop / tf_seconds / 1e9}
    if native_bf16():
        ha, hb = tf.cast(ta, tf.bfloat16), tf.cast(tb, tf.bfloat16)
        bf16_seconds, _ = timed(lambda x: tf.linalg.matmul(x, hb).numpy(), ha, 1, 3)
        peak["tensorflow_bfloat16_gflops"] = flop / bf16_seconds / 1e9
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(FLAGS.threads or os.cpu_count())

        def int8_matmul(side):
            ia, ib = (torch.from_numpy(np.random.default_rng(i).integers(-128, 128, (side, side),
                                                                         np.int8))
                      for i in (0, 1))
            return timed(lambda x: torch._int_mm(x, ib), ia, 1, 3)[0]

        # Without VNNI, _int_mm is a plain loop (1.6 GOP/s on 2 AVX2 cores: one 4096 matmul
        # took 86 s), so the side doubles from 512 only while a matmul takes under 0.2 s.
        side = min(512, n)
        int8_seconds = int8_matmul(side)
        while side < n and int8_seconds < 0.2:
            side = min(2 * side, n)
            int8_seconds = int8_matmul(side)
        peak["torch_int8_gops"] = 2.0 * side ** 3 / int8_seconds / 1e9
        peak["int8_matmul_size"] = side
    return peak


def peaks(peak):
    """{precision: the most its multiplies reached in `peak` (measure_peak)}."""
    return {"float32": max(peak["numpy_gflops"], peak["tensorflow_gflops"]),
            "bfloat16": peak.get("tensorflow_bfloat16_gflops"),
            "int8": peak.get("torch_int8_gops")}


def worker(kind):
    task, _, name = kind.partition(":")
    if os.environ["KERAS_BACKEND"] != "torch" and not name.startswith("litert_"):
        cli.import_quietly(["keras"])  # as the commands import it (see the docstring)
    if task == "inference":
        return serve_inference(name)
    if task == "train":
        return measure_training(name)
    if task == "peak":
        return measure_peak()
    if task == "convert":
        return convert_litert(name)
    if task == "store":
        return store_seeded_net()
    raise cli.CommandError(f"unknown --worker {kind}")


FORWARDED = ("sizes", "repeats", "warmup", "batches", "throughput_size", "train_steps",
             "train_size", "train_batch", "matmul_size", "threads")


def worker_command(kind, backend, *extra):
    """(command, environment) of a fresh Python process that runs `worker(kind)` on
    `backend`."""
    command = [sys.executable, os.path.abspath(__file__), f"--worker={kind}", *extra]
    command += [f"--{name}={FLAGS[name].serialize().split('=', 1)[1]}" for name in FORWARDED]
    return command, {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}


def failure(kind, backend, stderr):
    return cli.CommandError(f"{kind} on {backend} failed: "
                            f"{(stderr.strip().splitlines() or ['no output'])[-1]}")


def in_subprocess(kind, backend="tensorflow", folder=None):
    """Runs `worker(kind)` in a fresh Python process on `backend`; returns its JSON. Its
    answer is written in `folder` (default: a temporary one), where it may leave files."""
    with contextlib.ExitStack() as stack:
        tmp = folder or stack.enter_context(tempfile.TemporaryDirectory())
        output = os.path.join(tmp, "result.json")
        command, env = worker_command(kind, backend, f"--worker_output={output}")
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode or not os.path.isfile(output):
            raise failure(kind, backend, done.stderr)
        with open(output) as f:
            return json.load(f)


class Worker:
    """A path's process (serve_inference), kept alive so that the paths can be asked for
    their runs in turn."""

    def __init__(self, name):
        self.kind, self.backend = f"inference:{name}", PATHS[name].backend
        # Its stderr goes to a file: a pipe read by no one could fill up and block it.
        self.log = tempfile.TemporaryFile("w+")
        command, env = worker_command(self.kind, self.backend)
        self.process = subprocess.Popen(command, env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.log, text=True)

    def ask(self, *request):
        """The answer to one request; a one-line CommandError naming the path if the
        process has died."""
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            answer = self.process.stdout.readline()
        except BrokenPipeError:
            answer = ""
        if not answer:
            self.process.wait()
            self.log.seek(0)
            raise failure(self.kind, self.backend, self.log.read())
        return json.loads(answer)

    def __enter__(self):
        return self

    def __exit__(self, error, *_):
        """Ends the process: at the end of its stdin, or killed when measuring failed."""
        if error is not None:
            self.process.kill()
        with contextlib.suppress(BrokenPipeError):  # a request it died before reading
            self.process.stdin.close()
        self.process.wait()
        self.log.close()


def measure_inference(names):
    """Every path's latency per size and throughput, measured in turn (round robin): each
    path's process makes its warm-up runs, then each makes one timed run, then each again,
    --repeats times."""
    with contextlib.ExitStack() as stack:
        workers = [stack.enter_context(Worker(name)) for name in names]

        def interleaved(batch, width, height):
            for w in workers:
                w.ask("images", batch, width, height)
            for _ in range(FLAGS.repeats):
                for w in workers:
                    w.ask("time")
            return [w.ask("summary") for w in workers]

        results = [{"path": name, "backend": PATHS[name].backend, "sizes": [],
                    "throughput": []} for name in names]
        # Smallest first, so memory kept by an earlier size rarely sets a later peak.
        for width, height in sorted(sizes(), key=lambda s: s[0] * s[1]):
            print(f"measuring {width}x{height} ...", flush=True)
            for result, summary in zip(results, interleaved(1, width, height)):
                result["sizes"].append({"width": width, "height": height, **summary})
        side = FLAGS.throughput_size
        for batch in sorted(batches()):
            print(f"measuring batches of {batch} x {side}x{side} ...", flush=True)
            for result, summary in zip(results, interleaved(batch, side, side)):
                result["throughput"].append({"batch": batch, "size": side, **summary,
                                             "images_per_second": batch / summary["seconds"]})
    return results


def compare_with_peer(inference):
    """Adds to every path's sizes and batches its time over the peer's (torch_compile, else
    torch), measured in the same run; returns the peer's name, or None when none was
    measured."""
    by_path = {r["path"]: r for r in inference}
    peer = next((name for name in PEERS if name in by_path), None)
    if peer:
        for result in inference:
            for key in ("sizes", "throughput"):
                for s, reference in zip(result[key], by_path[peer][key]):
                    s["vs_peer"] = s["seconds"] / reference["seconds"]
    return peer


# --- Reporting -------------------------------------------------------------------------

def machine():
    import keras

    from perceptual_style import precision

    versions = {"python": platform.python_version(), "keras": keras.__version__}
    for module in ("tensorflow", "jax", "torch"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            pass
    vector = ("sse", "avx", "fma", "f16c", "amx")
    return {"cpu": precision.cpu_model(), "cores": os.cpu_count(),
            "description": precision.machine_description(),
            "cpu_flags": sorted(f for f in precision.cpu_flags() if f.startswith(vector)),
            "isa": FLAGS.isa, "isa_cap": {name: os.environ[name] for name in sorted(
                {n for cap in ISA_CAPS.values() for n in cap}) if name in os.environ},
            "native_bf16": precision.native_bf16(), "versions": versions,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def output_path(stem, extension):
    return os.path.join(FLAGS.output_dir, f"{stem}{FLAGS.tag and '-' + FLAGS.tag}.{extension}")


def plot_latency(inference, machine, path):
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
        axes.plot(*zip(*points), marker="o", label=f"{result['path']} ({result['precision']})")
    axes.set_xlabel("megapixels")
    axes.set_ylabel("seconds per image (median)")
    capped = f", capped at {machine['isa'].upper()}" if machine["isa"] != "native" else ""
    axes.set_title(f"Transformer network inference latency\n{machine['description']}{capped}",
                   fontsize=10)
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    atomic_write(path, lambda f: figure.savefig(f, format="png"))
    pyplot.close(figure)


def chosen_paths():
    """--paths (default: all), less those whose optional dependency is not installed and,
    under an --isa cap, those whose kernels do not honour it, each skipped with a notice;
    one named in --paths is refused instead, in one line."""
    paths = FLAGS.paths or list(PATHS)
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        raise cli.CommandError(f"unknown --paths {unknown}; choose from {sorted(PATHS)}")
    chosen = []
    for name in paths:
        needs = PATHS[name].needs
        if ISA_CAPS[FLAGS.isa] and not PATHS[name].capped:
            notice = f"its kernels take no ISA cap (--isa={FLAGS.isa})"
            refusal = f"path {name}: {notice}"
        elif needs is not None and importlib.util.find_spec(needs[0]) is None:
            module, extra = needs
            install = f'pip install -e ".[{extra}]"'
            refusal = f"path {name} needs {module}, which is not installed ({install})"
            notice = f"{module} is not installed ({install})"
        else:
            chosen.append(name)
            continue
        if FLAGS.paths:
            raise cli.CommandError(refusal)
        print(f"benchmark: skipping path {name}: {notice}", file=sys.stderr)
    return chosen


def cap_isa():
    """Sets --isa's environment (ISA_CAPS) here, before any runtime loads, and so in every
    process this one starts."""
    for name, value in ISA_CAPS[FLAGS.isa].items():
        os.environ[name] = (f"{os.environ.get(name, '')} {value}".strip() if name == "XLA_FLAGS"
                            else value)


def speed():
    from perceptual_style import precision
    from perceptual_style.flops import multiply_accumulates

    sizes(), batches()  # bad values fail before any work
    cap_isa()
    paths = chosen_paths()
    net = seeded_net()
    macs = {f"{w}x{h}": multiply_accumulates(net, h, w) for w, h in sizes()}
    peak = in_subprocess("peak")
    reached = peaks(peak)
    inference = measure_inference(paths) if paths else []
    for result in inference:
        computes = PATHS[result["path"]].precision
        result["precision"] = (precision.resolve(computes, result["backend"])
                               if computes == "auto" else computes)
        for s in result["sizes"]:
            s["gflops"] = 2 * macs[f"{s['width']}x{s['height']}"] / s["seconds"] / 1e9
            top = reached[result["precision"]]
            s["fraction_of_peak"] = s["gflops"] / top if top else None
    peer = compare_with_peer(inference)
    training = []
    for backend in FLAGS.train_backends:
        print(f"training on {backend} ...", flush=True)
        training.append(in_subprocess(f"train:{backend}", backend))
    report = {"machine": machine(), "peak": peak, "peaks": reached,
              "multiply_accumulates": macs, "inference": inference, "peer": peer,
              "training": training}
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    saved_nets.write_json(output_path("speed", "json"), report)
    if inference:
        plot_latency(inference, report["machine"], output_path("latency", "png"))
    print_speed(report)


def print_speed(report):
    m = report["machine"]
    print(f"\n{m['description']}; {', '.join(f'{k} {v}' for k, v in m['versions'].items())}")
    print(f"CPU flags: {' '.join(m['cpu_flags'])}")
    if m["isa_cap"]:
        emulated = (f" (--isa={m['isa']}: emulating a CPU without the wider instructions)"
                    if m["isa"] != "native" else "")
        print(f"ISA caps in effect{emulated}: "
              f"{' '.join(f'{k}={v}' for k, v in m['isa_cap'].items())}")
    p, reached = report["peak"], report["peaks"]
    print(f"Peak, {p['matmul_size']}x{p['matmul_size']} matmuls: float32 numpy "
          f"{p['numpy_gflops']:.1f}, TensorFlow {p['tensorflow_gflops']:.1f} GFLOP/s"
          + (f"; bfloat16 TensorFlow {reached['bfloat16']:.1f} GFLOP/s" if reached["bfloat16"]
             else "")
          + (f"; int8 PyTorch {reached['int8']:.1f} GOP/s ({p['int8_matmul_size']}x"
             f"{p['int8_matmul_size']})" if reached["int8"] else "") + "\n")
    peer = report["peer"]
    print("| path | size | GMAC | median s | peak memory MiB | GFLOP/s | of its precision's peak |"
          + (f" time / {peer}'s |" if peer else ""))
    print("|---" * (8 if peer else 7) + "|")
    for r in report["inference"]:
        for s in r["sizes"]:
            key = f"{s['width']}x{s['height']}"
            fraction = s["fraction_of_peak"]
            print(f"| {r['path']} ({r['precision']}) | {key} "
                  f"| {report['multiply_accumulates'][key] / 1e9:.1f} | {s['seconds']:.3f} "
                  f"| {s['peak_memory_mib']:.0f} | {s['gflops']:.1f} "
                  f"| {'—' if fraction is None else f'{100 * fraction:.0f}%'} |"
                  + (f" {s['vs_peer']:.2f} |" if peer else ""))
    throughput = [r for r in report["inference"] if r["throughput"]]
    if throughput:
        print("\n| path | batch | images/s | peak memory MiB |"
              + (f" time / {peer}'s |" if peer else ""))
        print("|---" * (5 if peer else 4) + "|")
        for r in throughput:
            for t in r["throughput"]:
                print(f"| {r['path']} | {t['batch']} x {t['size']}x{t['size']} "
                      f"| {t['images_per_second']:.2f} | {t['peak_memory_mib']:.0f} |"
                      + (f" {t['vs_peer']:.2f} |" if peer else ""))
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
    run = PATHS["jax" if keras.backend.backend() == "jax" else "keras"].build(lambda: net, None)
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
            if FLAGS.worker_output:
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
