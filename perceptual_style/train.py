"""Trains a TransformerNet for one style, or one for several (--styles).

    python -m perceptual_style.train --flagfile=styles/snight.flags \\
        --content_dir=../shared/data/content/train
    python -m perceptual_style.train --styles=snight,wave --name=paintings --content_dir=...
    python -m perceptual_style.train --add_style=udnie --init_from=savedNets/paintings ...

--add_style grows a trained network by one style, training only that style's
normalization parameters on its frozen convolutions, so its other styles stay as they were.
Without it, --init_from fine-tunes a trained network of any architecture on these losses
(e.g. one distilled into the mobile network by distill.py).
Rerunning the same command after an interruption (Ctrl-C, SIGTERM, SIGKILL) resumes from
the last checkpoint. Final weights go to `savedNets/<name>/`, progress pictures to
`images/<name>/`, TensorBoard logs to `logs/<name>/`. The backend is Keras' own choice
(`KERAS_BACKEND=jax` trains on JAX, importing no TensorFlow for a `--content_dir`).
"""

import os
import sys
import time
from typing import NamedTuple

from perceptual_style import cli

# The imports below load the backend: quietly, as the other commands do after their flags.
cli.import_quietly(["keras"])

import keras
import numpy as np
from absl import flags, logging

from perceptual_style import callbacks as cb
from perceptual_style import distribute, precision, saved_nets, style_flags
from perceptual_style.checkpoint import restore_checkpoint, save_checkpoint
from perceptual_style.data import NO_READABLE_IMAGES, ImageFolderDataset, SkippedFiles
from perceptual_style.data import check_readable, list_images
from perceptual_style.images import ImageError, cover, load_rgb
from perceptual_style.losses import LOSS_NAMES
from perceptual_style.summaries import SummaryWriter
from perceptual_style.trainer import StyleTransferTrainer
from perceptual_style.transformer_net import (TransformerNet, add_style, repeat_style,
                                              style_network, train_normalization_only)

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(style_flags)  # recorded in metadata with the flags below

flags.DEFINE_list("styles", None, "Train one network of these styles (conditional instance "
                  "normalization, Dumoulin et al. 2017): at least 2 names of flagfiles in "
                  "styles/ (or .flags files), each giving its style's painting and loss weights; "
                  "loss flags given here apply to all. Not with --style_image.")
flags.DEFINE_string("add_style", None, "Grow the trained network --init_from names by one "
                    "style: the name of a flagfile in styles/ (or a .flags file) giving its "
                    "painting and loss weights, as for --styles, or 'identity' (content loss "
                    "only: it reproduces the photo, and stylize --strength then interpolates "
                    "towards it in parameter space). Only the new style's normalization "
                    "parameters train, on the frozen convolutions, so the other styles come "
                    "out bit for bit as before. Default --name: <network>-<style>; "
                    "checkpoints go to <checkpoint_dir>/<name>/add_<style>/.")
flags.DEFINE_string("add_style_from", None, "Where --add_style's normalization parameters "
                    "start: the style of this name in --init_from (default: the mean of its "
                    "styles).")
flags.DEFINE_bool("finetune_all", False, "With --add_style: train every weight on every "
                  "style's loss (the old styles' recipes from --init_from's metadata), "
                  "instead of the new style's normalization parameters alone; the old styles "
                  "then change too.")
flags.DEFINE_string("content_dir", None, "Content images: a folder (searched recursively), "
                    "a glob or a file. When unset, --content_tfds is used.")
flags.DEFINE_string("content_tfds", "coco/2014", "TensorFlow Datasets name for content images "
                    "when --content_dir is unset (the paper used coco/2014 train).")
flags.DEFINE_string("tfds_data_dir", None, "Where TFDS keeps prepared datasets (its default: "
                    "~/tensorflow_datasets).")
flags.DEFINE_bool("tfds_download", False, "Let TFDS download and prepare --content_tfds if it "
                  "is not prepared yet (coco/2014 is about 40 GB).")
flags.DEFINE_integer("image_size", 256, "Content photos are scaled so their shorter side has "
                     "this many pixels: the scale of their content.", lower_bound=16)
flags.DEFINE_integer("crop_size", None, "Side of the square random crops trained on (default: "
                     "--image_size). Smaller crops keep the content's scale at a fraction of "
                     "the work (128 of 256: about a quarter).", lower_bound=16)
