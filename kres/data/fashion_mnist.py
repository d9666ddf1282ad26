"""Datasets prepared without a download: Fashion-MNIST from its IDX files.

Debian's ``dataset-fashion-mnist`` package holds the real 60,000 + 10,000
images as IDX files; `prepare_fashion_mnist` validates them and stores them
as tfds's own ``fashion_mnist`` dataset, which `kres.data.sources.load` then
reads like a download.
"""

import contextlib
import gzip
import io
import os
import time

import numpy as np

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
# The label names, in label order (tfds's fashion_mnist gives the same).
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")


def read_idx(path):
    """Reads an IDX file (``.gz`` or not) into a NumPy array."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, gzip.BadGzipFile) as e:  # cut short, or not gzip at all
        raise ValueError(f"{path} is not a readable IDX file ({e}): download or install "
                         f"it again") from e
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = np.frombuffer(data, ">u4", ndim, 4).astype(int)
    values = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if values.size != np.prod(dims):
        raise ValueError(f"{path} holds {values.size} values, its header announces {dims}")
    return values.reshape(dims)


def read_fashion_mnist(source=DEBIAN_FASHION_MNIST):
    """Fashion-MNIST's splits from the four IDX ``.gz`` files in `source`, validated.

    Needs NumPy only (no TensorFlow), so scripts on any Keras backend can use it.

    Returns:
        ``{"train": (x, y), "test": (x, y)}``: uint8 images of shape
        ``(n, 28, 28, 1)`` and int64 labels.

    Raises:
        FileNotFoundError: a file is missing (the message says how to get them).
        ValueError: the files hold other shapes or an unbalanced labelling.
    """
    files = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
             "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000)}
    missing = [f for images, labels, _ in files.values() for f in (images, labels)
               if not os.path.isfile(os.path.join(source, f))]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST files missing in {source}: {', '.join(missing)}. Install them "
            "with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or put the four "
            "IDX .gz files from https://github.com/zalandoresearch/fashion-mnist there."
        )
    splits = {}
    for split, (images, labels, count) in files.items():
        x = read_idx(os.path.join(source, images))
        y = read_idx(os.path.join(source, labels))
        # Validate before anything is written: the right counts, 28x28 images,
        # ten classes, balanced as in the original release.
        if x.shape != (count, 28, 28) or y.shape != (count,):
            raise ValueError(
                f"Fashion-MNIST {split} files in {source} have shapes {x.shape} and "
                f"{y.shape}; expected ({count}, 28, 28) and ({count},)"
            )
        counts = np.bincount(y, minlength=10)
        if y.max() > 9 or not np.all(counts == count // 10):
            raise ValueError(
                f"Fashion-MNIST {split} labels in {source} are not the balanced 10 classes "
                f"of the original: counts per label {counts.tolist()}"
            )
        splits[split] = (x[..., None], y.astype(np.int64))
    return splits


def prepare_fashion_mnist(data_dir, source=DEBIAN_FASHION_MNIST):
    """Writes Fashion-MNIST from its IDX files as the tfds dataset ``fashion_mnist``.

    Debian recompressed the ``.gz`` files of ``dataset-fashion-mnist``, so
    their checksums differ from those tfds records, although the images are
    the original. This reads and validates the images and labels, then stores
    them with tfds's own ``fashion_mnist`` features and version, so that
    ``tfds.load("fashion_mnist", data_dir=data_dir)`` reads them like a
    download. Nothing touches the network.

    Args:
        data_dir: the tfds data directory to write into.
        source: folder of the four IDX ``.gz`` files.

    Returns:
        `data_dir`.

    Raises:
        FileNotFoundError: if the files are missing (the message says how to
            install them).
        ValueError: if they do not hold the 60,000 + 10,000 original images.
    """
    import tensorflow_datasets as tfds

    splits = read_fashion_mnist(source)
    builder = tfds.builder("fashion_mnist", data_dir=data_dir)
    print(f"Preparing Fashion-MNIST from {source} as tfds's fashion_mnist in {data_dir} "
          "(once; nothing is downloaded)", flush=True)
    # tfds announces a download and says the data were downloaded: not so here.
    start = time.monotonic()
    with contextlib.redirect_stdout(io.StringIO()):
        _store(tfds, builder, splits, data_dir)
    print(f"Prepared Fashion-MNIST in {time.monotonic() - start:.0f} s", flush=True)
    return data_dir


def _store(tfds, builder, splits, data_dir):
    import tensorflow as tf

    tfds.dataset_builders.store_as_tfds_dataset(
        name="fashion_mnist",
        version=str(builder.version),
        features=builder.info.features,
        split_datasets={
            split: tf.data.Dataset.from_tensor_slices({"image": x, "label": y})
            for split, (x, y) in splits.items()
        },
        data_dir=data_dir,
        description="Fashion-MNIST, prepared by kres from local IDX files.",
        homepage="https://github.com/zalandoresearch/fashion-mnist",
    )
