"""Distilling a style into the mobile network."""

import keras
import numpy as np

from conftest import photo, run_cli
from perceptual_style.data import list_images
from perceptual_style.distill import distill
from perceptual_style.saved_nets import load_metadata, load_transformer, save_transformer
from perceptual_style.transformer_net import TransformerNet


def mse(a, b):
    return float(np.mean((keras.ops.convert_to_numpy(a) - keras.ops.convert_to_numpy(b)) ** 2))


def test_student_moves_towards_the_teacher(net, photo_dir):
    keras.utils.set_random_seed(7)
    student = TransformerNet(arch="mobile", width_multiplier=0.25, num_residual_blocks=1)
    held_out = np.stack([photo(32, 32, seed=s) for s in (30, 31)]).astype(np.float32)
    student(held_out)
    before = mse(student(held_out), net(held_out))
    losses = distill(net, student, list_images(str(photo_dir)), steps=40, image_size=32,
                     batch_size=2, learning_rate=3e-3, log_every=20, verbose=0)
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert mse(student(held_out), net(held_out)) < 0.8 * before


def test_cli_saves_a_loadable_student(tiny_style, photo_dir, tmp_path):
    teacher_dir = tmp_path / "nets" / "toy"
    save_transformer(load_transformer(str(tiny_style)), str(teacher_dir),
                     {"steps": 3, "flags": {"style_image": "painting.jpg"},
                      "architecture": {"arch": "full"}})
    result = run_cli(["perceptual_style.distill", "--teacher=toy", f"--saved_dir={tmp_path / 'nets'}",
                      f"--output_dir={tmp_path / 'out'}", f"--content_dir={photo_dir}",
                      "--steps=4", "--log_every=2", "--image_size=32", "--batch_size=2",
                      "--width_multiplier=0.25", "--num_residual_blocks=1"])
    assert result.returncode == 0, result.stderr[-3000:]
    student = load_transformer(str(tmp_path / "out" / "toy_mobile"))
    assert student.arch == "mobile" and student.num_residual_blocks == 1
    # The student's architecture, not its teacher's.
    assert load_metadata(str(tmp_path / "out" / "toy_mobile"))["architecture"] == {
        "arch": "mobile", "width_multiplier": 0.25, "num_residual_blocks": 1,
        "upsampling": "nearest", "padding": "zero"}
    metadata = load_metadata(str(tmp_path / "out" / "toy_mobile"))
    assert metadata["distilled_from"] == "toy" and metadata["teacher_steps"] == 3
    assert metadata["flags"] == {"style_image": "painting.jpg"}  # the teacher's, for quality.py
    assert len(metadata["distillation_loss_every_log"]) == 2


def test_cli_missing_teacher_is_one_line(tmp_path):
    result = run_cli(["perceptual_style.distill", "--teacher=nope", f"--saved_dir={tmp_path}",
                      f"--content_dir={tmp_path}"])
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("distill: error: no trained style 'nope'")