cli.define_precision(__name__)
cli.define_duration("time_budget", None, "Train for at most this long from the start (e.g. "
                    "2h, 45m), then checkpoint and write the network as at the end.")
flags.DEFINE_bool("overwrite", False, "Replace a trained network in <saved_dir>/<name>/ that "
                  "this run did not start (resuming its checkpoint, or --init_from that "
                  "folder, continues it and needs no --overwrite).")
flags.DEFINE_integer("batch_size", 4, "Images per step: the global batch, split evenly over "
                     "the replicas of a distributed --strategy.", lower_bound=1)
flags.DEFINE_integer("steps", 10000, "Total training steps (a resumed run counts from its "
                     "checkpoint).", lower_bound=1)
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.", lower_bound=0)
flags.DEFINE_enum("upsampling", "nearest", ["nearest", "transpose"], "Transformer upsampling: "
                  "nearest resize + conv, or transposed convs as in the paper (with "
                  "--init_from: its network's).")
flags.DEFINE_string("name", None, "Style name: output goes to <saved_dir>/<name>/. Default: "
                    "the style image's file name (with --styles: their names joined by -).")
cli.define_saved_dir(__name__)
flags.DEFINE_string("checkpoint_dir", "checkpoints", "Checkpoints go to <checkpoint_dir>/<name>/.")
flags.DEFINE_string("tensorboard_dir", "logs", "TensorBoard logs go to <tensorboard_dir>/<name>/.")
flags.DEFINE_string("images_dir", "images", "Progress pictures go to <images_dir>/<name>/.")
flags.DEFINE_integer("checkpoint_every", 100, "Steps between checkpoints (0: only at the end).",
                     lower_bound=0)
flags.DEFINE_integer("sample_every", 200, "Steps between progress pictures (0: only at the "
                     "end).", lower_bound=0)
flags.DEFINE_integer("log_every", 10, "Steps between TensorBoard scalars.", lower_bound=1)
flags.DEFINE_string("sample_images", None, "Held-out photos for progress pictures (folder, "
                    "glob or file). Default: the last --num_samples content images, which are "
                    "then left out of training.")
flags.DEFINE_integer("num_samples", 4, "Photos in each progress picture.", lower_bound=1)
flags.DEFINE_string("init_from", None, "Start from a trained network instead of random "
                    "weights when there is no checkpoint yet (to continue a style whose "
                    "checkpoints are gone, or to fine-tune): a style folder with weights.npz, "
                    "or a folder of styles holding <name>/. The network trained is of its "
                    "architecture (e.g. a distilled mobile one), so a resumed run names it "
                    "again. With --styles: a network of as many styles, or of one, which "
                    "every style then starts from. Images seen before are added to the "
                    "metadata's.")
flags.DEFINE_integer("seed", 0, "Seed for the weights' initialization and the data order.")
flags.DEFINE_enum("strategy", "default", distribute.STRATEGIES, "Where to train (see "
                  "docs/distributed.md). TensorFlow: default (one device), mirrored (every GPU "
                  "of this machine), multi_worker (the cluster that TF_CONFIG describes; only "
                  "its chief writes files, all restore from a shared --checkpoint_dir), tpu "
                  "(this TPU VM). JAX: default (one device), data_parallel (every device, "
                  "keras.distribution.DataParallel).")
flags.DEFINE_bool("scale_learning_rate", False, "Multiply --learning_rate by the number of "
                  "replicas (linear scaling), for when --batch_size grows with them.")


def content_source():
    """(training files or None, held-out sample images)."""
    files = None
    if FLAGS.content_dir:
        try:
            files = list_images(FLAGS.content_dir)
        except FileNotFoundError as e:
            raise cli.CommandError(f"--content_dir: {e}") from None
        check_readable(files, FLAGS.image_size)
    if FLAGS.sample_images:
        try:
            sample_files = list_images(FLAGS.sample_images)[: FLAGS.num_samples]
        except FileNotFoundError as e:
            raise cli.CommandError(f"--sample_images: {e}") from None
    elif files is not None:
        if len(files) <= FLAGS.num_samples:
            raise cli.CommandError(f"--content_dir has {len(files)} images: too few to hold out "
                                   f"{FLAGS.num_samples} samples (set --sample_images)")
        files, sample_files = files[: -FLAGS.num_samples], files[-FLAGS.num_samples:]
    else:
        from perceptual_style.tf_data import tfds_images

        samples = load_tfds(tfds_images, FLAGS.num_samples)
        return None, [cover(s, FLAGS.image_size, FLAGS.image_size) for s in samples]
    samples = []
    for path in sample_files:
        try:
            samples.append(cover(load_rgb(path), FLAGS.image_size, FLAGS.image_size))
        except ImageError as e:
            logging.warning("skipped unreadable sample image: %s", e)
    if not samples:
        raise cli.CommandError("none of the sample images could be read")
    return files, samples


