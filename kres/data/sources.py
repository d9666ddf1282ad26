"""Datasets: TensorFlow Datasets, image folders, NumPy arrays, offline preparation.

TensorFlow Datasets is the source: `load` returns the raw train, validation
and test splits of a tfds dataset (or a folder of images, or NumPy arrays)
with the `kres.data.catalog.DatasetSpec` that says how to normalise and
augment them; the `tf.data` pipelines are `kres.data.pipeline.pipeline`.

Offline: when a dataset is not prepared and the network is unreachable,
`load` fails in seconds with a message saying what to install or where to
put which files. Fashion-MNIST is prepared from Debian's
``dataset-fashion-mnist`` files (`kres.data.fashion_mnist.prepare_fashion_mnist`)
without any download.

Each dataset gets its own tfds ``data_dir`` (`data_dir_for`): MNIST and
Fashion-MNIST share file names, and tfds reuses extracted files by name.
"""

import contextlib
import dataclasses
import fcntl
import os
import socket
import sys
from dataclasses import dataclass

import numpy as np

from kres import checks
from kres.backends import has_tensorflow, require_tensorflow
from kres.data import folder_data
from kres.data.catalog import DATASETS, DatasetSpec, data_dir_for, get_dataset_spec
from kres.data.fashion_mnist import (
    DEBIAN_FASHION_MNIST,
    FASHION_MNIST_CLASSES,
    prepare_fashion_mnist,
    read_fashion_mnist,
)


