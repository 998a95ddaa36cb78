import numpy as np
from keras import ops

from perceptual_style.losses import content_loss, gram_matrix, style_loss, total_variation_loss

rng = np.random.default_rng(0)


def np_gram(f):
    b, h, w, c = f.shape
    flat = f.reshape(b, h * w, c)
    return np.einsum("bpi,bpj->bij", flat, flat) / (h * w * c)


def test_gram_matrix():
    f = rng.normal(size=(3, 5, 6, 4)).astype("float32")
    np.testing.assert_allclose(ops.convert_to_numpy(gram_matrix(f)), np_gram(f), rtol=1e-5, atol=1e-6)
    # Normalized by the feature size: a tiled copy of the same texture has the same Gram.
    tiled = np.tile(f, (1, 2, 2, 1))
    np.testing.assert_allclose(ops.convert_to_numpy(gram_matrix(tiled)), np_gram(f), rtol=1e-5, atol=1e-6)


def test_content_loss():
    a, b = rng.normal(size=(2, 2, 3, 4, 5)).astype("float32")
    assert np.isclose(float(content_loss(a, b)), np.mean((a - b) ** 2), rtol=1e-6)
    assert float(content_loss(a, a)) == 0


def test_style_loss():
    feats = {"l1": rng.normal(size=(2, 8, 8, 3)).astype("float32"),
             "l2": rng.normal(size=(2, 4, 4, 6)).astype("float32")}
    targets = {"l1": np_gram(rng.normal(size=(1, 8, 8, 3))).astype("float32"),
               "l2": np_gram(rng.normal(size=(1, 5, 5, 6))).astype("float32")}
    weights = {"l1": 0.5, "l2": 2.0}
    expected = sum(w * np.mean(np.sum((np_gram(feats[k]) - targets[k]) ** 2, axis=(1, 2)))
                   for k, w in weights.items())
    assert np.isclose(float(style_loss(feats, targets, weights)), expected, rtol=1e-5)
    same = {k: np_gram(v[:1]) for k, v in feats.items()}
    assert float(style_loss({k: v[:1] for k, v in feats.items()}, same, weights)) < 1e-10


def test_total_variation_loss():
    x = rng.uniform(0, 255, (2, 6, 7, 3)).astype("float32")
    expected = np.mean((x[:, 1:] - x[:, :-1]) ** 2) + np.mean((x[:, :, 1:] - x[:, :, :-1]) ** 2)
    assert np.isclose(float(total_variation_loss(x)), expected, rtol=1e-5)
    assert float(total_variation_loss(np.full((1, 4, 4, 3), 7.0, "float32"))) == 0
