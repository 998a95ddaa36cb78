import numpy as np
import pytest
from PIL import Image

from conftest import tensorflow_only
from perceptual_style.data import (ImageFolderDataset, SkippedFiles, check_readable, file_index,
                                   list_images, one_colour)
from perceptual_style.images import ImageError


def test_list_images_folder_glob_file_and_errors(photo_dir, tmp_path):
    (photo_dir / "notes.txt").write_text("not an image")
    files = list_images(str(photo_dir))
    assert len(files) == 6 and files == sorted(files)
    assert list_images(str(photo_dir / "photo1*")) == [str(photo_dir / "photo1.jpg")]
    assert list_images(files[0]) == [files[0]]
    with pytest.raises(FileNotFoundError, match="no such folder"):
        list_images(str(tmp_path / "absent"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        list_images(str(empty))


def test_file_order_is_a_permutation_per_epoch():
    order = [file_index(k, 7, seed=3) for k in range(21)]
    for epoch in range(3):
        assert sorted(order[epoch * 7:(epoch + 1) * 7]) == list(range(7))
    assert order[:7] != order[7:14]
    assert order == [file_index(k, 7, seed=3) for k in range(21)]  # pure function of (seed, k)


def test_folder_dataset_batches_resume_and_skip_corrupt(photo_dir):
    (photo_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    files = list_images(str(photo_dir))
    skipped = SkippedFiles()
    full = ImageFolderDataset(files, image_size=32, batch_size=3, steps=5, seed=1, skipped=skipped)
    batches = [full[i][0] for i in range(len(full))]
    assert all(b.shape == (3, 32, 32, 3) and b.dtype == np.float32 for b in batches)
    assert 0 <= min(b.min() for b in batches) and max(b.max() for b in batches) <= 255
    assert skipped.files == {str(photo_dir / "broken.jpg")}
    resumed = ImageFolderDataset(files, image_size=32, batch_size=3, steps=2, seed=1, start_step=3)
    np.testing.assert_array_equal(resumed[0][0], batches[3])
    np.testing.assert_array_equal(resumed[1][0], batches[4])


@tensorflow_only
def test_tf_data_pipeline_matches_files_and_skips_corrupt(photo_dir):
    from perceptual_style.tf_data import folder_dataset

    (photo_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    files = list_images(str(photo_dir))
    skipped = SkippedFiles()
    batches = list(folder_dataset(files, image_size=24, batch_size=2, seed=0,
                                  skipped=skipped).take(8).as_numpy_iterator())
    assert all(b.shape == (2, 24, 24, 3) and b.dtype == np.float32 for b in batches)
    assert skipped.files == {str(photo_dir / "broken.png")}
    again = list(folder_dataset(files, image_size=24, batch_size=2, seed=0).take(8).as_numpy_iterator())
    np.testing.assert_array_equal(np.stack(batches), np.stack(again))


@tensorflow_only
def test_tfds_pipeline_with_mock_coco():
    """The tfds `coco/2014` path, with TFDS' own mock data standing in for the download."""
    import tensorflow_datasets as tfds

    from perceptual_style.tf_data import tfds_dataset, tfds_images

    with tfds.testing.mock_data(num_examples=5):
        batch = next(iter(tfds_dataset("coco/2014", image_size=32, batch_size=2)))
        samples = tfds_images("coco/2014", 2)
    assert tuple(batch.shape) == (2, 32, 32, 3) and batch.dtype.name == "float32"
    assert len(samples) == 2 and samples[0].ndim == 3


def test_one_colour():
    white = np.full((8, 8, 3), 255, np.uint8)
    assert one_colour(white) and one_colour(white * np.array([1, 0, 0], np.uint8))
    speck = white.copy()
    speck[5, 2, 1] = 254
    assert not one_colour(speck)


def with_blank_photo(folder):
    """`folder`'s images and a photo of one colour, which no pipeline may hand on."""
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(folder / "blank.png")
    return list_images(str(folder)), str(folder / "blank.png")


def test_folder_loader_skips_crops_of_one_colour(product_shot_dir):
    """Crops of the product shot's white background are skipped (without that, about 86%
    of these would be blank), and the blank photo is recorded as unusable."""
    files, blank = with_blank_photo(product_shot_dir)
    skipped = SkippedFiles()
    data = ImageFolderDataset(files, image_size=32, crop_size=16, batch_size=4, steps=10,
                              skipped=skipped)
    crops = np.concatenate([data[i][0] for i in range(len(data))])
    assert crops.shape == (40, 16, 16, 3)
    assert not any(one_colour(crop) for crop in crops)
    assert (crops == 255).mean() > 0.3  # the background is still seen beside the object
    assert skipped.files == {blank}
    with pytest.raises(ImageError, match="could be used .*blank.png: a photo of one colour"):
        check_readable([blank], 32)


@tensorflow_only
def test_tf_data_pipeline_skips_crops_of_one_colour(product_shot_dir):
    from perceptual_style.tf_data import folder_dataset

    files, blank = with_blank_photo(product_shot_dir)
    skipped = SkippedFiles()
    crops = np.concatenate(list(folder_dataset(files, image_size=32, crop_size=16, batch_size=4,
                                               skipped=skipped).take(10).as_numpy_iterator()))
    assert crops.shape == (40, 16, 16, 3)
    assert not any(one_colour(crop) for crop in crops)
    assert skipped.files == {blank}


def test_crops_smaller_than_the_photo_keep_its_scale(photo_dir):
    """--crop_size: 24-pixel crops of photos scaled to a shorter side of 48, i.e. a window
    into the photo at the scale of --image_size, not the whole photo shrunk to 24."""
    files = list_images(str(photo_dir))
    full = ImageFolderDataset(files, image_size=48, batch_size=2, steps=1, seed=1)[0][0]
    cropped = ImageFolderDataset(files, image_size=48, crop_size=24, batch_size=2, steps=1,
                                 seed=1)[0][0]
    assert full.shape == (2, 48, 48, 3) and cropped.shape == (2, 24, 24, 3)
    # Each crop is found, pixel for pixel, in the 48-pixel version of its photo.
    from perceptual_style.data import decode_training_image

    scaled = decode_training_image(files[file_index(0, len(files), 1)], 48)
    windows = np.lib.stride_tricks.sliding_window_view(scaled, (24, 24, 3))[..., 0, :, :, :]
    assert (np.abs(windows - cropped[0]).max(axis=(-3, -2, -1)) == 0).any()


@tensorflow_only
def test_tf_data_crop_size(photo_dir):
    from perceptual_style.tf_data import folder_dataset

    files = list_images(str(photo_dir))
    batch = next(iter(folder_dataset(files, image_size=48, crop_size=24, batch_size=2)))
    assert tuple(batch.shape) == (2, 24, 24, 3)


def unreadable_folder(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    for i in range(6):
        (folder / f"photo{i}.jpg").write_text("not an image")
    return list_images(str(folder))


def test_no_readable_image_stops_the_folder_loader(tmp_path):
    dataset = ImageFolderDataset(unreadable_folder(tmp_path), image_size=32, batch_size=2, steps=2)
    with pytest.raises(Exception, match="no readable content images left"):
        dataset[0]
    assert len(dataset.skipped) == 6


@tensorflow_only
def test_no_readable_image_stops_the_tf_data_pipeline(tmp_path):
    """The filter that drops unreadable files used to wait forever on an endless stream."""
    import tensorflow as tf

    from perceptual_style.tf_data import folder_dataset

    dataset = folder_dataset(unreadable_folder(tmp_path), image_size=32, batch_size=2)
    with pytest.raises(tf.errors.OpError, match="no readable content images left"):
        next(iter(dataset))
