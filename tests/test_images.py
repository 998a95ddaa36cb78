import os
import stat
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from perceptual_style import images
from perceptual_style.atomic import publish_directory, replace_directory
from perceptual_style.images import ImageError, load_rgb, open_image, save_image

GRADIENT = np.stack([*np.meshgrid(np.linspace(0, 255, 30), np.linspace(0, 255, 20))] +
                    [np.full((20, 30), 128.0)], -1).astype(np.uint8)  # 20 x 30 RGB


def test_modes_become_rgb(tmp_path):
    rgb = Image.fromarray(GRADIENT)
    cases = {
        "grey.png": rgb.convert("L"),
        "cmyk.jpg": rgb.convert("CMYK"),
        "palette.gif": rgb.convert("P"),
        "bilevel.png": rgb.convert("1"),
    }
    for name, image in cases.items():
        image.save(tmp_path / name)
        out = load_rgb(str(tmp_path / name))
        assert out.shape == (20, 30, 3) and out.dtype == np.uint8, name
    cmyk = load_rgb(str(tmp_path / "cmyk.jpg")).astype(int)
    assert np.abs(cmyk - GRADIENT).mean() < 8  # CMYK converts back to about the same colours


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    grey16 = (np.linspace(0, 65535, 20 * 30).reshape(20, 30)).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    out = load_rgb(str(tmp_path / "deep.png"))
    np.testing.assert_allclose(out[..., 0], np.rint(grey16 / 257.0), atol=1)
    assert out.max() == 255 and out.min() == 0


def test_alpha_is_kept_or_composited_on_white(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, 5:, 3] = 255  # left half transparent
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert open_image(str(tmp_path / "a.png")).mode == "RGBA"
    out = load_rgb(str(tmp_path / "a.png"))
    assert (out[:, :5] == 255).all() and (out[:, 5:] == [200, 0, 0]).all()


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(GRADIENT).save(tmp_path / "rotated.jpg", exif=exif)
    assert load_rgb(str(tmp_path / "rotated.jpg")).shape == (30, 20, 3)


def test_bad_files_give_one_line_errors(tmp_path, monkeypatch):
    Image.fromarray(GRADIENT).save(tmp_path / "good.jpg")
    data = (tmp_path / "good.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("hello")
    (tmp_path / "empty.png").write_bytes(b"")
    expectations = {"truncated.jpg": "corrupt or truncated", "text.jpg": "not an image",
                    "empty.png": "not an image", "missing.png": "no such file", "": "directory"}
    for name, reason in expectations.items():
        with pytest.raises(ImageError, match=reason) as error:
            load_rgb(str(tmp_path / name))
        assert "\n" not in str(error.value)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageError, match="too large"):
        load_rgb(str(tmp_path / "good.jpg"))


def png_header(width, height):
    """A PNG that stops after its header: its size is known, its pixels are missing."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IEND", b""))


def test_pixel_limit_is_pillows_refusal_limit_or_the_callers(tmp_path):
    assert images.MAX_PIXELS == 2 * Image.MAX_IMAGE_PIXELS == 178_956_970
    (tmp_path / "96mp.png").write_bytes(png_header(12000, 8000))
    with pytest.raises(ImageError, match="corrupt or truncated"):  # past the size check
        open_image(str(tmp_path / "96mp.png"))
    (tmp_path / "180mp.png").write_bytes(png_header(15000, 12000))
    with pytest.raises(ImageError, match="too large .over the limit of 178,956,970 pixels"):
        open_image(str(tmp_path / "180mp.png"))
    Image.fromarray(GRADIENT).save(tmp_path / "small.png")
    with pytest.raises(ImageError, match=r"too large \(30 x 20 pixels, over the limit of 599\)"):
        open_image(str(tmp_path / "small.png"), max_pixels=599)
    assert open_image(str(tmp_path / "small.png"), max_pixels=600).size == (30, 20)


def test_animated_images_say_how_many_frames_they_have(tmp_path):
    frames = [Image.fromarray(GRADIENT).convert("P"), Image.fromarray(GRADIENT[::-1]).convert("P")]
    frames[0].save(tmp_path / "two.gif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "one.gif")
    assert open_image(str(tmp_path / "two.gif")).info["frames"] == 2
    assert open_image(str(tmp_path / "one.gif")).info["frames"] == 1


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_honour_the_umask_like_plain_writes(tmp_path, umask):
    def write(folder):
        with open(os.path.join(folder, "file"), "w") as f:
            f.write("x")

    previous = os.umask(umask)
    try:
        save_image(GRADIENT, str(tmp_path / "image.png"))
        open(tmp_path / "plain", "w").close()
        publish_directory(str(tmp_path / "models"), write, ["1"])
        replace_directory(str(tmp_path / "style"), write)
        os.mkdir(tmp_path / "plain_folder")
    finally:
        os.umask(previous)

    def mode(name):
        return stat.S_IMODE(os.stat(tmp_path / name).st_mode)

    assert mode("image.png") == mode("plain") == 0o666 & ~umask
    assert mode("models/1") == mode("style") == mode("plain_folder") == 0o777 & ~umask
    assert mode("models/1/file") == 0o666 & ~umask
    os.chmod(tmp_path / "image.png", 0o640)
    save_image(GRADIENT, str(tmp_path / "image.png"))  # a replaced file keeps its mode
    assert mode("image.png") == 0o640


def test_load_rgb_scales_longer_side(tmp_path):
    Image.fromarray(GRADIENT).save(tmp_path / "g.png")
    assert load_rgb(str(tmp_path / "g.png"), max_side=60).shape == (40, 60, 3)


def test_one_resize_for_photos_and_one_cover_crop(tmp_path):
    Image.fromarray(GRADIENT).save(tmp_path / "g.png")
    scaled = load_rgb(str(tmp_path / "g.png"), shorter_side=10)
    assert scaled.shape == (10, 15, 3)
    np.testing.assert_array_equal(
        scaled, np.asarray(Image.fromarray(GRADIENT).resize((15, 10), Image.BILINEAR,
                                                            reducing_gap=2.0)))
    # 3 columns of 2 x 2 blocks: covering 2 x 2 keeps the middle block, whole.
    blocks = np.kron(np.array([[10, 20, 30]], np.uint8), np.ones((2, 2), np.uint8))
    middle = images.cover(np.dstack([blocks] * 3), 2, 2)
    np.testing.assert_array_equal(middle, np.full((2, 2, 3), 20, np.uint8))


def test_save_image_is_atomic_and_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = str(tmp_path / "out.png")
    save_image(GRADIENT, path)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), GRADIENT)

    def broken_save(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError):
        save_image(np.zeros_like(GRADIENT), path)
    monkeypatch.undo()
    np.testing.assert_array_equal(np.asarray(Image.open(path)), GRADIENT)
    assert os.listdir(tmp_path) == ["out.png"]  # no temporary file left behind


def test_image_grid_layout():
    a = np.zeros((4, 5, 3), np.uint8)
    b = np.full((4, 5, 3), 9, np.uint8)
    grid = images.image_grid([[a, b], [b]], gap=2)
    assert grid.shape == (10, 12, 3)
    assert (grid[:4, 7:] == 9).all() and (grid[6:, :5] == 9).all() and (grid[6:, 7:] == 255).all()
