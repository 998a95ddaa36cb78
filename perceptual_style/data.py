"""Content images from a local folder or glob, without TensorFlow.

Photos are scaled so their shorter side is `image_size` and randomly cropped to `crop_size`
squares: a crop smaller than the photo keeps the content's scale (what the network sees at
inference) while a step costs less.

The order in which training sees images is a pure function of (seed, global step): a fresh
permutation of the files each epoch. A resumed run therefore continues exactly where the
interrupted one stopped, and the tf.data pipeline (`tf_data.py`) and the Pillow loader here
(used on the JAX backend) draw the same files. Unreadable files are skipped and counted;
crops of one colour are skipped too (see `one_colour`).
"""

import functools
import glob
import os
import threading

import keras
import numpy as np
from absl import logging

from perceptual_style.images import IMAGE_EXTENSIONS, ImageError, load_rgb


def list_images(source):
    """Sorted image files from a folder (recursively), a glob pattern or a single file."""
    source = os.path.expanduser(source)
    if os.path.isdir(source):
        files = [os.path.join(root, name) for root, _, names in os.walk(source) for name in names]
    elif glob.has_magic(source):
        files = glob.glob(source, recursive=True)
    elif os.path.isfile(source):
        return [source]
    else:
        raise FileNotFoundError(f"no such folder, file or glob: {source}")
    files = sorted(f for f in files if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(f))
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {source}")
    return files


@functools.lru_cache(maxsize=4)
def _permutation(count, seed, epoch):
    return np.random.default_rng((seed, epoch)).permutation(count)


def file_index(position, count, seed):
    """Which of `count` files is the `position`-th image seen in training."""
    epoch, offset = divmod(int(position), count)
    return int(_permutation(count, seed, epoch)[offset])


NO_READABLE_IMAGES = "no readable content images left"


class SkippedFiles:
    """Thread-safe record of files that could not be decoded; each is logged once. Once
    every one of the `total` files has failed, `add` raises: an endless stream that skips
    them all would otherwise wait forever for the next image."""

    def __init__(self, total=None):
        self._lock = threading.Lock()
        self.files = set()
        self.total = total

    def add(self, path, reason):
        with self._lock:
            new = path not in self.files
            self.files.add(path)
            count = len(self.files)
        if new:
            logging.warning("skipped content image (%d so far): %s", count, reason)
        if self.total is not None and count >= self.total:
            raise ImageError(f"{NO_READABLE_IMAGES} (all {self.total} failed to decode or "
                             "are of one colour)")

    def __len__(self):
        return len(self.files)


def one_colour(image):
    """Whether `image` (H, W, 3) is of a single colour, as a crop of a product shot's white
    background is. Training skips such crops: each of the network's 15 instance
    normalizations then has zero variance, where its derivative is scale / sqrt(epsilon)
    (316 x scale), and the gradient overflows to inf and NaN, in float32 as in bfloat16 (the
    NaN at step 5,819 of rain_princess and la_muse)."""
    image = np.asarray(image)
    return bool((image == image[:1, :1]).all())


def decode_training_image(path, image_size):
    """An RGB uint8 array whose shorter side is `image_size`, ready for a random crop; an
    ImageError for a photo of one colour, whose every crop would be skipped."""
    image = load_rgb(path, shorter_side=image_size)
    if one_colour(image):
        raise ImageError(f"{path}: a photo of one colour, nothing to train on")
    return image


def check_readable(files, image_size):
    """Raises ImageError unless one of `files` decodes to a photo of more than one colour
    (usually the first does). Checked before training, so that a folder of unusable files
    stops in one line instead of inside a running input pipeline."""
    first_error = None
    for path in files:
        try:
            decode_training_image(path, image_size)
            return
        except ImageError as e:
            first_error = first_error or e
    raise ImageError(f"{NO_READABLE_IMAGES}: none of the {len(files)} content images could "
                     f"be used (the first: {first_error})")


def random_crop(image, size, rng):
    top = rng.integers(0, image.shape[0] - size + 1)
    left = rng.integers(0, image.shape[1] - size + 1)
    return image[top:top + size, left:left + size]


class ImageFolderDataset(keras.utils.PyDataset):
    """Batches `(images,)` of random `crop_size` crops (default `image_size`) of photos
    scaled to `image_size`, float32 in [0, 255], for `Model.fit`.

    Batch `i` is global step `start_step + i`. A file that fails to decode is skipped (and
    recorded in `skipped`) in favour of the next one in the order, as is a crop of one colour.
    """

    def __init__(self, files, image_size, batch_size, steps, seed=0, start_step=0,
                 skipped=None, crop_size=None, **kwargs):
        super().__init__(**kwargs)
        self.files, self.image_size, self.batch_size = list(files), image_size, batch_size
        self.crop_size = crop_size or image_size
        self.steps, self.seed, self.start_step = steps, seed, start_step
        self.skipped = skipped if skipped is not None else SkippedFiles()
        self.skipped.total = len(self.files)

    def __len__(self):
        return self.steps

    def __getitem__(self, index):
        step = self.start_step + index
        rng = np.random.default_rng((self.seed, step, 1))
        batch = []
        position = step * self.batch_size
        while len(batch) < self.batch_size:
            path = self.files[file_index(position, len(self.files), self.seed)]
            position += 1
            try:
                image = decode_training_image(path, self.image_size)
            except ImageError as e:
                self.skipped.add(path, str(e))
                continue
            crop = random_crop(image, self.crop_size, rng)
            if not one_colour(crop):
                batch.append(crop)
        return (np.stack(batch).astype(np.float32),)
