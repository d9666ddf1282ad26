"""Datasets: TensorFlow Datasets, image folders, NumPy arrays, offline preparation.

TensorFlow Datasets is the source: `load` returns the raw train, validation
and test splits of a tfds dataset (or a folder of images, or NumPy arrays)
with the `DatasetSpec` that says how to normalise and augment them; the
`tf.data` pipelines are `kres.augment.pipeline`.

Offline: when a dataset is not prepared and the network is unreachable,
`load` fails in seconds with a message saying what to install or where to
put which files. Fashion-MNIST is prepared from Debian's
``dataset-fashion-mnist`` files (`kres.offline.prepare_fashion_mnist`)
without any download.

Each dataset gets its own tfds ``data_dir`` (`data_dir_for`): MNIST and
Fashion-MNIST share file names, and tfds reuses extracted files by name.
"""

import dataclasses
import fcntl
import os
import socket
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from kres import checks
from kres.augment import AUGMENTATIONS
from kres.offline import DEBIAN_FASHION_MNIST, prepare_fashion_mnist
from kres.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing


@dataclass(frozen=True)
class DatasetSpec:
    """How kres reads and normalises one dataset.

    Attributes:
        tfds_name: the tfds name (with config), or ``None`` for a folder or
            arrays.
        image_size: the images' native height and width (``None`` if they
            vary).
        channels: 1 (grayscale) or 3.
        num_classes: number of classes.
        mean: per-channel mean of the training images, in [0, 1].
        std: per-channel standard deviation, in [0, 1].
        augment: the training augmentation: ``"crop_flip"`` (4-pixel pad,
            random crop, horizontal flip: the CIFAR recipe), ``"crop"`` (no
            flip, for digits), ``"imagenet"`` (random-resized crop and flip)
            or ``"none"``.
        train_split: tfds split used for training and validation.
        test_split: tfds split used for the final test.
        val_size: examples held out from the end of `train_split` for
            validation (early stopping and checkpoint selection).
    """

    tfds_name: str | None
    image_size: int | None
    channels: int
    num_classes: int
    mean: tuple
    std: tuple
    augment: str = "crop_flip"
    train_split: str = "train"
    test_split: str = "test"
    val_size: int = 5000

    def __post_init__(self):
        checks.tuples(self, "mean", "std")
        checks.string("tfds_name", self.tfds_name, optional=True)
        checks.positive_int("image_size", self.image_size, optional=True)
        checks.choice("channels", self.channels, (1, 3))
        checks.positive_int("num_classes", self.num_classes)
        checks.choice("augment", self.augment, AUGMENTATIONS)
        for field in ("train_split", "test_split"):
            checks.string(field, getattr(self, field))
        checks.integer("val_size", self.val_size, minimum=0)
        # The normalisation is checked where it is used, in the model's input.
        Preprocessing(1, 1, self.channels, self.mean, self.std)

    def preprocessing(self, input_shape):
        """The `Preprocessing` of a model with input ``(height, width, channels)``
        fed this dataset: its mean and std, and the ImageNet evaluation crop for
        datasets augmented the ImageNet way."""
        height, width, channels = input_shape
        resize = "center_crop" if self.augment == "imagenet" else "resize"
        return Preprocessing(height, width, channels, self.mean, self.std, resize)


DATASETS = {
    "cifar10": DatasetSpec("cifar10", 32, 3, 10, (0.4914, 0.4822, 0.4465),
                           (0.2470, 0.2435, 0.2616)),
    "cifar100": DatasetSpec("cifar100", 32, 3, 100, (0.5071, 0.4865, 0.4409),
                            (0.2673, 0.2564, 0.2762)),
    "fashion_mnist": DatasetSpec("fashion_mnist", 28, 1, 10, (0.2860,), (0.3530,)),
    "mnist": DatasetSpec("mnist", 28, 1, 10, (0.1307,), (0.3081,), augment="crop"),
    "imagenette": DatasetSpec("imagenette/320px-v2", None, 3, 10, IMAGENET_MEAN, IMAGENET_STD,
                              augment="imagenet", test_split="validation", val_size=500),
    "imagenet2012": DatasetSpec("imagenet2012", None, 3, 1000, IMAGENET_MEAN, IMAGENET_STD,
                                augment="imagenet", test_split="validation", val_size=10000),
}


def list_datasets():
    """Names of the datasets `load` knows (a folder or arrays work too)."""
    return sorted(DATASETS)


