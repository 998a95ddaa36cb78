"""frozen.py: the network as a graph with its weights as constants computes what the
network does, at any size and batch, with the weights it had when frozen."""

import numpy as np

from conftest import tensorflow_only
from perceptual_style.frozen import frozen_function

pytestmark = tensorflow_only


def test_a_frozen_network_computes_what_the_network_does_at_any_size_and_batch(net):
    function = frozen_function(net)
    rng = np.random.default_rng(0)
    # Sizes and batches in turn, the first again last: TensorFlow keeps each convolution's
    # reordered weights from its first call, which must not leak into another shape's.
    for batch, height, width in [(1, 37, 45), (2, 64, 48), (1, 20, 32), (1, 37, 45)]:
        images = rng.uniform(0, 255, (batch, height, width, 3)).astype(np.float32)
        expected = np.asarray(net(images))
        assert np.abs(function(images).numpy() - expected).max() < 0.01


def test_a_frozen_network_keeps_the_weights_it_was_frozen_with(net):
    images = np.random.default_rng(1).uniform(0, 255, (1, 24, 28, 3)).astype(np.float32)
    function = frozen_function(net)
    before = np.asarray(net(images))
    weights = net.get_weights()
    try:
        net.set_weights([w * 1.5 + 0.1 for w in weights])
        assert np.abs(np.asarray(net(images)) - before).max() > 1  # the network changed
        assert np.abs(function(images).numpy() - before).max() < 0.01  # the graph did not
    finally:
        net.set_weights(weights)
