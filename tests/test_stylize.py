"""The stylize CLI: inputs of every kind, bad files, tiling, colour controls, the main job."""

import functools
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import photo, run_cli
from perceptual_style import cli, color, tiling
from perceptual_style.saved_nets import load_transformer, save_transformer


@pytest.fixture(scope="module")
def saved_dir(net, tmp_path_factory):
    folder = tmp_path_factory.mktemp("nets")
    save_transformer(net, str(folder / "toy"))
    return folder


def stylize(args, saved_dir):
    return run_cli(["perceptual_style.stylize", f"--saved_dir={saved_dir}", "--style=toy", *args])


def read(path):
    return np.asarray(Image.open(path)).astype(np.float64)


# ------------------------------------------------------------------------------------

def test_every_colour_mode_and_odd_size_with_a_bad_file_among_them(tmp_path, saved_dir):
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    rgb = Image.fromarray(photo(37, 53))
    rgb.save(source / "odd.png")
    rgb.convert("L").save(source / "grey.png")
    rgb.convert("CMYK").save(source / "cmyk.jpg")
    rgb.convert("P").save(source / "palette.gif")
    Image.fromarray(photo(37, 53)[..., 0].astype(np.uint16) * 257).save(source / "deep.png")
    rgba = rgb.convert("RGBA")
    alpha = np.tile(np.linspace(0, 255, 53, dtype=np.uint8), (37, 1))
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(source / "alpha.png")
    rgb.convert("LA").save(source / "grey_alpha.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown rotated 90 degrees clockwise
    rgb.save(source / "sideways.jpg", exif=exif)
    (source / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (source / "half.png").write_bytes((source / "odd.png").read_bytes()[:200])
    nested = source / "more"
    nested.mkdir()
    rgb.resize((19, 23)).save(nested / "tiny.png")
    rgb.resize((1, 1)).save(source / "dot.png")  # under the 5 pixels reflection padding needs
    rgb.resize((3, 4)).save(source / "speck.png")
    frames = [rgb.convert("P"), rgb.rotate(90).convert("P"), rgb.rotate(180).convert("P")]
    frames[0].save(source / "animated.gif", save_all=True, append_images=frames[1:])

    result = stylize([f"--output={out}", str(source)], saved_dir)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    skipped = [line for line in result.stderr.splitlines() if "skipped" in line]
    assert len(skipped) == 2 and any("corrupt.jpg" in s for s in skipped) and any(
        "half.png" in s for s in skipped)
    assert "2 failed" in result.stdout
    assert f"stylize: warning: {source / 'animated.gif'} has 3 frames; only the first is " \
        "stylized" in result.stderr
    for name in ("odd", "grey", "cmyk", "palette", "deep"):
        image = Image.open(out / f"toy_{name}.jpg")
        assert (image.size, image.mode) == ((53, 37), "RGB"), name
    assert Image.open(out / "toy_sideways.jpg").size == (37, 53)  # upright
    assert Image.open(out / "more" / "toy_tiny.jpg").size == (19, 23)
    assert Image.open(out / "toy_dot.jpg").size == (1, 1)
    assert Image.open(out / "toy_speck.jpg").size == (3, 4)
    assert Image.open(out / "toy_animated.jpg").size == (53, 37)
    kept = Image.open(out / "toy_alpha.png")
    assert kept.mode == "RGBA" and np.array_equal(np.asarray(kept)[..., 3], alpha)
    assert Image.open(out / "toy_grey_alpha.png").mode == "RGBA"
    assert not (out / "toy_corrupt.jpg").exists() and not (out / "toy_half.jpg").exists()
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary files left


def test_an_input_is_never_overwritten(tmp_path, saved_dir):
    target = tmp_path / "photo.png"
    Image.fromarray(photo(20, 24)).save(target)
    before = target.read_bytes()
    result = stylize([f"--output={target}", str(target)], saved_dir)
    assert result.returncode == 1 and "is an input" in result.stderr
    assert target.read_bytes() == before


def test_missing_inputs_and_unknown_styles_are_one_line_errors(tmp_path, saved_dir):
    result = stylize([f"--output={tmp_path}", str(tmp_path / "nothing.jpg")], saved_dir)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "stylize: error: no photos to stylize" in result.stderr
    result = run_cli(["perceptual_style.stylize", f"--saved_dir={saved_dir}", "--style=nope",
                      str(tmp_path)])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("stylize: error: no trained style 'nope'")
    (tmp_path / "nets" / "broken").mkdir(parents=True)
    (tmp_path / "nets" / "broken" / "weights.npz").write_bytes(b"")
    result = run_cli(["perceptual_style.stylize", f"--saved_dir={tmp_path / 'nets'}", str(tmp_path)])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"stylize: error: {tmp_path / 'nets' / 'broken' / 'weights.npz'}: not an .npz archive "
        "(empty, cut short or another kind of file)")


def test_output_file_for_many_photos_sheet_errors_and_pixel_limit(tmp_path, saved_dir):
    """--output=x.jpg names one file: refused for two photos; a contact sheet that cannot
    be written is named, not its temporary file; --max_pixels skips larger photos."""
    for name, size in (("a.png", (20, 24)), ("b.png", (30, 20))):
        Image.fromarray(photo(*size)).save(tmp_path / name)
    photos = [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    result = stylize([f"--output={tmp_path / 'x.jpg'}", *photos], saved_dir)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"stylize: error: --output={tmp_path / 'x.jpg'} names one file, but there are 2 "
        "photos and 1 styles: give a folder")
    assert not (tmp_path / "x.jpg").exists()
    (tmp_path / "sheet.jpg").mkdir()  # a folder where the sheet should go
    result = stylize([f"--output={tmp_path / 'out'}", f"--contact_sheet={tmp_path / 'sheet.jpg'}",
                      "--max_pixels=500", *photos], saved_dir)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{photos[1]}: image too large (20 x 30 pixels, over the limit of 500)" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"stylize: error: [Errno 21] Is a directory: '{tmp_path / 'sheet.jpg'}'")
    assert os.listdir(tmp_path / "out") == ["toy_a.jpg"]


def test_ctrl_c_exits_130(tmp_path, saved_dir):
    import signal
    import subprocess
    import sys
    import time

    from conftest import HANG_TIMEOUT, REPO, sigint_default

    # Enough photos that the run is still busy long after its first finished output, however
    # loaded the machine: the signal must land inside main, not after it.
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(400):
        Image.fromarray(photo(256, 256, seed=i % 20)).save(photos / f"p{i:03d}.png")
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "perceptual_style.stylize", f"--saved_dir={saved_dir}",
         "--style=toy", f"--output={out}", str(photos)], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, preexec_fn=sigint_default)
    while not (out.exists() and [n for n in os.listdir(out) if not n.startswith(".")]):
        assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=HANG_TIMEOUT)
    assert process.returncode == 130, (stdout[-2000:], stderr[-3000:])
    assert len(os.listdir(out)) < 400
    assert stderr.strip().splitlines()[-1] == (
        "stylize: interrupted (everything written so far is complete)")


