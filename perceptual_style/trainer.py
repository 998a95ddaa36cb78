"""Training a TransformerNet against the perceptual losses, with `Model.fit`.

`StyleTransferTrainer` is a `keras.Model` that holds the transformer (the only trainable
part), the frozen loss network and the style's Gram matrices; calling it on a batch of
content images returns the losses. A transformer of several styles (conditional instance
normalization) learns them all at once: in every batch, each image is stylized in one of
them and judged by that style's loss (losses.MultiStylePerceptualLoss). Its `train_step` is written per backend, as Keras 3
asks: a `tf.GradientTape` step on TensorFlow, a stateless `jax.value_and_grad` step on JAX.
Both also run data parallel (see distribute.py): under a tf.distribute strategy, or with
`keras.distribution.DataParallel`, where JAX reduces the sharded batch's mean itself.
Nothing here imports TensorFlow when the backend is JAX.
"""

import keras
from keras import ops

from perceptual_style.transformer_net import INPUT_SHAPE, blocked_conv, kernels


class StyleTransferTrainer(keras.Model):
    """Trains `transformer` against `perceptual_loss`, a built losses.PerceptualLoss (e.g.
    style_flags.perceptual_loss()), or for a transformer of N styles a
    losses.MultiStylePerceptualLoss of N (style_flags.multi_style_loss())."""

    def __init__(self, transformer, perceptual_loss, **kwargs):
        super().__init__(**kwargs)
        if not transformer.built:
            transformer.build(INPUT_SHAPE)
        if len(getattr(perceptual_loss, "losses", [perceptual_loss])) != transformer.num_styles:
            raise ValueError(f"a transformer of {transformer.num_styles} styles needs a loss "
                             "for each")
        self.transformer = transformer
        self.loss_network = perceptual_loss.loss_network  # tracked: its weights are the model's
        self.perceptual_loss = perceptual_loss

    def call(self, images, training=False, style_weights=None):
        """Content images in [0, 255] -> {content, style, tv, saturation, total} losses; a
        transformer of N styles takes one-hot `style_weights` (batch, N): each image's style."""
        images = ops.cast(images, "float32")
        styled = {} if style_weights is None else {"style_weights": style_weights}
        with kernels(narrow_conv=blocked_conv):
            stylized, logits = self.transformer(images, training=training, return_logits=True,
                                                **styled)
        stylized = ops.cast(stylized, "float32")
        # A pass of the loss network for each: one pass over both, sliced, took its
        # backward pass over the photos too (measured: 2.6 s of a 4.4 s step, 1.75 s apart).
        features = self.perceptual_loss.features(stylized)
        target = self.perceptual_loss.content_target(images)
        return self.perceptual_loss(stylized, target, features, logits, **styled)

    def style_schedule(self, step, images):
        """{} for one style; else {"style_weights": style_schedule(...)} of the batch
        `images` at optimizer step `step`."""
        styles = self.transformer.num_styles
        if styles == 1:
            return {}
        return {"style_weights": style_schedule(step, ops.shape(images)[0], styles)}

    def train_step(self, *args):
        if keras.backend.backend() == "jax":
            return self._jax_train_step(*args)
        if keras.backend.backend() == "tensorflow":
            return self._tf_train_step(*args)
        raise NotImplementedError(f"no train_step for the {keras.backend.backend()} backend")

    def _tf_train_step(self, data):
        import tensorflow as tf

        images, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            losses = self(images, training=True,
                          **self.style_schedule(self.optimizer.iterations, images))
            # Under a tf.distribute strategy each replica sees 1/N of the global batch and the
            # optimizer sums the replicas' gradients: dividing by N makes that sum the mean
            # gradient over the global batch (N = 1 without a strategy).
            total = losses["total"] / tf.distribute.get_strategy().num_replicas_in_sync
        gradients = tape.gradient(total, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        return losses

    def _jax_train_step(self, state, data):
        import jax

        images, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        trainable, non_trainable, optimizer_variables, metrics_variables = state
        with keras.StatelessScope(zip(self.optimizer.variables, optimizer_variables)):
            styled = self.style_schedule(self.optimizer.iterations.value, images)

        def total_loss(trainable, non_trainable):
            losses, non_trainable = self.stateless_call(
                trainable, non_trainable, images, training=True, **styled)
            return losses["total"], (losses, non_trainable)

        (_, (losses, non_trainable)), gradients = jax.value_and_grad(
            total_loss, has_aux=True)(trainable, non_trainable)
        trainable, optimizer_variables = self.optimizer.stateless_apply(
            optimizer_variables, gradients, trainable)
        return losses, (trainable, non_trainable, optimizer_variables, metrics_variables)


def style_schedule(step, count, num_styles):
    """The one-hot style weights (count, num_styles) of a batch of `count` images at
    optimizer step `step`: image i learns style (step * count + i) % num_styles, so every
    batch mixes the styles, each gets an even share, and a resumed run goes on as if never
    stopped (distill.py mixes its teachers the same way)."""
    index = (ops.cast(step, "int32") * count + ops.arange(count, dtype="int32")) % num_styles
    return ops.one_hot(index, num_styles)
