"""Importing this module makes TensorFlow (and TFDS) unimportable in this process, as on a
GPU machine that has only JAX: code that needs TensorFlow on the JAX path then fails."""

import importlib.abc
import sys

BLOCKED = ("tensorflow", "tensorflow_datasets")


class _NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: simulating a machine without TensorFlow")
        return None


if not any(isinstance(finder, _NoTensorFlow) for finder in sys.meta_path):
    sys.meta_path.insert(0, _NoTensorFlow())