def test_tiled_cli_output_agrees_with_untiled(tmp_path, saved_dir, net, monkeypatch):
    """Tiles of 64 on a 260 x 100 photo against one pass: the same PNG up to one grey level
    of rounding, everywhere. The tiled run shows its progress (2 x 5 tiles, one pass per
    normalization layer and the output pass); the console has only our own lines."""
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    passes = 10 * (1 + len(tiling.scaled_statistics(net, photo(16, 16), 16)))
    Image.fromarray(photo(100, 260)).save(tmp_path / "photo.png")
    for name, tile in (("tiled", 64), ("whole", 1024)):
        result = stylize([f"--output={tmp_path / name}.png", f"--tile_size={tile}",
                          str(tmp_path / "photo.png")], saved_dir)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        assert result.stdout.endswith(f"wrote 1 image to {tmp_path / name}.png\n")
        assert (f"{passes}/{passes}" in result.stdout) == (name == "tiled")
        assert ("tile pass" in result.stdout) == (name == "tiled")
    difference = np.abs(read(tmp_path / "tiled.png") - read(tmp_path / "whole.png"))
    assert difference.max() <= 1 and difference.mean() < 0.01


def test_preserve_color_cli_keeps_the_photos_chroma(tmp_path, saved_dir):
    source = photo(48, 64)
    Image.fromarray(source).save(tmp_path / "photo.png")
    result = stylize([f"--output={tmp_path / 'kept.png'}", "--preserve_color",
                      str(tmp_path / "photo.png")], saved_dir)
    assert result.returncode == 0, result.stderr
    out = read(tmp_path / "kept.png")
    inside = np.all((out > 0) & (out < 255), -1)
    assert inside.mean() > 0.5
    chroma_out = color.rgb_to_ycbcr(out)[..., 1:][inside]
    chroma_in = color.rgb_to_ycbcr(source)[..., 1:][inside]
    assert np.abs(chroma_out - chroma_in).max() < 1.0  # uint8 rounding only


