"""Training checkpoints: the transformer's weights, the optimizer's state and the step.

One `.npz` file, replaced atomically (temporary file + rename), so a run killed at any
moment, even by SIGKILL in the middle of a save, leaves the previous checkpoint intact.
The optimizer's `iterations` counter is the global step. A damaged checkpoint is one
`ValueError` line. Backend-neutral.
"""

import os

import numpy as np

from perceptual_style.atomic import atomic_write
from perceptual_style.saved_nets import read_npz

CHECKPOINT_FILE = "checkpoint.npz"


def checkpoint_path(directory):
    return os.path.join(directory, CHECKPOINT_FILE)


def save_checkpoint(trainer, directory):
    arrays = {f"transformer_{i:03d}": w for i, w in enumerate(trainer.transformer.get_weights())}
    arrays.update({f"optimizer_{i:03d}": np.asarray(v)
                   for i, v in enumerate(trainer.optimizer.variables)})
    arrays["step"] = np.asarray(trainer.optimizer.iterations, np.int64)
    atomic_write(checkpoint_path(directory), lambda f: np.savez(f, **arrays))


def _read(path):
    try:
        return read_npz(path)
    except ValueError as e:
        raise ValueError(f"{e}; use another --checkpoint_dir or delete it to start over") from None


def checkpoint_step(directory):
    """The step of the checkpoint in `directory` (0 when there is none)."""
    if not os.path.isfile(checkpoint_path(directory)):
        return 0
    return int(_read(checkpoint_path(directory))["step"])


def restore_checkpoint(trainer, directory):
    """Loads the checkpoint in `directory` into `trainer` (compiled); returns its step,
    or 0 when there is none. Builds the optimizer either way: in a multi-worker cluster,
    creating variables is a collective operation that every worker must do alike."""
    trainer.optimizer.build(trainer.trainable_variables)
    path = checkpoint_path(directory)
    if not os.path.isfile(path):
        return 0
    stored = _read(path)
    transformer = [stored[k] for k in sorted(stored) if k.startswith("transformer_")]
    optimizer = [stored[k] for k in sorted(stored) if k.startswith("optimizer_")]
    net = trainer.transformer
    if [w.shape for w in transformer] != [tuple(w.shape) for w in net.weights]:
        raise ValueError(f"{path} holds a different architecture than the flags ask for; "
                         "use another --checkpoint_dir or delete it to start over")
    net.set_weights(transformer)
    variables = trainer.optimizer.variables
    if [o.shape for o in optimizer] != [tuple(v.shape) for v in variables]:
        raise ValueError(f"{path} holds optimizer state of another kind; "
                         "use another --checkpoint_dir or delete it to start over")
    for variable, value in zip(variables, optimizer):
        variable.assign(value)
    return int(np.asarray(trainer.optimizer.iterations))
