"""Style transfer by optimizing the pixels (Gatys, Ecker and Bethge 2016): the slow method
the transformer network replaces, with the same VGG19 and the same loss.

    python -m perceptual_style.optimize --style=snight --content=photo.jpg \\
        [--iterations=200] [--optimizer=lbfgs|adam] [--output=optimized.jpg]

The image starts as the photo (`--init=content`) or as noise and is updated by the
gradient of the total perceptual loss itself: L-BFGS (scipy's L-BFGS-B, pixels bounded to
[0, 255]) or Adam (keras.optimizers, pixels clipped after each step). The loss is built in
`keras.ops`; only taking its gradient is written per backend (TensorFlow or JAX).
"""

import importlib
import os
import sys
import time

import keras
import numpy as np
from absl import flags
from keras import ops

from perceptual_style import cli
from perceptual_style.images import ImageError, load_rgb, save_image

OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise")
FLAGS = flags.FLAGS


def value_and_gradient(function):
    """image (float32 numpy) -> (loss, d loss / d image) as numpy, compiled once."""
    if keras.backend.backend() == "jax":
        import jax

        compiled = jax.jit(jax.value_and_grad(function))
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        @tf.function(reduce_retracing=True)
        def compiled(image):
            with tf.GradientTape() as tape:
                tape.watch(image)
                value = function(image)
            return value, tape.gradient(value, image)
    else:
        raise NotImplementedError(f"no gradient for the {keras.backend.backend()} backend")

    def evaluate(image):
        value, gradient = compiled(ops.convert_to_tensor(image, "float32"))
        return float(value), np.asarray(ops.convert_to_numpy(gradient))

    return evaluate


def optimize_image(loss, content, iterations, optimizer="lbfgs", init="content",
                   learning_rate=5.0, seed=0, verbose=False):
    """Minimizes `loss` (a losses.PerceptualLoss) over the pixels of an image the size of
    `content` (RGB [0, 255]) for `iterations` steps; returns (image float32 [0, 255],
    history): history holds (seconds since the start, total loss) at the start and after
    each iteration."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    content = np.asarray(content, np.float32)[None]
    target = loss.content_target(content)
    evaluate = value_and_gradient(lambda image: loss(image, target)["total"])
    if init == "content":
        start = content
    elif init == "noise":
        start = np.random.default_rng(seed).uniform(0, 255, content.shape).astype(np.float32)
    else:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    progress = keras.utils.Progbar(iterations, verbose=1 if verbose else 0,
                                   stateful_metrics=["loss"])
    history = []
    evaluate(start)  # compiles: times count from the first compiled evaluation
    started = time.perf_counter()

    def record(value):
        history.append((time.perf_counter() - started, value))
        progress.add(1, [("loss", value)])

    if optimizer == "adam":
        image = keras.Variable(start, name="image")
        adam = keras.optimizers.Adam(learning_rate)
        for step in range(iterations + 1):
            value, gradient = evaluate(image.numpy())
            if step == 0:
                history.append((time.perf_counter() - started, value))
            else:
                record(value)  # the loss after `step` updates
            if step < iterations:
                adam.apply([gradient], [image])
                image.assign(ops.clip(image, 0.0, 255.0))
        return image.numpy()[0], history
    from scipy.optimize import minimize

    def function(flat):
        value, gradient = evaluate(flat.reshape(content.shape).astype(np.float32))
        if not history:
            history.append((time.perf_counter() - started, value))
        return value, gradient.ravel().astype(np.float64)

    def step(intermediate_result):  # scipy passes the result object to this parameter name
        record(float(intermediate_result.fun))

    result = minimize(function, start.ravel().astype(np.float64), jac=True, method="L-BFGS-B",
                      bounds=[(0.0, 255.0)] * start.size, callback=step,
                      options={"maxiter": iterations, "maxfun": 2 * iterations})
    return result.x.reshape(content.shape[1:]).astype(np.float32), history


def define_flags():
    """The CLI's own flags, defined only when it runs (tools/benchmark.py imports
    optimize_image); the loss's flags are style_flags', shared with training."""
    importlib.import_module("perceptual_style.style_flags")  # defines them
    flags.DEFINE_string("content", None, "The photo to stylize.")
    flags.DEFINE_string("style", None, "The style: a name in styles/ (snight), a .flags file "
                        "(its loss flags are used) or a painting. Loss flags given here win.")
    flags.DEFINE_integer("image_size", 256, "Scale the photo so its shorter side has this many "
                         "pixels (0: keep its size).", lower_bound=0)
    flags.DEFINE_integer("iterations", 200, "Optimizer iterations.", lower_bound=1)
    flags.DEFINE_enum("optimizer", "lbfgs", list(OPTIMIZERS), "L-BFGS (as Gatys et al.) or Adam.")
    flags.DEFINE_float("learning_rate", 5.0, "Adam's step size, in grey levels.", lower_bound=0)
    flags.DEFINE_enum("init", "content", list(INITS), "Start from the photo or from noise.")
    flags.DEFINE_integer("seed", 0, "Seed of the noise start.")
    flags.DEFINE_string("output", "optimized.jpg", "Where to write the result (.jpg or .png).")


def main(argv):
    from perceptual_style import style_flags

    if not FLAGS.content or not (FLAGS.style or FLAGS.style_image):
        sys.exit("optimize: error: --content and --style are required; see --helpfull")
    if os.path.splitext(FLAGS.output)[1].lower() not in (".jpg", ".jpeg", ".png"):
        sys.exit(f"optimize: error: --output must end in .jpg or .png, got {FLAGS.output}")
    try:
        if FLAGS.style:
            style_flags.apply_style(FLAGS.style)
        photo = load_rgb(FLAGS.content, shorter_side=FLAGS.image_size)
        _, style = style_flags.style_image()
        loss = style_flags.perceptual_loss(style)
        started = time.time()
        image, history = optimize_image(loss, photo, FLAGS.iterations,
                                        FLAGS.optimizer, FLAGS.init, FLAGS.learning_rate,
                                        FLAGS.seed, verbose=True)
        save_image(image, FLAGS.output)
    except (ImageError, OSError) as e:
        sys.exit(f"optimize: error: {e}")
    print(f"{FLAGS.optimizer}, {len(history) - 1} iterations, {time.time() - started:.1f} s: total "
          f"loss {history[0][1]:.4g} -> {history[-1][1]:.4g}; wrote {FLAGS.output}")
    return 0


def run():
    define_flags()
    cli.run(main, "optimize")


if __name__ == "__main__":
    run()