def test_strength_zero_gives_the_photo_back(tmp_path, saved_dir):
    source = photo(30, 41)
    Image.fromarray(source).save(tmp_path / "photo.png")
    result = stylize([f"--output={tmp_path / 'same.png'}", "--strength=0",
                      str(tmp_path / "photo.png")], saved_dir)
    assert result.returncode == 0, result.stderr
    assert np.array_equal(read(tmp_path / "same.png"), source)


def test_main_job_stylizes_the_sample_photos(tmp_path, saved_dir):
    """No photos given (and no transferSource/): scikit-image's samples and a contact sheet."""
    pytest.importorskip("skimage")
    out = tmp_path / "results"
    result = run_cli(["perceptual_style.stylize", f"--saved_dir={saved_dir}", f"--output={out}"])
    assert result.returncode == 0, result.stderr
    sizes = {"astronaut": (512, 512), "chelsea": (451, 300), "coffee": (600, 400),
             "rocket": (640, 427)}
    for name, size in sizes.items():
        assert Image.open(out / f"toy_{name}.jpg").size == size
    sheet = Image.open(out / "contact_sheet.jpg")
    assert sheet.height > 4 * 192 and sheet.width > 2 * 192
    assert sorted(os.listdir(out)) == sorted([f"toy_{n}.jpg" for n in sizes] + ["contact_sheet.jpg"])


# Networks of several styles -----------------------------------------------------------------

def expected(folder, photo_array, style_weights, strength=1.0, keep_color=False):
    """What the CLI should write for `trio` with these style weights."""
    net = functools.partial(load_transformer(str(folder / "trio")),
                            style_weights=np.array(style_weights, np.float32))
    return color.finish(tiling.stylize_image(net, photo_array), photo_array, strength,
                        keep_color).astype(np.float64)


def stylize_with(folder, *args):
    return run_cli(["perceptual_style.stylize", f"--saved_dir={folder}", *map(str, args)])


def test_one_style_of_a_multi_style_network_beside_a_single_style_one(tmp_path, multi_style_dir):
    source = photo(36, 44)
    Image.fromarray(source).save(tmp_path / "photo.png")
    result = stylize_with(multi_style_dir, "--style=trio:b,solo", f"--output={tmp_path / 'out'}",
                          tmp_path / "photo.png")
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(os.listdir(tmp_path / "out")) == ["solo_photo.jpg", "trio-b_photo.jpg"]
    result = stylize_with(multi_style_dir, "--style=trio:b", f"--output={tmp_path / 'b.png'}",
                          tmp_path / "photo.png")
    assert result.returncode == 0, result.stderr[-3000:]
    difference = np.abs(read(tmp_path / "b.png") - expected(multi_style_dir, source, [0, 1, 0]))
    assert difference.max() <= 1


def test_a_mix_of_styles_with_strength_and_preserved_colour(tmp_path, multi_style_dir):
    """--mix=a:7,c:3 is the blend 0.7 a + 0.3 c; the colour controls apply to it as to
    any style."""
    source = photo(36, 44)
    Image.fromarray(source).save(tmp_path / "photo.png")
    result = stylize_with(multi_style_dir, "--style=trio", "--mix=a:7,c:3", "--strength=0.6",
                          "--preserve_color", "--format=png", f"--output={tmp_path / 'out'}",
                          tmp_path / "photo.png")
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.listdir(tmp_path / "out") == ["trio-a0.7+c0.3_photo.png"]
    difference = np.abs(read(tmp_path / "out" / "trio-a0.7+c0.3_photo.png")
                        - expected(multi_style_dir, source, [0.7, 0, 0.3], 0.6, True))
    assert difference.max() <= 1


