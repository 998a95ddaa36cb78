"""tf.data input pipelines for the TensorFlow backend: a local image folder, or a
TensorFlow Datasets split such as MS-COCO (`coco/2014`, the paper's train2014).

Each yields float32 batches of `crop_size` square crops (default `image_size`) of photos
whose shorter side is scaled to `image_size`, in [0, 255], repeated forever; `Model.fit`
takes as many steps as it is told. Crops of one colour are left out (`data.one_colour`).
"""

import numpy as np
import tensorflow as tf

from perceptual_style.data import SkippedFiles, decode_training_image, file_index, one_colour
from perceptual_style.images import ImageError, resize_shorter_side

AUTOTUNE = tf.data.AUTOTUNE


def _not_one_colour(crop):
    """The filter predicate that drops crops the network cannot train on."""
    keep = tf.numpy_function(lambda c: not one_colour(c), [crop], tf.bool, stateful=False)
    keep.set_shape([])
    return keep


def folder_dataset(files, image_size, batch_size, seed=0, start_step=0, skipped=None,
                   crop_size=None):
    """Pillow decodes (EXIF, any mode) inside `numpy_function`; order and crops follow
    `data.file_index` and a stateless seed per image, so a resumed run continues in step.
    When every file has failed, decoding raises (`data.NO_READABLE_IMAGES`) instead of
    the filter below waiting forever for a readable one."""
    files = list(files)
    crop_size = crop_size or image_size
    skipped = skipped if skipped is not None else SkippedFiles()
    skipped.total = len(files)

    def decode(position):
        path = files[file_index(position, len(files), seed)]
        try:
            return decode_training_image(path, image_size)
        except ImageError as e:
            skipped.add(path, str(e))
            return np.zeros((0, 0, 3), np.uint8)

    def load(position):
        image = tf.numpy_function(decode, [position], tf.uint8, stateful=False)
        image.set_shape([None, None, 3])
        return position, image

    def crop(position, image):
        crop_seed = tf.stack([tf.constant(seed, tf.int64), position])
        return tf.cast(tf.image.stateless_random_crop(image, [crop_size, crop_size, 3],
                                                      seed=crop_seed), tf.float32)

    dataset = tf.data.Dataset.counter(start=start_step * batch_size)
    dataset = dataset.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    dataset = dataset.filter(lambda _, image: tf.size(image) > 0)
    dataset = dataset.map(crop, num_parallel_calls=AUTOTUNE).filter(_not_one_colour)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def tfds_dataset(name, image_size, batch_size, seed=0, start_step=0, split="train",
                 data_dir=None, download=False, crop_size=None):
    """Images of a TFDS dataset (e.g. `coco/2014`), shuffled; a resumed run reshuffles with a
    seed that includes the step, since a TFDS stream cannot be repositioned cheaply.
    `download=True` lets TFDS download and prepare it (tens of GB for COCO)."""
    import tensorflow_datasets as tfds

    read_config = tfds.ReadConfig(shuffle_seed=seed + start_step)
    dataset = tfds.load(name, split=split, data_dir=data_dir, shuffle_files=True,
                        read_config=read_config, download=download)
    dataset = dataset.repeat().shuffle(1024, seed=seed + start_step)

    def scale(image):  # the folder's resize (images.py), not a second one
        return np.asarray(resize_shorter_side(image, image_size), np.uint8)

    def prepare(example):
        image = tf.numpy_function(scale, [example["image"]], tf.uint8, stateful=False)
        image.set_shape([None, None, 3])
        size = crop_size or image_size
        return tf.cast(tf.image.random_crop(image, [size, size, 3], seed=seed), tf.float32)

    dataset = dataset.map(prepare, num_parallel_calls=AUTOTUNE).filter(_not_one_colour)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def tfds_images(name, count, split="validation", data_dir=None, download=False):
    """The first `count` images of a TFDS split, as uint8 arrays (held-out progress pictures)."""
    import tensorflow_datasets as tfds

    dataset = tfds.load(name, split=split, data_dir=data_dir, shuffle_files=False,
                        download=download)
    return [example["image"].numpy() for example in dataset.take(count)]
