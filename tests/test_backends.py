"""Runs the backend-neutral test files again under KERAS_BACKEND=jax with TensorFlow made
unimportable, as on a GPU machine that has only JAX (Keras picks its backend once per
process, so this needs a subprocess: one per file, so that parallel workers share them)."""

import os
import subprocess
import sys

import pytest

from conftest import BACKEND, HANG_TIMEOUT, REPO

NEUTRAL = ["test_transformer_net.py", "test_losses.py", "test_trainer.py", "test_data.py",
           "test_tiling.py", "test_optimize.py"]


@pytest.mark.skipif(BACKEND == "jax", reason="already running on JAX")
@pytest.mark.parametrize("name", NEUTRAL)
def test_backend_neutral_tests_pass_on_jax(name):
    # -n 0: the file's tests run in this subprocess, not in workers of their own.
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
         os.path.join("tests", name)],
        cwd=REPO, env={**os.environ, "KERAS_BACKEND": "jax", "PERCEPTUAL_STYLE_NO_TENSORFLOW": "1"},
        capture_output=True, text=True, timeout=HANG_TIMEOUT)
    assert result.returncode == 0, result.stdout[-6000:]
    assert " passed" in result.stdout.splitlines()[-1]
