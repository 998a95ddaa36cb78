"""What the command-line tools share (perceptual_style/cli.py): help and flag errors come
before any backend is imported, help exits 0, and the console carries only our own lines."""

import importlib.util
import os
import subprocess
import sys

import pytest

from conftest import HANG_TIMEOUT, REPO, tensorflow_only
from perceptual_style import cli

# program: (what runs it, one of its flags)
TOOLS = {"stylize": ("perceptual_style.stylize", "--tile_size"),
         "export": ("perceptual_style.export", "--models_dir"),
         "client": ("perceptual_style.client", "--protocol"),
         "export_tflite": ("tools/export_tflite.py", "--quantizations"),
         "stylize_video": ("perceptual_style.stylize_video", "--temporal"),
         "quality": ("tools/quality.py", "--max_clipped"),
         "select_styles": ("tools/select_styles.py", "--styles")}
# Tools whose flags come from modules that load the backend (the trainers' loss flags): they
# import it first, quietly.
TRAINERS = {"train": ("perceptual_style.train", "--crop_size"),
            "distill": ("perceptual_style.distill", "--teacher")}
# Prints, at exit, which of the modules that load a backend the tool imported.
RUN = """import atexit, runpy, sys
atexit.register(lambda: print("imported:", [m for m in ("keras", "tensorflow", "jax")
                                            if m in sys.modules]))
tool, sys.argv = sys.argv[1], sys.argv[1:]
if tool.endswith(".py"):
    runpy.run_path(tool, run_name="__main__")
else:
    runpy.run_module(tool, run_name="__main__", alter_sys=True)
"""


def run_tool(program, *args):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    tool = {**TOOLS, **TRAINERS}[program][0]
    return subprocess.run([sys.executable, "-c", RUN, tool, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=HANG_TIMEOUT)


@pytest.mark.parametrize("program", TOOLS)
@pytest.mark.parametrize("flag", ["--help", "--helpfull"])
def test_help_exits_0_before_any_backend_is_imported(program, flag):
    result = run_tool(program, flag)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert f"  {TOOLS[program][1]}: " in result.stdout
    if flag == "--helpfull" and program != "client":  # defined once, in cli.py, for all
        assert "  --saved_dir: " in result.stdout
    assert result.stdout.splitlines()[-1] == "imported: []"


@pytest.mark.parametrize("program", TOOLS)
def test_flag_errors_are_one_line_before_any_backend_is_imported(program):
    result = run_tool(program, "--no_such_flag=1")
    assert result.returncode == 1
    assert result.stderr == (f"{program}: error: Unknown command line flag 'no_such_flag' "
                             "(see --helpfull)\n")
    assert result.stdout == "imported: []\n"


@pytest.mark.parametrize("program", TRAINERS)
def test_trainers_help_and_flag_errors_carry_only_our_own_lines(program):
    result = run_tool(program, "--helpfull")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert f"  {TRAINERS[program][1]}: " in result.stdout
    result = run_tool(program, "--no_such_flag=1")
    assert result.returncode == 1
    assert result.stderr == (f"{program}: error: Unknown command line flag 'no_such_flag' "
                             "(see --helpfull)\n")


@pytest.mark.parametrize("program", ["export", "export_tflite"])
def test_stray_arguments_are_one_line_errors_before_any_backend_is_imported(program):
    result = run_tool(program, "--all", "stray")
    assert result.returncode == 1
    assert result.stderr == (f"{program}: error: unexpected arguments: stray "
                             "(flags are --name=value)\n")
    assert result.stdout == "imported: []\n"


def test_commands_share_flags_in_one_process():
    """train and stylize both take --saved_dir: importing both defined it twice."""
    code = ("from absl import flags; import perceptual_style.train, perceptual_style.stylize; "
            "print(sorted(f.name for m in ('perceptual_style.train', 'perceptual_style.stylize') "
            "for f in flags.FLAGS.get_key_flags_for_module(m) if f.name == 'saved_dir'))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=HANG_TIMEOUT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == "['saved_dir', 'saved_dir']"


@pytest.mark.parametrize("command,flag", [
    (["-m", "perceptual_style.distill"], "content_dir"),
    (["tools/quality.py"], "photos"),
    (["tools/benchmark.py", "--quality"], "photos"),
])
def test_photo_folders_have_no_development_machine_default(command, flag):
    result = subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True,
                            text=True, timeout=HANG_TIMEOUT)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].endswith(
        f": error: --{flag} is required (see --helpfull)")


def test_native_output_is_dropped_unless_the_user_set_a_log_level(capfd, monkeypatch):
    monkeypatch.setattr(cli, "USER_LOG_LEVEL", None)
    with cli.native_stderr_dropped():
        os.write(2, b"I0000 cudart_stub.cc:31] Could not find cuda drivers\n")
    print("ours", file=sys.stderr)
    assert capfd.readouterr().err == "ours\n"
    monkeypatch.setattr(cli, "USER_LOG_LEVEL", "0")
    with cli.native_stderr_dropped():
        os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on\n")
    assert capfd.readouterr().err == "I0000 port.cc:153] oneDNN custom operations are on\n"


@tensorflow_only
def test_tensorflow_is_imported_without_its_unused_imports_which_stay_importable():
    """TensorFlow imports JAX, matplotlib, OpenCV and SciPy where they are installed; the
    commands' processes skip them, and can import them later."""
    installed = [m for m in cli.SKIPPED_BY_TENSORFLOW if importlib.util.find_spec(m)]
    if not installed:
        pytest.skip("none of them is installed")
    code = ("import importlib, sys; from perceptual_style import cli\n"
            "cli.import_quietly(['keras'])\n"
            f"names = {installed!r}\n"
            "print('tensorflow' in sys.modules, [n for n in names if n in sys.modules])\n"
            "print([importlib.import_module(n).__name__ for n in names] == names)\n")
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=HANG_TIMEOUT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-2:] == ["True []", "True"]