def _network_reachable(host="storage.googleapis.com", port=443, timeout=3.0):
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def ensure_prepared(name, data_dir):
    """Makes sure tfds dataset `name` is ready in `data_dir`, or fails fast.

    Fashion-MNIST is prepared from Debian's files when they exist
    (`kres.data.fashion_mnist`). Other
    datasets are downloaded by tfds when the network is reachable; without
    it, this raises at once (not after tfds's minutes of retries).

    Raises:
        RuntimeError: when the dataset cannot be had, saying what to do.
    """
    import tensorflow_datasets as tfds

    spec = get_dataset_spec(name)
    builder = tfds.builder(spec.tfds_name, data_dir=data_dir)
    if builder.is_prepared():
        return
    os.makedirs(data_dir, exist_ok=True)
    # One process prepares; others (parallel test workers) wait, then reuse.
    with open(os.path.join(data_dir, ".kres-prepare.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        builder = tfds.builder(spec.tfds_name, data_dir=data_dir)
        if builder.is_prepared():
            return
        with _tfds_bars_in_a_terminal_only(tfds):
            _prepare(name, spec, builder, data_dir)


def _prepare(name, spec, builder, data_dir):
    """Prepares dataset `name` (under `ensure_prepared`'s lock)."""
    if name == "fashion_mnist" and os.path.isdir(DEBIAN_FASHION_MNIST):
        prepare_fashion_mnist(data_dir)
        return
    if getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None):
        manual = os.path.join(data_dir, "downloads", "manual")
        if not os.path.isdir(manual) or not os.listdir(manual):
            raise RuntimeError(
                f"{name} needs a manual download: put its files in {manual}. "
                f"{builder.MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}"
            )
    elif not _network_reachable():
        hint = ("install Debian's dataset-fashion-mnist (`apt-get install "
                "dataset-fashion-mnist`), which kres prepares offline, or "
                if name == "fashion_mnist" else "")
        raise RuntimeError(
            f"{name} is not prepared in {data_dir} and the network is unreachable: "
            f"{hint}prepare it elsewhere with `tfds build {spec.tfds_name} --data_dir DIR` "
            f"and copy DIR's contents to {data_dir}."
        )
    builder.download_and_prepare()


@contextlib.contextmanager
def _tfds_bars_in_a_terminal_only(tfds):
    """tfds's progress bars (tqdm, on stderr) off where stderr is not a terminal:
    in a log file tqdm adds a line about ten times a second for the minutes a
    preparation takes."""
    if sys.stderr.isatty():
        yield
        return
    from tensorflow_datasets.core.utils import tqdm_utils

    shown = getattr(tqdm_utils, "_active", True)  # tfds's switch has no getter
    tfds.display_progress_bar(False)
    try:
        yield
    finally:
        tfds.display_progress_bar(shown)


@dataclass
class Data:
    """The raw splits of a dataset (uint8 images, integer labels) and their description.

    Attributes:
        name: dataset name.
        spec: its `DatasetSpec`.
        train, val, test: `tf.data.Dataset` of ``(uint8 image, int64 label)``;
            without TensorFlow, `kres.data.batches.Examples`.
        sizes: number of examples per split.
        class_names: the label names.
        folder_scan: for an image folder, its `kres.data.folder_scan.FolderScan`
            (counts, files that do not decode, files ignored, kinds, sizes).
        splits: for an image folder, the `kres.data.splits.Splits` used
            (``write_splits`` keeps them for a resume or an evaluation).
        skipped: ``(relative_path, reason)`` of the folder's files left out
            because they do not decode (``skip_bad_images=True``).
        multi_label: whether each example has a set of labels (a multi-hot
            float32 label of `class_names`' length), from a CSV file giving
            several labels to an image.
    """

    name: str
    spec: DatasetSpec
    train: object
    val: object
    test: object
    sizes: dict
    class_names: list
    folder_scan: object = None
    splits: dict | None = None
    skipped: list = dataclasses.field(default_factory=list)
    multi_label: bool = False


def load(name, *, data_dir=None, subset=None, val_size=None, skip_bad_images=False,
         splits=None, seed=0, channels=None, progress=None, labels=None, class_names=None):
    """Loads a dataset's train, validation and test splits (raw, unbatched).

    An image folder is scanned first (`kres.data.folders.scan`: every image
    decoded once, the way training decodes), so that every problem shows
    before any training work: files that do not decode are refused by path
    unless `skip_bad_images`; files that are not images are ignored (the scan
    counts them). Its splits are ``train/``, ``val/`` and ``test/`` when they
    exist, otherwise seeded stratified ones (`kres.data.splits.split`: 10% for
    the test, 10% or `val_size` for validation, taken from ``train/`` or the
    whole folder); the training files are then shuffled with `seed`, since a
    folder lists them class by class. Every image is decoded to `channels`
    (grayscale repeated, alpha dropped, CMYK converted; see
    `kres.data.folders.image_dataset`) and normalised with the ImageNet mean and
    std.

    Args:
        name: a name from `list_datasets`, or a folder holding
            ``<split>/<class>/<image>`` files (splits ``train`` and optional
            ``val`` and ``test``) or ``<class>/<image>`` files.
        data_dir: tfds data directory of this dataset (default
            `data_dir_for(name)`).
        subset: use only the first `subset` training examples (a folder: a
            seeded, stratified `subset` of its training images).
        val_size: examples held out from the end of the training split for
            validation (default: the spec's). A folder without ``val/``: the
            number (an int) or fraction (a float) of its training images (of
            all its images when flat) held out, stratified (default 10%); not
            allowed with a ``val/`` folder.
        skip_bad_images: a folder: train without the files that do not decode
            (listed in `Data.skipped`) instead of refusing them.
        splits: a folder: the `kres.data.splits.Splits` to use (from
            `kres.data.splits.read_splits`, e.g. a resumed run's), checked against
            the folder: the same class names, every file still there. Files
            that no longer decode are refused or, with `skip_bad_images`,
            skipped; `val_size` is then not used.
        seed: a folder: the seed of the stratified split, the subset and the
            order of the training files.
        channels: a folder: the channels to decode to, 1 or 3 (default 3).
        progress: a folder: the scan's progress bar (``None``: only for more
            than 500 files).
        labels: a folder: a CSV file of ``path,label`` or ``path,label1;label2``
            rows giving the images and their classes, in place of class
            folders (`kres.data.folders.scan`); several labels on a row make
            the data multi-label.
        class_names: a folder with `labels`: the classes, in their index
            order (a trained model's); default: the file's labels, sorted.

    Returns:
        A `Data` (for a folder with its `folder_scan`, `splits` and
        `skipped`).

    Raises:
        ValueError: for an unknown dataset or a subset larger than the data;
            for a folder, also: files that do not decode (every path listed)
            without `skip_bad_images`, no usable images or classes (see
            `kres.data.folders.scan`), `splits` that do not match the folder, too
            few images to hold out validation and test images.
        RuntimeError: if the data cannot be had offline (see
            `ensure_prepared`).
    """
    if isinstance(name, str) and os.path.isdir(name) and name not in DATASETS:
        return Data(**folder_data.load_folder(
            name, subset=subset, val_size=val_size, skip_bad_images=skip_bad_images,
            splits=splits, seed=seed, channels=channels, progress=progress, labels=labels,
            class_names=class_names))
    if labels is not None:
        checks.fail("labels", labels, f"label the images of a folder; {name!r} is a named "
                                      f"dataset with labels of its own")
    spec = get_dataset_spec(name)
    if not has_tensorflow():
        return _load_idx_files(name, spec, data_dir, subset, val_size)
    import tensorflow_datasets as tfds

    data_dir = data_dir or data_dir_for(name)
    ensure_prepared(name, data_dir)
    builder = tfds.builder(spec.tfds_name, data_dir=data_dir)
    total = builder.info.splits[spec.train_split].num_examples
    val_size = spec.val_size if val_size is None else val_size
    train_size = _check_sizes(total, subset, val_size)
    split = spec.train_split

    def read(s):
        return builder.as_dataset(split=s, as_supervised=True, shuffle_files=False)

    return Data(
        name=name, spec=spec,
        train=read(f"{split}[:{train_size}]"),
        val=read(f"{split}[{total - val_size}:]"),
        test=read(spec.test_split),
        sizes={"train": train_size, "val": val_size,
               "test": builder.info.splits[spec.test_split].num_examples},
        class_names=list(builder.info.features["label"].names),
    )


def check_readable_here(name):
    """Refuses, before any work, a dataset that this environment cannot read.

    Without TensorFlow, kres reads Fashion-MNIST (from its IDX files),
    arrays, and image folders (with Pillow and simplejpeg); other tfds
    datasets need TensorFlow.

    Raises:
        RuntimeError: naming the dataset and the missing packages.
    """
    if has_tensorflow() or not isinstance(name, str):
        return
    if name in DATASETS and name != "fashion_mnist":
        require_tensorflow(f"Dataset {name!r} (read through tensorflow-datasets; without "
                           f"TensorFlow kres reads fashion_mnist from its IDX files, and arrays)")
    if name not in DATASETS and os.path.isdir(name):
        folder_data.check_readable(name)


def _load_idx_files(name, spec, data_dir, subset, val_size):
    """`load` without TensorFlow: Fashion-MNIST from its IDX files, as `Examples`.

    The files are Debian's, or those in `data_dir` (a folder holding the
    four ``*-idx?-ubyte.gz`` files); the splits are those of the tfds dataset
    that `prepare_fashion_mnist` makes of the same files, in the same order.
    """
    from kres.data.batches import Examples

    check_readable_here(name)
    splits = read_fashion_mnist(data_dir or DEBIAN_FASHION_MNIST)
    (x, y), (x_test, y_test) = splits["train"], splits["test"]
    total = len(y)
    val_size = spec.val_size if val_size is None else val_size
    train_size = _check_sizes(total, subset, val_size)

    def examples(images, labels):
        return Examples(images, labels)

    return Data(name=name, spec=spec, train=examples(x[:train_size], y[:train_size]),
                val=examples(x[total - val_size:], y[total - val_size:]),
                test=examples(x_test, y_test),
                sizes={"train": train_size, "val": val_size, "test": len(y_test)},
                class_names=list(FASHION_MNIST_CLASSES))


def _check_sizes(total, subset, val_size):
    if not checks.is_int(val_size) or not 0 < val_size < total:
        raise ValueError(
            f"val_size must be between 1 and {total - 1} (the training split has {total} "
            f"examples). Received: val_size={val_size!r}"
        )
    available = total - val_size
    if subset is None:
        return available
    if not checks.is_int(subset) or not 0 < subset <= available:
        raise ValueError(
            f"subset must be between 1 and {available} (the training split has {total} "
            f"examples, {val_size} of them held out for validation). Received: subset={subset!r}"
        )
    return subset


def from_arrays(x_train, y_train, x_test, y_test, *, num_classes=None, val_size=0.1,
                augment="none", name="arrays"):
    """Wraps in-memory uint8 NumPy images and integer labels as a `Data`.

    Args:
        x_train, x_test: ``(n, height, width, channels)`` uint8 images (a
            missing channel axis is added).
        y_train, y_test: integer labels.
        num_classes: number of classes (default: ``max label + 1``).
        val_size: fraction (float) or count (int) of the training examples
            held out for validation.
        augment: one of `AUGMENTATIONS`.
        name: a name for the run directory.

    Returns:
        A `Data`, with per-channel mean and std measured on `x_train`.
    """
    x_train, x_test = (np.asarray(x) for x in (x_train, x_test))
    if x_train.ndim == 3:
        x_train, x_test = x_train[..., None], x_test[..., None]
    y_train, y_test = (np.asarray(y).astype(np.int64).reshape(-1) for y in (y_train, y_test))
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError(
            f"Images and labels differ in number: {len(x_train)} vs {len(y_train)} (train), "
            f"{len(x_test)} vs {len(y_test)} (test)."
        )
    top = int(max(y_train.max(), y_test.max()))
    num_classes = num_classes or top + 1
    if min(y_train.min(), y_test.min()) < 0 or top >= num_classes:
        raise ValueError(
            f"There are labels outside 0..{num_classes - 1}: they run from "
            f"{min(y_train.min(), y_test.min())} to {top}. Received: num_classes={num_classes}"
        )
    n_val = int(round(val_size * len(x_train))) if isinstance(val_size, float) else val_size
    train_size = _check_sizes(len(x_train), None, n_val)
    scaled = x_train.astype(np.float32) / 255.0
    spec = DatasetSpec(None, int(x_train.shape[1]), int(x_train.shape[3]), num_classes,
                       tuple(float(v) for v in scaled.mean(axis=(0, 1, 2))),
                       tuple(float(v) for v in scaled.std(axis=(0, 1, 2))),
                       augment=augment, val_size=n_val)

    def slices(x, y):
        if not has_tensorflow():
            from kres.data.batches import Examples

            return Examples(x, y)
        import tensorflow as tf

        return tf.data.Dataset.from_tensor_slices((x, y))

    return Data(name=name, spec=spec, train=slices(x_train[:train_size], y_train[:train_size]),
                val=slices(x_train[train_size:], y_train[train_size:]),
                test=slices(x_test, y_test),
                sizes={"train": train_size, "val": n_val, "test": len(x_test)},
                class_names=[str(i) for i in range(num_classes)])