def test_a_mixing_sweep_writes_each_blend_and_a_contact_sheet_of_them(tmp_path, multi_style_dir):
    """--sweep=a,c --sweep_steps=3: all a, the even blend, all c; a column each on the sheet."""
    source = photo(36, 44)
    Image.fromarray(source).save(tmp_path / "photo.png")
    sheet = tmp_path / "sheet.png"
    result = stylize_with(multi_style_dir, "--style=trio", "--sweep=a,c", "--sweep_steps=3",
                          "--format=png", f"--output={tmp_path / 'out'}", f"--contact_sheet={sheet}",
                          tmp_path / "photo.png")
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = {"trio-a1": [1, 0, 0], "trio-a0.5+c0.5": [0.5, 0, 0.5], "trio-c1": [0, 0, 1]}
    assert sorted(os.listdir(tmp_path / "out")) == sorted(f"{k}_photo.png" for k in outputs)
    for label, weights in outputs.items():
        difference = np.abs(read(tmp_path / "out" / f"{label}_photo.png")
                            - expected(multi_style_dir, source, weights))
        assert difference.max() <= 1, label
    from perceptual_style.contact_sheet import GAP, fit_height

    cell = fit_height(source, 192).width  # the photo and the three blends, side by side
    assert read(sheet).shape[1] == 4 * cell + 5 * GAP


@pytest.mark.parametrize("names,mix,sweep,message", [
    (["trio"], None, ["a"], "--sweep=a: give two styles of the network, e.g. --sweep=snight,wave"),
    (["trio"], None, ["a", "a"], "--sweep=a,a: give two styles of the network, e.g. "
     "--sweep=snight,wave"),
    (["trio"], None, ["a", "z"], "trio has no style 'z' (its styles: a, b, c)"),
    (["trio", "solo"], None, ["a", "b"], "--sweep blends the styles of one network: name it "
     "with --style=NET"),
    (["trio"], ["a:1"], ["a", "b"], "give --mix (one blend) or --sweep (blends of two styles), "
     "not both"),
])
def test_bad_sweeps_are_one_line_errors(multi_style_dir, names, mix, sweep, message):
    with pytest.raises(cli.CommandError) as error:
        cli.load_styles(names, str(multi_style_dir), mix=mix, sweep=sweep)
    assert str(error.value) == message


def test_styles_are_chosen_and_mixed_in_one_place(multi_style_dir):
    """cli.load_styles, which stylize and stylize_video share: NET alone gives each of its
    styles; the mix's weights are scaled to sum to 1 and name the output."""
    folder = str(multi_style_dir)
    assert list(cli.load_styles(["trio", "solo"], folder)) == ["trio-a", "trio-b", "trio-c", "solo"]
    [(label, (net, strength))] = cli.load_styles(["trio"], folder, mix=["c:1", "a:3"]).items()
    assert label == "trio-c0.25+a0.75" == cli.style_label("trio", ["c:1", "a:3"])
    np.testing.assert_array_equal(net.keywords["style_weights"], [0.75, 0, 0.25])
    assert strength == 1
    assert cli.style_label(os.path.join(folder, "trio") + ":b") == "trio-b"


