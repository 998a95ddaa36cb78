"""Distributed training end to end, in subprocesses on CPU at tiny sizes: a two-worker
MultiWorkerMirroredStrategy cluster on loopback ports, MirroredStrategy over two logical CPU
devices, and Keras' DataParallel over two JAX host devices."""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import HANG_TIMEOUT, REPO, run_cli, write_photos
from perceptual_style.checkpoint import checkpoint_path, checkpoint_step
from perceptual_style.distribute import DistributeError, cluster_config, is_chief
from perceptual_style.saved_nets import load_metadata
from test_train_cli import last_line, tiny_args

STEPS = 10  # cluster runs; a killed one must have checkpointed before this
TENSORFLOW = {"KERAS_BACKEND": "tensorflow", "PYTHONUNBUFFERED": "1"}
JAX = {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
CLUSTER_FLAGS = dict(strategy="multi_worker", batch_size=4, scale_learning_rate=True, log_every=1)

# A worker: the training CLI, plus its transformer weights saved to $DUMP_WEIGHTS after
# fit, since workers other than the chief write nothing of their own.
WORKER = """
import os, runpy, sys
import numpy as np
from perceptual_style.trainer import StyleTransferTrainer

fit = StyleTransferTrainer.fit

def fit_and_dump(self, *args, **kwargs):
    result = fit(self, *args, **kwargs)
    np.savez(os.environ["DUMP_WEIGHTS"], *self.transformer.get_weights())
    return result

StyleTransferTrainer.fit = fit_and_dump
sys.argv = ["train"] + sys.argv[1:]
runpy.run_module("perceptual_style.train", run_name="__main__")
"""

# TensorFlow with two logical CPU devices, set before it initializes, then the CLI.
TWO_CPUS = """
import runpy, sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.argv = ["train"] + sys.argv[1:]
runpy.run_module("perceptual_style.train", run_name="__main__")
"""

# The CLI on JAX with TensorFlow unimportable, as on a GPU machine that has only JAX.
JAX_ONLY = """
import runpy, sys
sys.path.insert(0, "tests")
import no_tensorflow
sys.argv = ["train"] + sys.argv[1:]
try:
    runpy.run_module("perceptual_style.train", run_name="__main__")
finally:
    print("tensorflow imported:", "tensorflow" in sys.modules)
"""


def make_workdir(folder):
    """Photos and a checkered style image, laid out as `tiny_args` expects."""
    folder.mkdir(parents=True, exist_ok=True)
    write_photos(folder / "photos")
    y, x = np.mgrid[0:64, 0:64]
    checks = np.stack([((x // 8 + y // 8) % 2) * 230, (y % 6 < 3) * 180, np.full((64, 64), 50)], -1)
    Image.fromarray(checks.astype(np.uint8)).save(folder / "stripes.png")
    return folder


def outputs_in(run):
    """`tiny_args` overrides that send a run's outputs to a folder of its own."""
    return {"saved_dir": run / "savedNets", "checkpoint_dir": run / "checkpoints",
            "tensorboard_dir": run / "logs", "images_dir": run / "images"}


def flags_of(args):
    return args[1:]  # tiny_args starts with the module name


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class Cluster:
    """Workers on loopback ports, each the CLI with its own arguments; their output goes to
    files (a pipe left unread could block them), and any still running is killed on exit."""

    def __init__(self, folder, worker_args):
        self.folder = folder
        addresses = [f"127.0.0.1:{port}" for port in free_ports(len(worker_args))]
        self.processes, self.logs = [], []
        for index, args in enumerate(worker_args):
            tf_config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
            env = {**os.environ, **TENSORFLOW, "TF_CONFIG": json.dumps(tf_config),
                   "DUMP_WEIGHTS": str(self.dump(index))}
            log = open(folder / f"worker{index}.log", "w")
            self.logs.append(log)
            self.processes.append(subprocess.Popen(
                [sys.executable, "-c", WORKER, *flags_of(args)], cwd=REPO, env=env,
                stdout=log, stderr=subprocess.STDOUT))

    def dump(self, index):
        return self.folder / f"worker{index}_weights.npz"

    def output(self, index):
        self.logs[index].flush()
        return (self.folder / f"worker{index}.log").read_text()

    def wait(self, timeout=HANG_TIMEOUT):
        deadline = time.time() + timeout
        for process in self.processes:
            process.wait(timeout=max(1, deadline - time.time()))
        return [process.returncode for process in self.processes]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in self.logs:
            log.close()


def dumped_weights(path):
    with np.load(path) as stored:
        return [stored[f"arr_{i}"] for i in range(len(stored.files))]


def checkpoint_arrays(directory, prefix):
    with np.load(checkpoint_path(str(directory)), allow_pickle=False) as stored:
        return [stored[k] for k in sorted(stored.files) if k.startswith(prefix)]


def assert_same_training(one_device, replicated, weight_rms=2e-4, moment_rtol=0.1):
    """Two checkpoints of the same steps on the same global batches agree: Adam's first
    moment of each weight's gradient within `moment_rtol` of its norm, and the weights'
    differences have an RMS under `weight_rms`.

    The moments are the sharp test. Adam's steps hardly change when every gradient is
    scaled, but the moments do: replicas' gradients summed without dividing each replica's
    loss by the number of replicas would double them. Runs that differ only in rounding stay
    close (measured: moments within 0.5% on TensorFlow, 3-4% on JAX; weight RMS 2e-6 and 3e-5),
    except where Adam's first steps, about +-1e-3 by the sign of each gradient, meet a
    gradient near zero: a few weights then differ by up to a few steps, hence an RMS, not a
    maximum. A wrong gradient moves every weight differently, by ~1e-3 a step.

    Weights that the losses do not depend on are left out: the convolution biases that
    InstanceNormalization subtracts, and the offsets of each residual branch's last
    normalization, which the next one subtracts. Their gradient is rounding noise (first
    moments ~1e-3 against >= 400 for the others). Returns the largest relative moment
    difference, the weight differences' RMS and their largest."""
    weights = checkpoint_arrays(one_device, "transformer_")
    other_weights = checkpoint_arrays(replicated, "transformer_")
    # Keras' Adam: iterations, learning rate, then (first moment, second moment) per weight.
    moments = checkpoint_arrays(one_device, "optimizer_")[2::2]
    other_moments = checkpoint_arrays(replicated, "optimizer_")[2::2]
    assert [m.shape for m in moments] == [w.shape for w in weights]
    norms = [np.linalg.norm(m) for m in moments]
    compared = [i for i, norm in enumerate(norms) if norm > 1e-4 * max(norms)]
    assert len(compared) >= 40, compared  # kernels and normalization scales are all there
    moment_differences = [np.linalg.norm(other_moments[i] - moments[i]) / norms[i] for i in compared]
    assert max(moment_differences) <= moment_rtol, moment_differences
    differences = np.concatenate([(other_weights[i] - weights[i]).ravel() for i in compared])
    rms = float(np.sqrt(np.mean(np.square(differences))))
    assert rms <= weight_rms, rms
    return max(moment_differences), rms, float(np.abs(differences).max())


def scalars(log_dir, tag):
    events = EventAccumulator(str(log_dir))
    events.Reload()
    return [event.value for event in events.Scalars(tag)]


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory):
    """Two workers train STEPS steps, each told to write to a folder of its own, so that
    what worker 1 wrote (nothing, if only the chief writes) is plain to see."""
    folder = make_workdir(tmp_path_factory.mktemp("cluster"))
    worker_args = [tiny_args(folder, STEPS, **CLUSTER_FLAGS, **outputs_in(folder / f"worker{i}"))
                   for i in range(2)]
    with Cluster(folder, worker_args) as cluster:
        assert cluster.wait() == [0, 0], cluster.output(0)[-3000:] + cluster.output(1)[-3000:]
        outputs = [cluster.output(0), cluster.output(1)]
        weights = [dumped_weights(cluster.dump(i)) for i in range(2)]
    return folder, worker_args, outputs, weights


def test_two_workers_train_in_step_and_only_the_chief_writes(cluster_run):
    folder, _, outputs, weights = cluster_run
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
    chief = folder / "worker0"
    assert sorted(os.listdir(chief)) == ["checkpoints", "images", "logs", "savedNets"]
    assert not (folder / "worker1").exists()
    assert "worker 1 trained stripes to step 10; the chief writes" in outputs[1]
    metadata = load_metadata(str(chief / "savedNets" / "stripes"))
    assert metadata["steps"] == STEPS and metadata["replicas"] == 2
    assert metadata["batch_size"] == 4 and metadata["images_seen"] == 4 * STEPS
    assert metadata["learning_rate"] == pytest.approx(2e-3)  # --scale_learning_rate, 2 replicas
    assert "2 replica(s), global batch 4 (2 per replica), learning rate 0.002" in outputs[0]
    assert checkpoint_step(str(chief / "checkpoints" / "stripes")) == STEPS
    for saved, trained in zip(checkpoint_arrays(chief / "checkpoints" / "stripes", "transformer_"),
                              weights[0]):
        np.testing.assert_array_equal(saved, trained)
    totals = scalars(chief / "logs" / "stripes", "loss/total")
    assert len(totals) == STEPS and np.mean(totals[-3:]) < 0.8 * totals[0], totals
    # The workers' shares make up the global batch: one device on it logs the same losses.
    one_device = tiny_args(folder, 2, batch_size=4, learning_rate=2e-3, log_every=1,
                           **outputs_in(folder / "one_device"))
    result = run_cli(one_device, env=TENSORFLOW)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = scalars(folder / "one_device" / "logs" / "stripes", "loss/total")
    # Equal at step 1; step 2 carries one update summed in another order (measured 3.0e-5
    # relative on an AVX2 CPU); another batch split would differ by percents.
    np.testing.assert_allclose(totals[:2], expected, rtol=1e-4)


def test_a_killed_worker_then_a_restarted_cluster_resume_at_the_checkpoint(tmp_path, cluster_run):
    """Worker 1 is killed mid-run; the chief stops with one line; the restarted cluster
    resumes from the chief's last checkpoint and ends with exactly the weights of a run
    that was never interrupted (`cluster_run`)."""
    folder = make_workdir(tmp_path)
    checkpoints = folder / "checkpoints" / "stripes"
    long_run = tiny_args(folder, 200, **CLUSTER_FLAGS)
    with Cluster(folder, [long_run, long_run]) as cluster:
        deadline = time.time() + HANG_TIMEOUT
        while checkpoint_step(str(checkpoints)) < 2:
            assert time.time() < deadline, "no checkpoint appeared"
            assert cluster.processes[0].poll() is None, cluster.output(0)[-3000:]
            time.sleep(0.05)
        cluster.processes[1].kill()  # SIGKILL
        cluster.processes[0].wait(timeout=HANG_TIMEOUT)
        chief = cluster.output(0)
    assert cluster.processes[0].returncode == 1
    assert "lost another worker of the cluster" in last_line(chief) and "Traceback" not in chief
    step = checkpoint_step(str(checkpoints))
    assert 2 <= step < STEPS and step % 2 == 0
    assert f"resume from step {step}" in last_line(chief)
    assert os.listdir(checkpoints) == ["checkpoint.npz"]

    finish = tiny_args(folder, STEPS, **CLUSTER_FLAGS)
    with Cluster(folder, [finish, finish]) as cluster:
        assert cluster.wait() == [0, 0], cluster.output(0)[-3000:] + cluster.output(1)[-3000:]
        for index in range(2):
            assert f"resuming stripes from its checkpoint at step {step}" in cluster.output(index)
        resumed = [dumped_weights(cluster.dump(i)) for i in range(2)]
    assert checkpoint_step(str(checkpoints)) == STEPS
    assert load_metadata(str(folder / "savedNets" / "stripes"))["steps"] == STEPS
    uninterrupted = cluster_run[3][0]
    for i, (a, b, c) in enumerate(zip(uninterrupted, *resumed)):
        np.testing.assert_array_equal(b, c)
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6, err_msg=f"weight {i}")


def test_workers_that_restored_different_steps_stop_in_one_line(cluster_run):
    """Worker folders that are not shared: the chief's checkpoint is at step 10, worker 1
    has none. Training on would leave one waiting for the other forever."""
    folder, worker_args, _, _ = cluster_run
    more = [[arg.replace(f"--steps={STEPS}", f"--steps={STEPS + 2}") for arg in args]
            for args in worker_args]
    with Cluster(folder, more) as cluster:
        assert cluster.wait() == [1, 1]
        for index in range(2):
            output = cluster.output(index)
            assert ("the workers restored checkpoints of different steps [0, 10]: --checkpoint_dir "
                    "must be storage that every worker shares") in last_line(output)
            assert "Traceback" not in output
    assert checkpoint_step(str(folder / "worker0" / "checkpoints" / "stripes")) == STEPS


def test_mirrored_on_two_cpus_matches_one_device(tmp_path):
    folder = make_workdir(tmp_path)
    runs = {"one": folder / "one", "two": folder / "two"}
    result = run_cli(tiny_args(folder, 1, batch_size=4, **outputs_in(runs["one"])), env=TENSORFLOW)
    assert result.returncode == 0, result.stderr[-3000:]
    two = tiny_args(folder, 1, batch_size=4, strategy="mirrored", **outputs_in(runs["two"]))
    result = subprocess.run([sys.executable, "-c", TWO_CPUS, *flags_of(two)], cwd=REPO,
                            env={**os.environ, **TENSORFLOW}, capture_output=True, text=True,
                            timeout=HANG_TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 replica(s), global batch 4 (2 per replica)" in result.stderr
    metadata = [load_metadata(str(runs[k] / "savedNets" / "stripes")) for k in ("one", "two")]
    assert [m["replicas"] for m in metadata] == [1, 2]
    # One step, as for JAX below: the losses and gradients at the same weights agree to
    # rounding (measured on an AVX2 machine: losses within 3e-7, first moments within
    # 0.01%). Over 4 steps Adam's sign-sized first steps carry rounding differences on:
    # there the losses drifted 0.3-1.2% and the moments 6-14% apart, by the CPU and by
    # how the loss network's passes were split, not by anything wrong.
    for name, loss in metadata[0]["final_losses"].items():
        assert metadata[1]["final_losses"][name] == pytest.approx(loss, rel=1e-4), name
    moments, rms, largest = assert_same_training(runs["one"] / "checkpoints" / "stripes",
                                                 runs["two"] / "checkpoints" / "stripes",
                                                 moment_rtol=0.01)
    print(f"mirrored on 2 CPUs vs 1 device, 1 step: first moments within {moments:.1%}, "
          f"weight difference RMS {rms:.1e}, max {largest:.1e}")


def test_jax_data_parallel_on_two_devices_matches_one_device(tmp_path):
    """With TensorFlow unimportable; the Pillow loader's batches are sharded over devices.

    One step, so the moments compare gradients taken at the same weights: after Adam's
    first step (about +-1e-3 per weight by the sign of its gradient), rounding differences
    between one and two devices can flip those signs, and in 4 steps the first moments
    drifted apart by 0.3% to 23% depending only on the initialization (measured on 4
    seeds), too close to what a wrong gradient gives. At one step they agree within 0.05%."""
    folder = make_workdir(tmp_path)
    checkpoints = {}
    for strategy in ("default", "data_parallel"):
        run = folder / strategy
        args = tiny_args(folder, 1, batch_size=4, strategy=strategy, checkpoint_every=1,
                         **outputs_in(run))
        result = subprocess.run([sys.executable, "-c", JAX_ONLY, *flags_of(args)], cwd=REPO,
                                env={**os.environ, **JAX}, capture_output=True, text=True,
                                timeout=HANG_TIMEOUT)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "tensorflow imported: False" in result.stdout
        metadata = load_metadata(str(run / "savedNets" / "stripes"))
        assert metadata["backend"] == "jax"
        assert metadata["replicas"] == (2 if strategy == "data_parallel" else 1)
        checkpoints[strategy] = run / "checkpoints" / "stripes"
    moments, rms, largest = assert_same_training(checkpoints["default"],
                                                 checkpoints["data_parallel"],
                                                 weight_rms=1e-5, moment_rtol=0.01)
    print(f"JAX DataParallel on 2 devices vs 1, 1 step: first moments within {moments:.1%}, "
          f"weight difference RMS {rms:.1e}, max {largest:.1e}")


@pytest.mark.parametrize("flags,env,message", [
    ({"strategy": "tpu"}, TENSORFLOW, "--strategy=tpu: no TPU found on this machine"),
    ({"strategy": "multi_worker"}, {**TENSORFLOW, "TF_CONFIG": "{cluster: worker}"},
     "TF_CONFIG is not valid JSON"),
    ({"strategy": "data_parallel"}, TENSORFLOW, "--strategy=data_parallel is Keras' JAX data parallelism"),
    ({"strategy": "mirrored"}, JAX, "--strategy=mirrored is a tf.distribute strategy for the "
                                    "TensorFlow backend"),
    ({"strategy": "data_parallel", "batch_size": 3}, JAX,
     "--batch_size=3 is the global batch and must divide evenly over the 2 replicas"),
])
def test_strategies_that_cannot_run_fail_in_one_line(tmp_path, flags, env, message):
    make_workdir(tmp_path)
    result = run_cli(tiny_args(tmp_path, 2, **flags), env=env)
    assert result.returncode == 1
    assert message in last_line(result.stderr) and "Traceback" not in result.stderr


@pytest.mark.parametrize("tf_config,message", [
    (None, "--strategy=multi_worker needs TF_CONFIG"),
    ("[1, 2]", "TF_CONFIG must look like"),
    ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "job 'ps' is not one of"),
    ('{"cluster": {"worker": "a:1"}, "task": {"type": "worker"}}', "must be a list of"),
    ('{"cluster": {"worker": ["a"]}, "task": {"type": "worker"}}', "must be a list of"),
    ('{"cluster": {"chief": ["a:1", "b:1"]}, "task": {"type": "chief"}}', "at most one chief"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', "not in the cluster"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}', "not in the cluster"),
])
def test_malformed_tf_config_is_named(tf_config, message):
    with pytest.raises(DistributeError, match=message.replace("[", r"\[")):
        cluster_config(tf_config)


def test_the_chief_is_the_chief_task_or_else_worker_0():
    def config(cluster, job, index):
        return cluster_config(json.dumps({"cluster": cluster, "task": {"type": job, "index": index}}))

    workers = {"worker": ["a:1", "b:1"]}
    assert is_chief(config(workers, "worker", 0)) and not is_chief(config(workers, "worker", 1))
    with_chief = {"chief": ["c:1"], **workers}
    assert is_chief(config(with_chief, "chief", 0))
    assert not is_chief(config(with_chief, "worker", 0))


def test_help_documents_the_strategies():
    result = run_cli(["perceptual_style.train", "--helpfull"], env=TENSORFLOW)
    for text in ("--strategy", "multi_worker", "data_parallel", "--[no]scale_learning_rate",
                 "the global batch"):
        assert text in result.stdout
