"""tools/select_styles.py cuts a saved network of several styles to some of them (its help
and flag errors: test_cli.py)."""

import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import HANG_TIMEOUT, REPO, multi_style_net
from perceptual_style.saved_nets import load_metadata, load_transformer, save_transformer

STYLES = ["candy", "snight", "wave", "mosaic"]


def select(*flags):
    return subprocess.run([sys.executable, "tools/select_styles.py", *flags], cwd=REPO,
                          capture_output=True, text=True, timeout=HANG_TIMEOUT)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A saved network of STYLES, with metadata as training writes it."""
    folder = tmp_path_factory.mktemp("nets") / "paintings"
    metadata = {"name": "paintings", "steps": 40, "flags": {"batch_size": 4},
                "styles": [{"name": name, "style_sha256": f"sha-{name}",
                            "flags": {"style_weight": i + 1.0}}
                           for i, name in enumerate(STYLES)]}
    save_transformer(multi_style_net(len(STYLES), num_residual_blocks=1, width_multiplier=0.5),
                     str(folder), metadata)
    return folder


def outputs(net, images, rows):
    return [keras.ops.convert_to_numpy(net(images, style_weights=w)) for w in rows]


def test_kept_styles_compute_as_in_the_saved_network_and_keep_their_metadata(saved, tmp_path):
    output = tmp_path / "paintings3"
    result = select(f"--net={saved}", "--styles=wave,snight,mosaic", f"--output={output}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Kept wave, snight, mosaic of paintings's 4 styles" in result.stdout
    whole, kept = load_transformer(str(saved)), load_transformer(str(output))
    assert kept.num_styles == 3
    images = np.random.default_rng(0).uniform(0, 255, (1, 20, 24, 3)).astype("float32")
    for after, before in zip(outputs(kept, images, np.eye(3, dtype="float32")),
                             outputs(whole, images, np.eye(4, dtype="float32")[[2, 1, 3]])):
        np.testing.assert_array_equal(after, before)
    [blend] = outputs(kept, images, [np.array([0.5, 0.25, 0.25], "float32")])
    [original] = outputs(whole, images, [np.array([0.0, 0.25, 0.5, 0.25], "float32")])
    np.testing.assert_allclose(blend, original, atol=1e-3)
    before, after = load_metadata(str(saved)), load_metadata(str(output))
    assert after["styles"] == [before["styles"][i] for i in (2, 1, 3)]
    assert after["name"] == "paintings3"
    assert {k: after[k] for k in ("steps", "flags")} == {k: before[k] for k in ("steps", "flags")}
    [record] = after["selected_from"]
    assert {k: record[k] for k in ("name", "styles", "kept")} == {
        "name": "paintings", "styles": STYLES, "kept": ["wave", "snight", "mosaic"]}
    # A network replaced only with --overwrite, here by a cut of itself; each cut recorded.
    again = (f"--net={output}", "--styles=mosaic,wave", f"--output={output}")
    refused = select(*again)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        f"select_styles: error: {output} already holds a trained network: give another "
        "--output, or pass --overwrite to replace it"]
    assert load_transformer(str(output)).num_styles == 3
    assert select(*again, "--overwrite").returncode == 0
    assert load_transformer(str(output)).num_styles == 2
    metadata = load_metadata(str(output))
    assert [s["name"] for s in metadata["styles"]] == ["mosaic", "wave"]
    assert [r["kept"] for r in metadata["selected_from"]] == [["wave", "snight", "mosaic"],
                                                              ["mosaic", "wave"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["paintings3"]  # nothing left behind


@pytest.mark.parametrize("styles,message", [
    ("wave,udnie", "paintings has no style 'udnie' (its styles: candy, snight, wave, mosaic)"),
    ("wave,snight,wave", "--styles: 'wave' is given twice"),
    ("wave", "--styles: keep at least 2 styles"),
])
def test_bad_style_names_are_one_line_errors(saved, tmp_path, styles, message):
    output = tmp_path / "cut"
    result = select(f"--net={saved}", f"--styles={styles}", f"--output={output}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"select_styles: error: {message}")
    assert not output.exists()


def test_a_folder_that_is_no_network_is_never_replaced(saved, tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    result = select(f"--net={saved}", "--styles=wave,snight", f"--output={tmp_path}",
                    "--overwrite")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"select_styles: error: {tmp_path} exists and holds no trained network: give a new "
        "--output"]
    assert (tmp_path / "notes.txt").read_text() == "keep me"

