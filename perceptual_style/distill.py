"""Distills a trained style into a smaller transformer (e.g. the mobile network).

    python -m perceptual_style.distill --teacher=snight --saved_dir=savedNets \\
        --content_dir=PHOTOS --name=snight_mobile

The student learns to reproduce the teacher's output: the mean squared error between the
two stylized images of the same random crops (knowledge distillation, Hinton et al. 2015,
on outputs). That needs no VGG19 pass, so a step costs one teacher forward pass and the
student's own, a fraction of a training step with the perceptual losses. The trained
student goes to `<output_dir>/<name>/` in the savedNets format, its metadata carrying the
teacher's training flags (so tools/quality.py measures it with the teacher's losses).
Pure Keras 3: the standard `fit` on (crops, teacher outputs) pairs.
"""

import os
import sys
import time

from perceptual_style import cli

# The imports below load the backend: quietly, as the other commands do after their flags.
cli.import_quietly(["keras"])

import keras
import numpy as np
from absl import flags

from perceptual_style import saved_nets
from perceptual_style.data import ImageFolderDataset, list_images
from perceptual_style.transformer_net import ARCHITECTURES, INPUT_SHAPE, TransformerNet

FLAGS = flags.FLAGS


class TeacherTargets(keras.utils.PyDataset):
    """Batches (crops, teacher(crops)), `per_epoch` steps an epoch, each epoch taking the
    next steps of an ImageFolderDataset (so every step sees new crops)."""

    def __init__(self, crops, teacher, per_epoch, **kwargs):
        super().__init__(**kwargs)
        self.crops, self.teacher, self.per_epoch, self.epoch = crops, teacher, per_epoch, 0

    def __len__(self):
        return self.per_epoch

    def __getitem__(self, index):
        (images,) = self.crops[self.epoch * self.per_epoch + index]
        return images, keras.ops.convert_to_numpy(self.teacher(images))

    def on_epoch_end(self):
        self.epoch += 1


def distill(teacher, student, files, steps, image_size=192, batch_size=4, learning_rate=1e-3,
            seed=0, log_every=50, verbose=2):
    """Trains `student` (built in place) to match `teacher` on random crops of `files` for
    `steps` (rounded up to a multiple of `log_every`); returns the mean loss of every
    `log_every` steps."""
    if not student.built:
        student.build(INPUT_SHAPE)
    student.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mean_squared_error")
    epochs = -(-steps // log_every)
    crops = ImageFolderDataset(files, image_size, batch_size, epochs * log_every, seed=seed)
    history = student.fit(TeacherTargets(crops, teacher, log_every), epochs=epochs,
                          verbose=verbose, shuffle=False,
                          callbacks=[keras.callbacks.TerminateOnNaN()])
    return history.history["loss"]


def define_flags():
    """Defined only when the CLI runs (the trainer has its own --name, --steps, ...)."""
    flags.DEFINE_string("teacher", "snight", "Trained style to distill: a name in --saved_dir "
                        "or a folder holding weights.npz.")
    cli.define_saved_dir(__name__)
    flags.DEFINE_string("output_dir", saved_nets.DEFAULT_DIR, "The student goes to "
                        "<output_dir>/<name>/.")
    flags.DEFINE_string("name", None, "Student's name. Default: <teacher>_<arch>.")
    flags.DEFINE_enum("arch", "mobile", list(ARCHITECTURES), "Student architecture.")
    flags.DEFINE_float("width_multiplier", 1.0, "Student's channels relative to the paper's "
                       "32/64/128.", lower_bound=0.05)
    flags.DEFINE_integer("num_residual_blocks", 4, "Student's residual blocks.", lower_bound=0)
    flags.DEFINE_string("content_dir", None, "Content photos (folder, glob or file); required.")
    flags.DEFINE_integer("image_size", 160, "Side of the square training crops.", lower_bound=16)
    flags.DEFINE_integer("batch_size", 4, "Crops per step.", lower_bound=1)
    flags.DEFINE_integer("steps", 1000, "Training steps.", lower_bound=1)
    flags.DEFINE_float("learning_rate", 2e-3, "Adam learning rate.", lower_bound=0)
    flags.DEFINE_integer("log_every", 50, "Steps between loss lines.", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Seed for the student's initialization and the crops.")


def main(argv):
    cli.require("content_dir")
    try:
        teacher_dir = saved_nets.resolve(FLAGS.teacher,
                                         saved_nets.find_saved_dir(FLAGS.saved_dir))
        teacher = saved_nets.load_transformer(teacher_dir)
        teacher_metadata = saved_nets.load_metadata(teacher_dir)
        files = list_images(FLAGS.content_dir)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"distill: error: {e}")
    teacher_name = os.path.basename(os.path.normpath(teacher_dir))
    name = FLAGS.name or f"{teacher_name}_{FLAGS.arch}"
    keras.utils.set_random_seed(FLAGS.seed)
    student = TransformerNet(arch=FLAGS.arch, width_multiplier=FLAGS.width_multiplier,
                             num_residual_blocks=FLAGS.num_residual_blocks)
    started = time.time()
    losses = distill(teacher, student, files, FLAGS.steps, FLAGS.image_size, FLAGS.batch_size,
                     FLAGS.learning_rate, FLAGS.seed, FLAGS.log_every)
    if not np.isfinite(losses[-1]):
        sys.exit("distill: error: the loss became NaN or infinite; nothing was saved "
                 "(try a lower --learning_rate)")
    seconds = time.time() - started
    metadata = saved_nets.distilled_metadata(
        teacher_metadata, teacher_name, name,
        {f.name: f.value for f in FLAGS.get_key_flags_for_module(sys.modules[__name__])}, losses,
        FLAGS.steps, FLAGS.batch_size, FLAGS.image_size, seconds / FLAGS.steps,
        keras.backend.backend(), student)
    out_dir = os.path.join(FLAGS.output_dir, name)
    saved_nets.save_transformer(student, out_dir, metadata)
    print(f"\nDistilled {teacher_name} into {name} ({student.count_params():,} parameters) in "
          f"{seconds / 60:.1f} min; output MSE {losses[0]:.1f} (first {FLAGS.log_every} steps) -> {losses[-1]:.1f} (last): "
          f"{os.path.join(out_dir, saved_nets.WEIGHTS_FILE)}")
    return 0


def run():
    define_flags()
    cli.run(main, "distill")


if __name__ == "__main__":
    run()
