"""Representative pixels of a model's input, to calibrate an int8 quantization.

`sample_pixels` takes images from a dataset, a folder or a NumPy file and
prepares them as the evaluation does (channels, resize), so that a quantized
model's ranges are measured on what it will be fed.
"""

import os

import numpy as np
import tensorflow as tf

from kres import checks
from kres.data.folders import IMAGE_EXTENSIONS, decode_error_reason
from kres.data.sources import load


def sample_pixels(source, preprocessing, count=256, *, data_dir=None, split="train"):
    """Representative pixels of a model's input, e.g. to calibrate an int8 quantization.

    Args:
        source: a dataset name (its `split`), a folder of images (searched
            recursively; other files are skipped), or a ``.npy`` file of
            uint8 images ``[n, height, width(, channels)]``.
        preprocessing: the model's `kres.preprocessing.Preprocessing`: each
            image is converted to its channels and resized as evaluation
            resizes (`kres.preprocessing.eval_resize`).
        count: how many images (the first ones of the dataset split, of the
            folder in sorted order, or of the array).
        data_dir: the dataset's tfds data directory.
        split: ``"train"``, ``"val"`` or ``"test"``.

    Returns:
        float32 pixels ``[n, height, width, channels]`` with values 0-255.

    Raises:
        ValueError: for an unknown source, a split that is none of those, or
            no images found.
    """
    from kres.preprocessing import eval_resize

    checks.positive_int("count", count)
    checks.choice("split", split, ("train", "val", "test"))
    source = os.fspath(source)
    if source.endswith(".npy") and os.path.isfile(source):
        images = [tf.constant(image) for image in np.load(source)[:count]]
    elif os.path.isdir(source) and not _is_split_folder(source):
        # The image files an image folder's scan reads (hidden ones, such as
        # macOS's ._ copies, left out), in sorted order.
        paths = sorted(os.path.join(folder, name) for folder, _, names in os.walk(source)
                       if "/." not in folder[len(source):]
                       for name in names if not name.startswith(".")
                       and name.lower().endswith(IMAGE_EXTENSIONS))[:count]
        images = [_decoded(path, preprocessing.channels, source) for path in paths]
    else:
        data = load(source, data_dir=data_dir)
        images = [image for image, _ in getattr(data, split).take(count)]
    if not images:
        raise ValueError(f"No images to sample in source. Received: source={source!r}")

    def fit(image):
        image = tf.convert_to_tensor(image)
        if image.shape.rank == 2:
            image = image[..., None]
        if image.shape[-1] == 4:
            image = image[..., :3]
        if preprocessing.channels == 1 and image.shape[-1] == 3:
            image = tf.image.rgb_to_grayscale(image)
        elif preprocessing.channels == 3 and image.shape[-1] == 1:
            image = tf.repeat(image, 3, axis=-1)
        return eval_resize(tf.cast(image, tf.float32), preprocessing.height,
                           preprocessing.width, preprocessing.resize == "center_crop")

    return np.stack([fit(image).numpy() for image in images]).astype(np.float32)


def _decoded(path, channels, source):
    """One calibration image, decoded as training decodes (`kres.images.decode`)."""
    from kres.images import decode

    try:
        return decode(tf.io.read_file(path), channels)
    except tf.errors.InvalidArgumentError as error:
        raise ValueError(
            f"The calibration image {os.path.relpath(path, source)} does not decode "
            f"({decode_error_reason(error)}): "
            f"remove it from the folder or give other images. Received: source={source!r}"
        ) from None


def _is_split_folder(path):
    return os.path.isdir(os.path.join(path, "train")) and os.path.isdir(os.path.join(path, "test"))