def get_dataset_spec(name):
    """The `DatasetSpec` of a named dataset.

    Raises:
        ValueError: for an unknown name, suggesting the closest ones.
    """
    if name not in DATASETS:
        raise ValueError(
            f"Unknown dataset.{checks.did_you_mean(name, DATASETS)} Known: "
            f"{', '.join(list_datasets())}, or a folder root/<split>/<class>/*.jpg. "
            f"Received: dataset={name!r}"
        )
    return DATASETS[name]


def data_dir_for(name, root=None):
    """The tfds ``data_dir`` of one dataset: ``<root>/<name>``.

    `root` defaults to ``$KRES_DATA_DIR`` or ``~/.cache/kres/datasets``.
    """
    root = root or os.environ.get("KRES_DATA_DIR") or os.path.expanduser(
        "~/.cache/kres/datasets")
    return os.path.join(root, name)


def _network_reachable(host="storage.googleapis.com", port=443, timeout=3.0):
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def ensure_prepared(name, data_dir):
    """Makes sure tfds dataset `name` is ready in `data_dir`, or fails fast.

    Fashion-MNIST is prepared from Debian's files when they exist
    (`kres.offline`). Other
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


# --- Loading ------------------------------------------------------------------

@dataclass
class Data:
    """The raw splits of a dataset (uint8 images, integer labels) and their description.

    Attributes:
        name: dataset name.
        spec: its `DatasetSpec`.
        train, val, test: `tf.data.Dataset` of ``(uint8 image, int64 label)``.
        sizes: number of examples per split.
        class_names: the label names.
    """

    name: str
    spec: DatasetSpec
    train: tf.data.Dataset
    val: tf.data.Dataset
    test: tf.data.Dataset
    sizes: dict
    class_names: list


def load(name, *, data_dir=None, subset=None, val_size=None):
    """Loads a dataset's train, validation and test splits (raw, unbatched).

    Args:
        name: a name from `list_datasets`, or a folder holding
            ``<split>/<class>/<image>`` files (splits ``train`` and ``test``,
            optional ``val``).
        data_dir: tfds data directory of this dataset (default
            `data_dir_for(name)`).
        subset: use only the first `subset` training examples.
        val_size: examples held out from the end of the training split for
            validation (default: the spec's).

    Returns:
        A `Data`.

    Raises:
        ValueError: for an unknown dataset or a subset larger than the data.
        RuntimeError: if the data cannot be had offline (see
            `ensure_prepared`).
    """
    import tensorflow_datasets as tfds

    if isinstance(name, str) and os.path.isdir(name) and name not in DATASETS:
        return _load_folder(name, subset=subset, val_size=val_size)
    spec = get_dataset_spec(name)
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


def _load_folder(root, *, subset, val_size):
    import tensorflow_datasets as tfds

    builder = tfds.ImageFolder(root)
    splits = builder.info.splits
    if "train" not in splits or "test" not in splits:
        raise ValueError(
            "An image folder needs root/train/<class>/* and root/test/<class>/*. "
            f"Received: dataset={root!r} with splits {sorted(splits)}"
        )
    classes = builder.info.features["label"].num_classes
    spec = DatasetSpec(None, None, 3, classes, IMAGENET_MEAN, IMAGENET_STD, augment="imagenet",
                       val_size=val_size or 0)

    def read(s):
        return builder.as_dataset(split=s, as_supervised=True, shuffle_files=False).map(
            lambda x, y: (x, tf.cast(y, tf.int64)))

    # ImageFolder has no sub-split API ("train[:n]"): take and skip instead.
    total = splits["train"].num_examples
    if "val" in splits:
        val_n = splits["val"].num_examples
        train_size = _check_sizes(total + val_n, subset, val_n)
        val = read("val")
    else:
        val_n = val_size or max(1, total // 10)
        train_size = _check_sizes(total, subset, val_n)
        val = read("train").skip(total - val_n)
    spec = dataclasses.replace(spec, val_size=val_n)
    return Data(name=os.path.basename(os.path.normpath(root)), spec=spec,
                train=read("train").take(train_size), val=val, test=read("test"),
                sizes={"train": train_size, "val": val_n, "test": splits["test"].num_examples},
                class_names=list(builder.info.features["label"].names))


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
        return tf.data.Dataset.from_tensor_slices((x, y))

    return Data(name=name, spec=spec, train=slices(x_train[:train_size], y_train[:train_size]),
                val=slices(x_train[train_size:], y_train[train_size:]),
                test=slices(x_test, y_test),
                sizes={"train": train_size, "val": n_val, "test": len(x_test)},
                class_names=[str(i) for i in range(num_classes)])

