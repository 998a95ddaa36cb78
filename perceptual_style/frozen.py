"""A network's forward pass as a TensorFlow graph whose weights are constants. TensorFlow only.

Why: for a float32 convolution of one image whose weights are a variable's, TensorFlow's
oneDNN kernel fixes the weights' memory order to its own (HWIO); oneDNN's AVX2 direct
convolutions refuse that order, which leaves the im2col + matmul one, about 2.5x slower
on the residual convolutions and 4.5x on the 32 -> 3 output one. With the weights as
graph constants TensorFlow lets oneDNN choose the order (and reorders them once), as it
does for any batch over 1. With AVX-512 oneDNN takes HWIO weights directly, and freezing
gains nothing measurable; it costs memory (about 100 MiB more peak), so it is for
float32 inference where AVX-512 is missing (README, Benchmarks).
"""


def frozen_function(net):
    """`net` (a single-style TransformerNet, in any precision policy) as a function of
    float32 images (batch, height, width, 3) in [0, 255] -> the stylized images as a
    tensor, one graph for every size and batch, with the weights `net` has now folded in:
    for inference only, as later changes to them do not reach it."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    spec = tf.TensorSpec((None, None, None, 3), tf.float32)
    graph = convert_variables_to_constants_v2(tf.function(net).get_concrete_function(spec))
    # A frozen function returns its outputs as a list: the network has one.
    return lambda images: graph(tf.convert_to_tensor(images, tf.float32))[0]
