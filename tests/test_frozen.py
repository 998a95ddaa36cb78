"""frozen.py: the network as a graph with its weights as constants computes what the
network does, at any size and batch, with the weights it had when frozen; in bfloat16,
a graph over its variables computes what the network does eagerly; its fused kernels
compute what the generic ops they replace do."""

import os

import numpy as np

from conftest import REPO, multi_style_net, photo, tensorflow_only
from perceptual_style import frozen, saved_nets
from perceptual_style.frozen import (_instance_norm, _narrow_conv, _reflect_pad,
                                     compiled_function, frozen_function)

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


def test_a_frozen_network_of_several_styles_takes_its_style_weights():
    several = multi_style_net(3, num_residual_blocks=1, width_multiplier=0.5)
    function = frozen_function(several)
    images = photo(36, 44)[None].astype(np.float32)
    for weights in [np.eye(3, dtype=np.float32)[1], np.array([0.6, 0.0, 0.4], np.float32)]:
        expected = np.asarray(several(images, style_weights=weights))
        assert np.abs(function(images, weights).numpy() - expected).max() < 0.01
    # One row per image, as the SavedModel's signatures give them.
    pair = np.concatenate([images, images[:, ::-1]])
    rows = np.array([[0.0, 1.0, 0.0], [0.6, 0.0, 0.4]], np.float32)
    expected = np.asarray(several(pair, style_weights=rows))
    assert np.abs(expected[0] - expected[1][::-1]).max() > 1  # the rows differ
    assert np.abs(function(pair, rows).numpy() - expected).max() < 0.01


def test_a_bfloat16_graph_computes_what_the_network_does_eagerly():
    """Where TensorFlow's graph optimizer once turned the input's division by 127.5 into a
    multiply by its reciprocal rounded to bfloat16, 0.4% off (measured here on `mosaic`,
    trained, whose outputs sit where tanh is steep: max 27, mean 0.90 grey levels; now 7.1
    and 0.39, bfloat16's own rounding in a different order)."""
    half = saved_nets.load_transformer("mosaic", os.path.join(REPO, "savedNets"), "bfloat16")
    images = np.stack([photo(96, 128, seed) for seed in range(2)]).astype(np.float32)
    difference = np.abs(compiled_function(half)(images).numpy()
                        - np.asarray(half(images), np.float32))
    assert difference.max() < 12 and difference.mean() < 0.6


def test_the_reflection_kernel_pads_as_mirror_pad_does():
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(2).normal(size=(2, 7, 6, 3)), tf.float32)
    for rows, cols in [((1, 1), (1, 1)), ((4, 4), (4, 4)), ((0, 3), (2, 0)), ((0, 0), (5, 1))]:
        expected = tf.pad(x, [(0, 0), rows, cols, (0, 0)], mode="REFLECT")
        dynamic = tf.function(lambda x: _reflect_pad(x, rows, cols),  # noqa: B023
                              input_signature=[tf.TensorSpec((None, None, None, 3))])
        for padded in (_reflect_pad(x, rows, cols), dynamic(x)):
            assert padded.shape == expected.shape
            assert np.array_equal(padded.numpy(), expected.numpy())


def test_the_normalization_kernel_normalizes_each_image_by_its_own_statistics():
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(3, 9, 11, 4)) * [1, 5, 0.1, 2] + [0, -3, 7, 1]).astype(np.float32)
    x[1] *= 10  # images of different statistics
    scale = rng.uniform(0.5, 2, (3, 4)).astype(np.float32)
    offset = rng.normal(size=(3, 4)).astype(np.float32)

    def expected(x, scale, offset):  # scale and offset (batch or 1, channels)
        normalized = (x - x.mean((1, 2), keepdims=True)) / np.sqrt(x.var((1, 2), keepdims=True)
                                                                   + 1e-5)
        return normalized * scale[:, None, None] + offset[:, None, None]

    def error(result, expected):
        return np.abs(result.numpy() - expected).max()

    assert error(_instance_norm(x, scale, offset, 1e-5), expected(x, scale, offset)) < 1e-4
    # One row for the whole batch; one image through the path without transposes.
    assert error(_instance_norm(x, scale[:1], offset[:1], 1e-5),
                 expected(x, scale[:1], offset[:1])) < 1e-4
    assert error(_instance_norm(x[1:2], scale[2], offset[2], 1e-5, single=True),
                 expected(x[1:2], scale[2:], offset[2:])) < 1e-4