def make_dataset(files, start_step, skipped):
    """Global batches; a multi-worker strategy shards the image folder by data, since every
    worker can compute its order, and TFDS by file."""
    common = dict(image_size=FLAGS.image_size, crop_size=FLAGS.crop_size,
                  batch_size=FLAGS.batch_size, seed=FLAGS.seed, start_step=start_step)
    if files is not None and keras.backend.backend() != "tensorflow":
        return ImageFolderDataset(files, steps=FLAGS.steps - start_step, skipped=skipped,
                                  workers=2, **common)
    from perceptual_style import tf_data

    if files is not None:
        return distribute.shard_by(tf_data.folder_dataset(files, skipped=skipped, **common), "data")
    return distribute.shard_by(load_tfds(tf_data.tfds_dataset, **common), "file")


def load_tfds(loader, *args, **kwargs):
    """Calls a TFDS loader for --content_tfds; its many failure types become one line."""
    try:
        return loader(FLAGS.content_tfds, *args, data_dir=FLAGS.tfds_data_dir,
                      download=FLAGS.tfds_download, **kwargs)
    except Exception as e:  # TFDS raises assertion, not-found and network errors alike
        raise cli.CommandError(
                               f"TFDS dataset {FLAGS.content_tfds} is not available ({str(e).splitlines()[0]}); "
                               "pass --content_dir=PHOTOS, or prepare it (--tfds_download)") from None


def init_from_dir(name):
    """The style folder --init_from names (itself, or <init_from>/<name>)."""
    try:
        return saved_nets.resolve(FLAGS.init_from)
    except FileNotFoundError:
        try:
            return saved_nets.resolve(name, FLAGS.init_from)
        except FileNotFoundError as e:
            raise cli.CommandError(f"--init_from: {e}") from None


def initial_network(name, num_styles, chosen_precision):
    """The network a run without --add_style trains: --init_from's, of its architecture
    (mobile, narrower, ...) and with its weights, computing in `chosen_precision`; else the
    paper's TransformerNet with fresh weights. A flag that asks for another architecture
    than --init_from's is an error. Every run of the same command builds it, so a resumed
    run rebuilds the architecture of its checkpoint."""
    if not FLAGS.init_from:
        return TransformerNet(upsampling=FLAGS.upsampling, num_styles=num_styles)
    directory = init_from_dir(name)
    try:
        net = saved_nets.load_transformer(directory, precision=chosen_precision)
    except ValueError as e:
        raise cli.CommandError(f"--init_from: {e}") from None
    if net.num_styles == 1 and num_styles > 1:
        net = repeat_style(net, num_styles)
    if net.num_styles != num_styles:
        raise cli.CommandError(f"--init_from: {directory} holds a network of {net.num_styles} "
                               f"styles, not of {num_styles} (nor of one, which every style "
                               "would start from)")
    if FLAGS["upsampling"].present and FLAGS.upsampling != net.upsampling:
        raise cli.CommandError(f"--upsampling={FLAGS.upsampling} contradicts --init_from: "
                               f"{directory} holds a network with {net.upsampling} upsampling")
    logging.info("starting %s from the weights in %s (%s network, computing in %s)", name,
                 directory, net.arch, net.compute_dtype)
    return net


def init_from_metadata(name):
    """--init_from's metadata, or {} where it has none readable."""
    try:
        return saved_nets.load_metadata(init_from_dir(name))
    except (OSError, ValueError):
        return {}


class Growth(NamedTuple):
    """What --add_style grows: --init_from's network, its metadata and its styles'
    metadata entries; the new style's name and recipe ({loss flag: value}); the style
    weights (over the old styles) its normalization parameters start from."""
    base: TransformerNet
    metadata: dict
    entries: list
    style: str
    recipe: dict
    start: np.ndarray

    def recipes(self):
        """{style: recipe} of the styles trained: the new one, after the old ones (their
        recipes as recorded) with --finetune_all."""
        old = {**self.metadata, "styles": self.entries}
        return {**({entry["name"]: style_flags.saved_recipe(old, entry["name"])
                    for entry in self.entries} if FLAGS.finetune_all else {}),
                self.style: self.recipe}


