"""Distills trained styles into another transformer: one into a smaller network (e.g. the
mobile one), or several into one network of as many styles.

    python -m perceptual_style.distill --teacher=snight --saved_dir=savedNets \\
        --content_dir=PHOTOS --name=snight_mobile
    python -m perceptual_style.distill --teacher=snight,wave,mosaic --arch=full \\
        --num_residual_blocks=5 --content_dir=PHOTOS --name=paintings

The student learns to reproduce the teacher's output: the mean squared error between the
two stylized images of the same random crops (knowledge distillation, Hinton et al. 2015,
on outputs). That needs no VGG19 pass, so a step costs one teacher forward pass and the
student's own, a fraction of a training step with the perceptual losses. The trained
student goes to `<output_dir>/<name>/` in the savedNets format, its metadata carrying the
teacher's training flags (so tools/quality.py measures it with the teacher's losses).
With several teachers the student has conditional instance normalization, one style a
teacher: every batch mixes them as training mixes styles (trainer.style_schedule), and its
metadata lists each teacher's style (name, painting, loss flags) under `styles`.
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

from perceptual_style import precision, saved_nets
from perceptual_style.data import ImageFolderDataset, list_images
from perceptual_style.trainer import style_schedule
from perceptual_style.transformer_net import ARCHITECTURES, INPUT_SHAPE, TransformerNet

FLAGS = flags.FLAGS


class TeacherTargets(keras.utils.PyDataset):
    """Batches (crops, their teachers' outputs), `per_epoch` steps an epoch, each epoch
    taking the next steps of an ImageFolderDataset (so every step sees new crops). With
    several teachers the inputs are (crops, one-hot style weights): each crop goes to the
    teacher of its style in style_schedule."""

    def __init__(self, crops, teachers, per_epoch, **kwargs):
        super().__init__(**kwargs)
        self.crops, self.teachers, self.per_epoch, self.epoch = crops, teachers, per_epoch, 0

    def __len__(self):
        return self.per_epoch

    def __getitem__(self, index):
        step = self.epoch * self.per_epoch + index
        (images,) = self.crops[step]
        if len(self.teachers) == 1:
            return images, keras.ops.convert_to_numpy(self.teachers[0](images))
        weights = keras.ops.convert_to_numpy(
            style_schedule(step, len(images), len(self.teachers)))
        styles = weights.argmax(axis=1)
        targets = np.empty(images.shape, np.float32)
        for style in np.unique(styles):
            chosen = styles == style
            targets[chosen] = keras.ops.convert_to_numpy(self.teachers[style](images[chosen]))
        return (images, weights), targets

    def on_epoch_end(self):
        self.epoch += 1


def distill(teachers, student, files, steps, image_size=192, batch_size=4, learning_rate=1e-3,
            seed=0, log_every=50, verbose=2):
    """Trains `student` (built in place) to match `teachers` (one network, or a list of
    single-style networks, one a style of `student`) on random crops of `files` for
    `steps` (rounded up to a multiple of `log_every`); returns the mean loss of every
    `log_every` steps."""
    teachers = list(teachers) if isinstance(teachers, (list, tuple)) else [teachers]
    if len(teachers) != student.num_styles:
        raise ValueError(f"a student of {student.num_styles} style"
                         f"{'s' * (student.num_styles > 1)} needs as many teachers, "
                         f"got {len(teachers)}")
    if not student.built:
        student.build(INPUT_SHAPE)
    model = student
    if len(teachers) > 1:  # fit() passes one input: the crops and their style weights
        images, weights = keras.Input(INPUT_SHAPE[1:]), keras.Input((len(teachers),))
        model = keras.Model([images, weights], student(images, style_weights=weights))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mean_squared_error")
    epochs = -(-steps // log_every)
    crops = ImageFolderDataset(files, image_size, batch_size, epochs * log_every, seed=seed)
    history = model.fit(TeacherTargets(crops, teachers, log_every), epochs=epochs,
                        verbose=verbose, shuffle=False,
                        callbacks=[keras.callbacks.TerminateOnNaN()])
    return history.history["loss"]


def define_flags():
    """Defined only when the CLI runs (the trainer has its own --name, --steps, ...)."""
    flags.DEFINE_list("teacher", ["snight"], "Trained style(s) to distill: names in --saved_dir "
                      "or folders holding weights.npz, each a network of one style. Several "
                      "make a student of as many styles, in this order.")
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
    flags.DEFINE_string("init_from", None, "Start the student from this trained network (a "
                        "name in --saved_dir or a folder) of as many styles as teachers, "
                        "instead of fresh weights: its architecture, so --arch, "
                        "--width_multiplier and --num_residual_blocks must not be given.")
    cli.define_precision(__name__)


def student_network(num_styles, chosen_precision, saved_dir):
    """The network to train: --init_from's (its architecture and weights) or a fresh one of
    the flags' architecture, with `num_styles` styles, computing in `chosen_precision`."""
    if not FLAGS.init_from:
        with precision.policy(chosen_precision):
            return TransformerNet(arch=FLAGS.arch, width_multiplier=FLAGS.width_multiplier,
                                  num_residual_blocks=FLAGS.num_residual_blocks,
                                  num_styles=num_styles)
    given = [f"--{n}" for n in ("arch", "width_multiplier", "num_residual_blocks")
             if FLAGS[n].present]
    if given:
        raise cli.CommandError(f"{', '.join(given)}: --init_from's network has its own "
                               "architecture")
    student = saved_nets.load_transformer(FLAGS.init_from, saved_dir, chosen_precision)
    if student.num_styles != num_styles:
        raise cli.CommandError(f"--init_from: {FLAGS.init_from} has {student.num_styles} "
                               f"style{'s' * (student.num_styles > 1)}, not one for each of "
                               f"the {num_styles} teachers")
    return student


def teacher_facts(names, metadatas):
    """What the student's metadata takes from its teachers: one teacher's metadata as it
    is (its training flags, so quality.py measures the student with its losses); of
    several, a `styles` list of their entries (name, painting, loss flags) and their steps."""
    if len(names) == 1:
        return metadatas[0]
    # Imported here: its loss flags are not distill's.
    from perceptual_style.style_flags import recorded_styles

    return {"styles": [recorded_styles(m, 1, n)[0] for n, m in zip(names, metadatas)],
            "steps": [m.get("steps") for m in metadatas]}


def main(argv):
    cli.require("content_dir")
    try:
        saved_dir = saved_nets.find_saved_dir(FLAGS.saved_dir)
        teacher_dirs = [saved_nets.resolve(t, saved_dir) for t in FLAGS.teacher]
        names = [os.path.basename(os.path.normpath(d)) for d in teacher_dirs]
        saved_nets.style_names({"styles": [{"name": n} for n in names]}, len(names))
        teachers = [saved_nets.load_transformer(d) for d in teacher_dirs]
        for teacher_name, teacher in zip(names, teachers):
            if teacher.num_styles != 1:
                raise ValueError(f"teacher {teacher_name} is a network of "
                                 f"{teacher.num_styles} styles: name networks of one")
        metadatas = [saved_nets.load_metadata(d) for d in teacher_dirs]
        files = list_images(FLAGS.content_dir)
        chosen_precision = precision.resolve(FLAGS.precision)
        keras.utils.set_random_seed(FLAGS.seed)
        student = student_network(len(teachers), chosen_precision, saved_dir)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"distill: error: {e}")
    name = FLAGS.name or (f"{names[0]}_{FLAGS.arch}" if len(names) == 1 else "-".join(names))
    started = time.time()
    losses = distill(teachers, student, files, FLAGS.steps, FLAGS.image_size, FLAGS.batch_size,
                     FLAGS.learning_rate, FLAGS.seed, FLAGS.log_every)
    if not np.isfinite(losses[-1]):
        sys.exit("distill: error: the loss became NaN or infinite; nothing was saved "
                 "(try a lower --learning_rate)")
    seconds = time.time() - started
    metadata = saved_nets.distilled_metadata(
        teacher_facts(names, metadatas), names[0] if len(names) == 1 else names, name,
        {f.name: f.value for f in FLAGS.get_key_flags_for_module(sys.modules[__name__])}, losses,
        FLAGS.steps, FLAGS.batch_size, FLAGS.image_size, seconds / FLAGS.steps,
        keras.backend.backend(), student)
    out_dir = os.path.join(FLAGS.output_dir, name)
    saved_nets.save_transformer(student, out_dir, metadata)
    print(f"\nDistilled {', '.join(names)} into {name} ({student.count_params():,} parameters) "
          f"in {seconds / 60:.1f} min; output MSE {losses[0]:.1f} (first {FLAGS.log_every} steps) "
          f"-> {losses[-1]:.1f} (last): {os.path.join(out_dir, saved_nets.WEIGHTS_FILE)}")
    return 0


def run():
    define_flags()
    cli.run(main, "distill")


if __name__ == "__main__":
    run()
