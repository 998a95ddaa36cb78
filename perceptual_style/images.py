"""Reading, resizing and writing images with Pillow, whatever their mode, safely: every
read, resize and cover-crop of the package goes through here, so that all of them scale
the same way.

Every reader applies the EXIF orientation and converts greyscale, palette, RGBA, CMYK,
16-bit and float images to 8-bit RGB, and turns every way a file can be bad into one
`ImageError` whose message names the file and the problem. Writers go through a temporary
file and a rename, so an interrupted run never leaves a half-written image.
"""

import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from perceptual_style.atomic import atomic_write

# Pillow refuses images over 2 x Image.MAX_IMAGE_PIXELS (178,956,970 pixels) as possible
# decompression bombs, and only warns above half that. Readers here ignore the warning and
# check `max_pixels` themselves, from the header, before decoding; the default is
# Pillow's refusal limit, the largest that any limit can be.
MAX_PIXELS = 2 * Image.MAX_IMAGE_PIXELS
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class ImageError(ValueError):
    """An image file that cannot be used, with a one-line reason."""


def open_image(path, max_pixels=MAX_PIXELS):
    """Opens `path` as an upright PIL image in mode RGB, or RGBA when it has transparency.
    Of an animated image (or a multi-page TIFF) only the first frame is read; `info["frames"]`
    says how many there are, so that callers can say so."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > max_pixels:
                    raise ImageError(f"{path}: image too large ({image.width} x {image.height} "
                                     f"pixels, over the limit of {max_pixels:,})")
                frames = getattr(image, "n_frames", 1)
                image = ImageOps.exif_transpose(image)
                image.load()
        image = _to_rgb(image)
        image.info["frames"] = frames
        return image
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file Pillow can read") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{path}: image too large (over the limit of "
                         f"{2 * Image.MAX_IMAGE_PIXELS:,} pixels)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"{path}: corrupt or truncated image ({e})") from None


def _to_rgb(image):
    mode = image.mode
    if mode in ("RGB", "RGBA"):
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit and float images: scale by the format's range, not by truncation.
        values = np.asarray(image, dtype=np.float64)
        peak = values.max(initial=0)
        if mode.startswith("I;16"):
            top = 65535.0
        elif mode == "I":
            top = 65535.0 if peak > 255 else 255.0
        else:
            top = 1.0 if peak <= 1.0 else 255.0
        grey = np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode in ("LA", "PA") or (mode == "P" and "transparency" in image.info):
        return image.convert("RGBA")
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def composite_on_white(image):
    """Drops an alpha channel the way a viewer shows it: over a white background."""
    if image.mode != "RGBA":
        return image
    background = Image.new("RGB", image.size, (255, 255, 255))
    background.paste(image, mask=image.getchannel("A"))
    return background


def load_rgb(path, max_side=None, shorter_side=None):
    """`path` -> uint8 array (H, W, 3), optionally scaled so its longer side is `max_side`
    (a style image) or its shorter side is `shorter_side` (a photo)."""
    image = composite_on_white(open_image(path))
    if max_side:
        image = fit_longer_side(image, max_side, method=Image.LANCZOS)
    if shorter_side:
        image = resize_shorter_side(image, shorter_side)
    return np.asarray(image, dtype=np.uint8)


def _pil(image):
    return image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))


def resize(image, width, height, method=Image.BILINEAR):
    """`image` (PIL, or a uint8 array) as a PIL image of width x height, antialiased."""
    image = _pil(image)
    if image.size == (width, height):
        return image
    return image.resize((width, height), method, reducing_gap=2.0)


def fit_longer_side(image, size, minimum=1, method=Image.BILINEAR):
    """`image` scaled so its longer side is `size`, no side under `minimum` pixels."""
    image = _pil(image)
    scale = size / max(image.size)
    return resize(image, max(minimum, round(image.width * scale)),
                  max(minimum, round(image.height * scale)), method)


def resize_shorter_side(image, size):
    """`image` (PIL or uint8 array) scaled so its shorter side is `size` (antialiased)."""
    image = _pil(image)
    scale = size / min(image.size)
    return resize(image, max(size, round(image.width * scale)),
                  max(size, round(image.height * scale)))


def cover(image, width, height):
    """`image` (PIL or uint8 array) scaled to cover width x height, then centre-cropped to
    it: a uint8 array."""
    return np.asarray(ImageOps.fit(_pil(image), (width, height), Image.BILINEAR), np.uint8)


def to_uint8(array):
    """Float RGB in [0, 255] -> rounded uint8 (uint8 passes through without a copy)."""
    if getattr(array, "dtype", None) == np.uint8:
        return array
    return np.clip(np.rint(np.asarray(array, np.float32)), 0, 255).astype(np.uint8)


def save_image(array, path, quality=95):
    """Writes an RGB(A) array atomically; the format follows the file extension."""
    image = Image.fromarray(to_uint8(array))
    extension = os.path.splitext(path)[1].lower()
    image_format = Image.registered_extensions().get(extension, "PNG")
    if image_format == "JPEG":
        atomic_write(path, lambda f: image.convert("RGB").save(f, "JPEG", quality=quality))
    else:
        atomic_write(path, lambda f: image.save(f, image_format))


def image_grid(rows, gap=4):
    """Tiles a list of rows (each a list of equally sized uint8 arrays) into one image."""
    height, width = rows[0][0].shape[:2]
    columns = max(len(row) for row in rows)
    grid = np.full((len(rows) * (height + gap) - gap, columns * (width + gap) - gap, 3), 255,
                   np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            y, x = r * (height + gap), c * (width + gap)
            grid[y:y + height, x:x + width] = to_uint8(image)[..., :3]
    return grid