def growth(name):
    """The Growth that --add_style asks for, or a one-line CommandError."""
    directory = init_from_dir(name)
    try:
        base = saved_nets.load_transformer(directory)
        metadata = saved_nets.load_metadata(directory)
        entries = style_flags.recorded_styles(
            metadata, base.num_styles, os.path.basename(os.path.normpath(directory)))
    except (OSError, ValueError) as e:
        raise cli.CommandError(f"--init_from: {directory}: "
                               f"{getattr(e, 'strerror', None) or e}") from None
    names = [entry["name"] for entry in entries]
    [(style, recipe)] = style_flags.style_recipes([FLAGS.add_style]).items()
    if style in names:
        raise cli.CommandError(f"{directory} already has a style {style!r} (its styles: "
                               f"{', '.join(names)})")
    try:
        saved_nets.style_names({"styles": [*entries, {"name": style}]}, len(names) + 1)
    except ValueError as e:  # a single-style network's name unfit for NET:STYLE
        raise cli.CommandError(f"--init_from: {directory}: {e}") from None
    if FLAGS.add_style_from is None:
        start = np.full(len(names), 1 / len(names), np.float32)
    elif FLAGS.add_style_from in names:
        start = np.eye(len(names), dtype=np.float32)[names.index(FLAGS.add_style_from)]
    else:
        raise cli.CommandError(f"--add_style_from: {directory} has no style "
                               f"{FLAGS.add_style_from!r} (its styles: {', '.join(names)})")
    return Growth(base, metadata, entries, style, recipe, start)


def check_not_replacing(name, out_dir, start_step):
    """Training never silently replaces a network it did not start: one it resumes (a
    checkpoint) or continues (--init_from that folder) is its own."""
    if FLAGS.overwrite or start_step or not os.path.isfile(
            os.path.join(out_dir, saved_nets.WEIGHTS_FILE)):
        return
    if FLAGS.init_from and os.path.realpath(init_from_dir(name)) == os.path.realpath(out_dir):
        return
    raise cli.CommandError(f"{out_dir} already holds a trained {name}; train under another "
                           f"--name, or pass --overwrite to replace it")


