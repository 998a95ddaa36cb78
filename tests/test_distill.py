"""Distilling a style into the mobile network, and several into one network of as many styles."""

import keras
import numpy as np
import pytest

from conftest import photo, run_cli
from perceptual_style.data import list_images
from perceptual_style.distill import TeacherTargets, distill
from perceptual_style.saved_nets import load_metadata, load_transformer, save_transformer
from perceptual_style.transformer_net import INPUT_SHAPE, TransformerNet


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


SMALL = {"arch": "mobile", "width_multiplier": 0.25, "num_residual_blocks": 1}


def small_net(seed, num_styles=1):
    keras.utils.set_random_seed(seed)
    net = TransformerNet(num_styles=num_styles, **SMALL)
    net.build(INPUT_SHAPE)
    return net


def test_batches_mix_the_teachers_as_training_mixes_styles():
    """Image i of step s goes to teacher (s * batch + i) % N, and its target is that
    teacher's output."""
    teachers = [small_net(seed) for seed in (1, 2, 3)]
    images = np.stack([photo(16, 16, seed=s) for s in range(4)]).astype(np.float32)

    class Crops:
        def __getitem__(self, step):
            return (images,)

    targets = TeacherTargets(Crops(), teachers, per_epoch=2)
    targets.on_epoch_end()  # the second epoch: steps 2 and 3
    (inputs, weights), expected = targets[1]
    assert np.array_equal(inputs, images)
    assert weights.argmax(axis=1).tolist() == [0, 1, 2, 0]  # step 3: (12 + i) % 3
    assert np.array_equal(weights.sum(axis=1), np.ones(4))
    for i, style in enumerate([0, 1, 2, 0]):
        np.testing.assert_allclose(expected[i], keras.ops.convert_to_numpy(
            teachers[style](images[i:i + 1]))[0], atol=1e-3)


def test_a_student_of_two_styles_moves_towards_each_teacher(photo_dir):
    teachers = [small_net(1), small_net(2)]
    student = small_net(5, num_styles=2)
    held_out = np.stack([photo(32, 32, seed=s) for s in (30, 31)]).astype(np.float32)
    one_hot = np.eye(2, dtype=np.float32)
    before = [mse(student(held_out, style_weights=one_hot[k]), teachers[k](held_out))
              for k in range(2)]
    losses = distill(teachers, student, list_images(str(photo_dir)), steps=60, image_size=32,
                     batch_size=2, learning_rate=3e-3, log_every=30, verbose=0)
    assert len(losses) == 2 and all(np.isfinite(losses))
    after = [mse(student(held_out, style_weights=one_hot[k]), teachers[k](held_out))
             for k in range(2)]
    assert after[0] < 0.8 * before[0] and after[1] < 0.8 * before[1]
    # Each style learned its own teacher: style 0 is nearer teacher 0 than teacher 1 is.
    assert after[0] < mse(student(held_out, style_weights=one_hot[0]), teachers[1](held_out))


def test_distill_refuses_a_teacher_count_unlike_the_students_styles(photo_dir):
    with pytest.raises(ValueError, match="a student of 2 styles needs as many teachers, got 1"):
        distill([small_net(1)], small_net(2, num_styles=2), list_images(str(photo_dir)), steps=1)


@pytest.fixture
def two_teachers(tmp_path):
    """savedNets with two small single-style networks, `ink` and `oil`, each with its
    training flags, and the three-style `trio`."""
    nets = tmp_path / "nets"
    for name, seed, weight in (("ink", 1, 1e-5), ("oil", 2, 3e-5)):
        save_transformer(small_net(seed), str(nets / name),
                         {"name": name, "steps": seed * 10, "style_sha256": "ab" * 32,
                          "flags": {"style_image": f"{name}.jpg", "style_weight": weight}})
    save_transformer(small_net(3, num_styles=3), str(nets / "trio"),
                     {"styles": [{"name": n} for n in "abc"]})
    return nets


def distill_args(nets, *extra):
    return ["perceptual_style.distill", f"--saved_dir={nets}", f"--output_dir={nets}",
            f"--content_dir={nets.parent / 'photos'}", "--steps=2", "--log_every=1",
            "--image_size=32", "--batch_size=2", *extra]


def test_cli_distills_several_teachers_into_one_network_of_their_styles(two_teachers, photo_dir):
    result = run_cli(distill_args(two_teachers, "--teacher=ink,oil", "--arch=mobile",
                                  "--width_multiplier=0.25", "--num_residual_blocks=1"))
    assert result.returncode == 0, result.stderr[-3000:]
    student = load_transformer(str(two_teachers / "ink-oil"))
    assert student.num_styles == 2 and student.arch == "mobile"
    metadata = load_metadata(str(two_teachers / "ink-oil"))
    assert metadata["distilled_from"] == ["ink", "oil"] and metadata["teacher_steps"] == [10, 20]
    # Each style's loss recipe is its teacher's (quality.py measures NET:STYLE with it).
    [ink, oil] = metadata["styles"]
    assert (ink["name"], ink["style_sha256"], ink["flags"]["style_image"],
            ink["flags"]["style_weight"]) == ("ink", "ab" * 32, "ink.jpg", 1e-5)
    assert (oil["name"], oil["flags"]["style_weight"]) == ("oil", 3e-5)
    assert metadata["steps"] == 2 and metadata["images_seen"] == 4

    # --init_from continues that student: its weights, then 2 more steps at learning rate 0.
    result = run_cli(distill_args(two_teachers, "--teacher=ink,oil", "--init_from=ink-oil",
                                  "--name=again", "--learning_rate=0"))
    assert result.returncode == 0, result.stderr[-3000:]
    again = load_transformer(str(two_teachers / "again"))
    for a, b in zip(again.get_weights(), student.get_weights()):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("extra, message", [
    (["--teacher=ink,trio"], "teacher trio is a network of 3 styles: name networks of one"),
    (["--teacher=ink,oil", "--init_from=trio"],
     "--init_from: trio has 3 styles, not one for each of the 2 teachers"),
    (["--teacher=ink,oil", "--init_from=trio", "--arch=full"],
     "--arch: --init_from's network has its own architecture"),
    (["--teacher=ink,ink"], "style names repeat: ink, ink"),
])
def test_cli_bad_teachers_are_one_line(two_teachers, photo_dir, extra, message):
    result = run_cli(distill_args(two_teachers, *extra))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"distill: error: {message}"