def test_the_narrow_convolution_kernel_convolves_as_a_convolution_does():
    import tensorflow as tf

    rng = np.random.default_rng(4)
    kernel = tf.constant(rng.normal(size=(9, 9, 5, 3)), tf.float32)
    bias = tf.constant(rng.normal(size=3), tf.float32)
    # Even and odd sizes, a single output row; bfloat16 input is convolved in bands (of
    # one output row, and empty ones, at 10 and 9 rows).
    for height, width in [(20, 24), (17, 10), (9, 12), (18, 9), (25, 16)]:
        for dtype in (tf.float32, tf.bfloat16):
            x = tf.cast(tf.constant(rng.normal(size=(2, height, width, 5))), dtype)
            expected = tf.nn.conv2d(tf.cast(x, tf.float32), kernel, 1, "VALID") + bias
            result = _narrow_conv(x, kernel, bias)
            assert result.dtype == tf.float32 and result.shape == expected.shape
            assert np.abs(result.numpy() - expected.numpy()).max() < 1e-4


def test_the_graphs_normalize_and_pad_with_the_fused_kernels(net):
    """The graph holds fused batch normalization and no generic moments; MirrorPad only
    where the input's pad to a multiple of 4 is by amounts known at run time; the output
    layer's convolution is to 12 channels (2x2 blocks of 3)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    from perceptual_style.frozen import _fused, _specs

    for batch in (1, None):
        with _fused(batch):
            graph = convert_variables_to_constants_v2(
                tf.function(net).get_concrete_function(*_specs(net, batch)))
        ops = [node.op for node in graph.graph.as_graph_def().node]
        assert ops.count("FusedBatchNormV3") == 15 and "SquaredDifference" not in ops
        assert ops.count("MirrorPad") == 1 and ops.count("Transpose") == (0 if batch else 30) + 2
        assert ops.count("DepthToSpace") == 1


def _ancestors(op):
    """Every op that `op` waits for, through its inputs and control inputs."""
    seen, stack = set(), [op]
    while stack:
        current = stack.pop()
        for parent in [t.op for t in current.inputs] + list(current.control_inputs):
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def test_a_bfloat16_graph_convolves_its_float32_output_layer_in_bands_one_after_another(
        monkeypatch):
    """So that its input is copied to float32 a band at a time; each output pixel is what
    one convolution gives it."""
    import tensorflow as tf

    half = multi_style_net(1, num_residual_blocks=1, width_multiplier=0.5, precision="bfloat16")
    with frozen._fused(None):
        graph = tf.function(half).get_concrete_function(*frozen._specs(half)).graph
    convolutions = [op for op in graph.get_operations()
                    if op.type == "Conv2D" and op.get_attr("T") == tf.float32]
    assert len(convolutions) == frozen.BANDS > 1
    for before, after in zip(convolutions, convolutions[1:]):
        assert before in _ancestors(after)
    rng = np.random.default_rng(2)
    batches = [rng.uniform(0, 255, (batch, height, width, 3)).astype(np.float32)
               for batch, height, width in [(1, 1, 1), (2, 37, 45), (1, 64, 48)]]
    banded = [compiled_function(half)(images).numpy() for images in batches]
    monkeypatch.setattr(frozen, "BANDS", 1)
    whole = compiled_function(half)  # traced at its first call, in one band
    for images, stylized in zip(batches, banded):
        assert stylized.shape == images.shape
        assert np.abs(stylized - whole(images).numpy()).max() < 0.01
