"""The pretrained styles committed in savedNets/: six styles (snight among them), each with
weights that load and the metadata that says how it was trained."""

import json
import os

import keras
import numpy as np
import pytest

from conftest import REPO
from perceptual_style.saved_nets import METADATA_FILE, WEIGHTS_FILE, load_transformer

SAVED = os.path.join(REPO, "savedNets")
STYLES = sorted(d for d in os.listdir(SAVED) if os.path.isfile(os.path.join(SAVED, d, WEIGHTS_FILE)))
FULL_STYLES = [s for s in STYLES if not s.endswith("_mobile")]
METADATA_KEYS = {"flags", "backend", "steps", "batch_size", "images_seen", "final_losses", "date",
                 "style_sha256", "image_size"}


def test_six_full_styles_ship_with_starry_night_among_them():
    assert len(FULL_STYLES) >= 6 and "snight" in FULL_STYLES


@pytest.mark.parametrize("style", STYLES)
def test_a_pretrained_style_loads_stylizes_and_says_how_it_was_trained(style):
    folder = os.path.join(SAVED, style)
    with open(os.path.join(folder, METADATA_FILE)) as f:
        metadata = json.load(f)
    required = METADATA_KEYS if style in FULL_STYLES else METADATA_KEYS - {"final_losses"}
    assert required <= set(metadata), required - set(metadata)
    assert {"style_image", "vgg_weights"} <= set(metadata["flags"])  # the loss recipe
    assert metadata["images_seen"] >= metadata["steps"] * metadata["batch_size"] > 0
    assert os.path.getsize(os.path.join(folder, WEIGHTS_FILE)) < 4 * 2**20  # float16
    photo = np.random.default_rng(0).uniform(0, 255, (1, 37, 53, 3)).astype(np.float32)
    out = keras.ops.convert_to_numpy(load_transformer(folder)(photo))
    assert out.shape == photo.shape and np.isfinite(out).all()
    assert 0 <= out.min() and out.max() <= 255 and np.abs(out - photo).mean() > 5