@pytest.mark.parametrize("names,mix,message", [
    (["trio:z"], None, "trio has no style 'z' (its styles: a, b, c)"),
    (["trio"], ["a:0.7", "z:0.3"], "trio has no style 'z' (its styles: a, b, c)"),
    (["solo:a"], None, "solo is a network of one style: give --style=solo"),
    (["solo"], ["a:1"], "solo is a network of one style: give --style=solo without --mix"),
    (["trio:a"], ["a:1"], "--mix blends the styles of trio: give --style=trio, not --style=trio:a"),
    *[(names, ["a:1"], "--mix blends the styles of one network: name it with --style=NET")
      for names in (["all"], ["trio", "solo"])],
    *[(["trio"], mix.split(","), f"--mix={mix}: give STYLE:WEIGHT,... with each style once "
       "and weights >= 0, e.g. --mix=snight:0.7,wave:0.3")
      for mix in ("a0.7", "a:x", "a:-1,b:2", "a:nan", "a:inf", ":1", "a:1,a:2")],
    (["trio"], ["a:0", "b:0"], "--mix=a:0,b:0: the weights are all zero"),
])
def test_bad_style_choices_and_mixes_are_one_line_errors(multi_style_dir, names, mix, message):
    with pytest.raises(cli.CommandError) as error:
        cli.load_styles(names, str(multi_style_dir), mix=mix)
    assert str(error.value) == message


def test_a_multi_style_network_without_style_names_is_a_one_line_error(tmp_path, multi_style_dir):
    (tmp_path / "nameless").mkdir()
    shutil.copy(multi_style_dir / "trio" / "weights.npz", tmp_path / "nameless")
    result = stylize_with(tmp_path, "--style=nameless:a", tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"stylize: error: {tmp_path / 'nameless' / 'metadata.json'}: No such file or directory")


@pytest.fixture(scope="module")
def identity_dir(tmp_path_factory):
    """A savedNets folder holding `duo`, a tiny network of a style `a` and an identity."""
    from conftest import multi_style_net

    folder = tmp_path_factory.mktemp("identityNets")
    save_transformer(multi_style_net(2, arch="mobile", width_multiplier=0.25,
                                     num_residual_blocks=1), str(folder / "duo"),
                     {"styles": [{"name": "a"}, {"name": "identity"}]})
    return folder


def test_strength_interpolates_towards_an_identity_style_in_parameter_space(
        tmp_path, identity_dir, multi_style_dir, capsys):
    """With an identity style, --strength s applies s * style + (1 - s) * identity as the
    style weights and blends no pixels; NET alone leaves the identity out. Without one,
    the pixel blend stays. Each says which ran."""
    [(label, (net, strength))] = cli.load_styles(["duo"], str(identity_dir), strength=0.3).items()
    assert label == "duo-a" and strength == 1
    np.testing.assert_allclose(net.keywords["style_weights"], [0.3, 0.7], rtol=1e-6)
    [(net, strength)] = cli.load_styles(["duo"], str(identity_dir), mix=["a:1", "identity:1"],
                                        strength=0.5).values()
    np.testing.assert_allclose(net.keywords["style_weights"], [0.25, 0.75], rtol=1e-6)
    source = photo(36, 44)
    Image.fromarray(source).save(tmp_path / "photo.png")
    result = stylize_with(identity_dir, "--style=duo:a", "--strength=0.3",
                          f"--output={tmp_path / 'a.png'}", tmp_path / "photo.png")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--strength=0.3 for duo: in parameter space, towards its identity style" in result.stderr
    duo = functools.partial(load_transformer(str(identity_dir / "duo")),
                            style_weights=np.array([0.3, 0.7], np.float32))
    expected_image = color.finish(tiling.stylize_image(duo, source), source).astype(np.float64)
    assert np.abs(read(tmp_path / "a.png") - expected_image).max() <= 1
    pixel = color.finish(tiling.stylize_image(functools.partial(
        duo.func, style_weights=np.array([1, 0], np.float32)), source), source, 0.3)
    assert np.abs(read(tmp_path / "a.png") - pixel).mean() > 1  # not the pixel blend
    capsys.readouterr()
    chosen = cli.load_styles(["trio:a", "solo"], str(multi_style_dir), strength=0.3)
    np.testing.assert_array_equal(chosen["trio-a"].net.keywords["style_weights"], [1, 0, 0])
    assert chosen["trio-a"].strength == chosen["solo"].strength == 0.3
    said = capsys.readouterr().err
    for name in ("trio", "solo"):
        assert f"--strength=0.3 for {name}: a pixel blend with the photo (it has no identity " \
               "style)" in said