def train(name):
    started = time.monotonic()
    placement = distribute.place(FLAGS.strategy)  # first: it may configure TensorFlow's runtime
    if FLAGS.time_budget and FLAGS.strategy == "multi_worker":
        raise cli.CommandError("--time_budget cannot stop every worker of a cluster at the same "
                               "step; use --steps")
    if FLAGS.crop_size and FLAGS.crop_size > FLAGS.image_size:
        raise cli.CommandError(f"--crop_size={FLAGS.crop_size} is larger than --image_size="
                               f"{FLAGS.image_size}")
    try:
        chosen_precision = precision.resolve(FLAGS.precision)
    except ValueError as e:
        raise cli.CommandError(str(e)) from None
    learning_rate = distribute.learning_rate(placement, FLAGS.batch_size, FLAGS.learning_rate,
                                             FLAGS.scale_learning_rate)
    grown = growth(name) if FLAGS.add_style else None
    # {style name: its loss flags} of the styles the trained network learns.
    recipes = (grown.recipes() if grown else style_flags.style_recipes(FLAGS.styles)
               if FLAGS.styles else {name: style_flags.flag_recipe()})
    paintings = [style_flags.style_image(recipe) for recipe in recipes.values()]
    files, samples = content_source()

    keras.utils.set_random_seed(FLAGS.seed)
    checkpoint_dir = os.path.join(FLAGS.checkpoint_dir, name,
                                  *([f"add_{grown.style}"] if grown else []))
    out_dir = os.path.join(FLAGS.saved_dir, name)
    with placement.scope(), precision.policy(chosen_precision):
        if grown is None:
            transformer = initial_network(name, len(recipes), chosen_precision)
        elif FLAGS.finetune_all:
            transformer = add_style(grown.base, style_network(grown.base, grown.start))
        else:  # the new style alone, on the frozen convolutions
            transformer = style_network(grown.base, grown.start)
            train_normalization_only(transformer)
        loss = (style_flags.multi_style_loss(recipes.values(), [p for _, p in paintings])
                if len(recipes) > 1 else style_flags.perceptual_loss(paintings[0][1],
                                                                     *recipes.values()))
        trainer = StyleTransferTrainer(transformer, loss)
        trainer.compile(optimizer=keras.optimizers.Adam(learning_rate))
        try:
            start_step = restore_checkpoint(trainer, checkpoint_dir)
        except ValueError as e:
            raise cli.CommandError(str(e)) from None
    # A resumed run counts what its starting weights had seen when it started, even where
    # its output has since replaced them (--init_from its own folder) or its command no
    # longer names them.
    prior = (grown.metadata if grown else
             (saved_nets.kept_prior(checkpoint_dir) if start_step else None)
             or (init_from_metadata(name) if FLAGS.init_from else None))
    if prior is not None and not start_step:
        saved_nets.keep_prior(checkpoint_dir, prior)
    distribute.check_same_step(placement, start_step)
    check_not_replacing(name, out_dir, start_step)
    if start_step:
        logging.info("resuming %s from its checkpoint at step %d", name, start_step)
    sessions = saved_nets.read_history(checkpoint_dir, start_step) if start_step else []
    run = {"batch_size": FLAGS.batch_size, "image_size": FLAGS.image_size,
           "crop_size": FLAGS.crop_size or FLAGS.image_size, "learning_rate": FLAGS.learning_rate,
           "backend": keras.backend.backend(), "precision": chosen_precision,
           "machine": precision.machine_description()}

    skipped = SkippedFiles()
    history, seconds_per_step, final_step = {}, None, start_step
    if start_step < FLAGS.steps:
        # Other workers of a cluster hold the chief's weights: they write no files.
        writer = (SummaryWriter.open(os.path.join(FLAGS.tensorboard_dir, name))
                  if placement.chief else None)
        checkpointer = cb.Checkpointer(checkpoint_dir, FLAGS.checkpoint_every, start_step,
                                       chief=placement.chief)
        # The bar shows the terms of the total; with several styles, each has its own weights.
        weights = None if len(recipes) > 1 else {
            term: next(iter(recipes.values()))[f"{term}_weight"]
            for term in ("content", "style", "tv", "saturation")}
        callbacks = [cb.NonFiniteLossGuard(start_step), checkpointer,
                     cb.ProgressBar(FLAGS.steps, start_step, weights)]
        budget = None
        if FLAGS.time_budget:
            budget = cb.TimeBudget(FLAGS.time_budget, started, start_step)
            callbacks.insert(0, budget)
        if placement.chief:
            callbacks.insert(2, cb.ProgressImages(samples, os.path.join(FLAGS.images_dir, name),
                                                  FLAGS.sample_every, writer, start_step))
        if writer is not None:
            callbacks.insert(2, cb.TensorBoardScalars(writer, FLAGS.log_every, start_step))
        fit_started = time.time()
        try:
            result = trainer.fit(make_dataset(files, start_step, skipped), epochs=1,
                                 steps_per_epoch=FLAGS.steps - start_step, verbose=0, shuffle=False,
                                 callbacks=callbacks)
        except cb.NonFiniteLossError as e:
            if placement.chief:  # the steps up to the last checkpoint stay trained
                saved_nets.record_session(
                    checkpoint_dir, sessions, start_step, checkpointer.last_saved,
                    time.time() - fit_started, run,
                    stopped=f"{e.what}; the steps after its last checkpoint "
                            f"({checkpointer.last_saved}) were dropped")
            raise cli.CommandError(f"{e}. The last good weights are in {checkpoint_dir} "
                                   f"(step {checkpointer.last_saved})") from None
        except distribute.lost_worker_errors(placement) as e:
            raise cli.CommandError(
                                   f"lost another worker of the cluster ({e.message.strip().splitlines()[0]}); "
                                   f"restart them all with the same command to resume from step "
                                   f"{checkpointer.last_saved}") from None
        except Exception as e:  # files unreadable since check_readable; tf.data wraps it
            if NO_READABLE_IMAGES not in str(e):
                raise
            raise cli.CommandError(NO_READABLE_IMAGES) from None
        finally:
            if writer is not None:
                writer.close()
        history = {k: [float(v) for v in values] for k, values in result.history.items()}
        final_step = (checkpointer.last_saved if checkpointer.interrupted
                      else int(np.asarray(trainer.optimizer.iterations)))
        seconds = time.time() - fit_started
        seconds_per_step = seconds / max(final_step - start_step, 1)
        if placement.chief:
            sessions = saved_nets.record_session(checkpoint_dir, sessions, start_step,
                                                 final_step, seconds, run)
        if len(skipped):
            logging.warning("%d content images were skipped (unreadable or of one colour)",
                            len(skipped))
        if checkpointer.interrupted:
            saved = "checkpoint saved" if placement.chief else "the chief saves checkpoints"
            print(f"\nInterrupted at step {checkpointer.last_saved} of {FLAGS.steps}; {saved} in "
                  f"{checkpoint_dir}. Run the same command again to resume.")
            return 130
        if placement.chief:
            save_checkpoint(trainer, checkpoint_dir)
        if budget is not None and budget.exhausted:
            print(f"\n--time_budget reached at step {final_step} of {FLAGS.steps}; "
                  f"checkpoint saved in {checkpoint_dir}.")
    if not placement.chief:
        print(f"\n{placement.task} trained {name} to step {final_step}; the "
              "chief writes the checkpoint and the trained network")
        return 0

    entries = [style_flags.style_entry(style, recipe, path and style_flags.sha256_of(path))
               for (style, recipe), (path, _) in zip(recipes.items(), paintings)]
    network = trainer.transformer
    if grown:
        facts = {"styles": grown.entries + entries[-1:]}
        if not FLAGS.finetune_all:
            network = add_style(grown.base, trainer.transformer)
    elif FLAGS.styles:
        facts = {"styles": entries}
    else:
        facts = {"style_sha256": entries[0]["style_sha256"]}
    metadata = saved_nets.trained_metadata(
        name, {f.name: f.value for f in FLAGS.get_key_flags_for_module(sys.modules[__name__])},
        run, final_step, sessions, prior, **facts,
        replicas=placement.replicas, learning_rate=learning_rate,
        final_losses={k: history[k][-1] for k in LOSS_NAMES if k in history},
        seconds_per_step=seconds_per_step, skipped_content_images=len(skipped),
        architecture=saved_nets.architecture(network))
    saved_nets.save_transformer(network, out_dir, metadata)
    print(f"\nTrained {name} for {metadata['steps']} steps: {os.path.join(out_dir, saved_nets.WEIGHTS_FILE)}")
    return 0


def _stem(path):
    """A file's name without folder, extension or URL query: a default --name."""
    return os.path.splitext(os.path.basename(path.split("?")[0]))[0]


def main(argv):
    if FLAGS.add_style:
        if FLAGS.style_image or FLAGS.styles:
            sys.exit("train: error: --add_style takes the style's image from its flagfile: "
                     "leave out --style_image (and a --flagfile that sets it) and --styles")
        if not FLAGS.init_from:
            sys.exit("train: error: --add_style grows a trained network: name it with "
                     "--init_from")
    elif FLAGS.finetune_all or FLAGS.add_style_from:
        sys.exit("train: error: --finetune_all and --add_style_from go with --add_style")
    elif FLAGS.styles:
        if FLAGS.style_image:
            sys.exit("train: error: --styles takes each style's image from its flagfile: leave "
                     "out --style_image (and a --flagfile that sets it)")
        if len(FLAGS.styles) < 2:
            sys.exit("train: error: --styles needs at least 2 styles (one style trains with "
                     "--flagfile=styles/NAME.flags)")
    elif not FLAGS.style_image:
        sys.exit("train: error: --style_image is required (or a --flagfile from styles/, or "
                 "--styles); see --helpfull")
    name = FLAGS.name or (
        f"{os.path.basename(os.path.normpath(FLAGS.init_from))}-{_stem(FLAGS.add_style)}"
        if FLAGS.add_style else "-".join(map(_stem, FLAGS.styles)) if FLAGS.styles
        else _stem(FLAGS.style_image))
    try:
        return train(name)
    except (distribute.DistributeError, ImageError, OSError) as e:  # one line
        sys.exit(f"train: error: {e}")
    except KeyboardInterrupt:
        print("train: interrupted; rerun the same command to resume from the last checkpoint",
              file=sys.stderr)
        return 130


def run():
    cli.run(main, "train")


if __name__ == "__main__":
    run()
