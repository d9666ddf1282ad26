"""Datasets and input pipelines.

TensorFlow Datasets is the source: `load` returns train, validation and test
`tf.data` pipelines for a tfds dataset (or a folder of images, or NumPy
arrays), with the normalisation and augmentation of the dataset's recipe.

Offline: when a dataset is not prepared and the network is unreachable,
`load` fails in seconds with a message saying what to install or where to
put which files. Fashion-MNIST is prepared from Debian's
``dataset-fashion-mnist`` files (`prepare_fashion_mnist`) without any download.

Each dataset gets its own tfds ``data_dir`` (`data_dir_for`): MNIST and
Fashion-MNIST share file names, and tfds reuses extracted files by name.
"""

import dataclasses
import fcntl
import gzip
import os
import socket
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from kres.errors import did_you_mean

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
AUGMENTATIONS = ("crop_flip", "crop", "imagenet", "none")


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
            f"Unknown dataset.{did_you_mean(name, DATASETS)} Known: "
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


# --- Offline preparation ----------------------------------------------------

def read_idx(path):
    """Reads an IDX file (``.gz`` or not) into a NumPy array."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = np.frombuffer(data, ">u4", ndim, 4).astype(int)
    values = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if values.size != np.prod(dims):
        raise ValueError(f"{path} holds {values.size} values, its header announces {dims}")
    return values.reshape(dims)


def _read_fashion_mnist(source):
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

    splits = _read_fashion_mnist(source)
    builder = tfds.builder("fashion_mnist", data_dir=data_dir)
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
    return data_dir


def _network_reachable(host="storage.googleapis.com", port=443, timeout=3.0):
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def ensure_prepared(name, data_dir):
    """Makes sure tfds dataset `name` is ready in `data_dir`, or fails fast.

    Fashion-MNIST is prepared from Debian's files when they exist. Other
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
    if not isinstance(val_size, int) or not 0 < val_size < total:
        raise ValueError(
            f"val_size must be between 1 and {total - 1} (the training split has {total} "
            f"examples). Received: val_size={val_size!r}"
        )
    available = total - val_size
    if subset is None:
        return available
    if not isinstance(subset, int) or not 0 < subset <= available:
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
    spec = DatasetSpec(None, x_train.shape[1], x_train.shape[3], num_classes,
                       tuple(scaled.mean(axis=(0, 1, 2))), tuple(scaled.std(axis=(0, 1, 2))),
                       augment=augment, val_size=n_val)

    def slices(x, y):
        return tf.data.Dataset.from_tensor_slices((x, y))

    return Data(name=name, spec=spec, train=slices(x_train[:train_size], y_train[:train_size]),
                val=slices(x_train[train_size:], y_train[train_size:]),
                test=slices(x_test, y_test),
                sizes={"train": train_size, "val": n_val, "test": len(x_test)},
                class_names=[str(i) for i in range(num_classes)])


# --- Pipelines ------------------------------------------------------------------

def fits_in_memory(spec, examples, budget_bytes=4 << 30):
    """Whether `examples` decoded images of `spec` fit the cache budget (4 GiB).

    Datasets whose images vary in size (ImageNet, folders) are not cached.
    """
    if spec.image_size is None:
        return False
    return examples * spec.image_size ** 2 * spec.channels <= budget_bytes


def pipeline(ds, spec, *, training, batch_size, image_size, channels, num_classes,
             augment=None, mixup_alpha=0.0, cutmix_alpha=0.0, random_erasing=0.0,
             color_jitter=0.0, cache=True, shuffle_buffer=None, seed=None,
             deterministic=False, drop_remainder=None):
    """Turns raw ``(uint8 image, label)`` pairs into training or evaluation batches.

    Decodes to float, augments (training only), resizes to `image_size`,
    converts grayscale to `channels`, normalises with the dataset's mean and
    std, one-hot encodes the labels, batches and prefetches. Random ops are
    stateless and seeded per example, so with a `seed` the batches are the
    same on every run.

    Args:
        ds: a dataset of ``(image, label)``.
        spec: the `DatasetSpec` (normalisation, default augmentation).
        training: shuffle and augment.
        batch_size: examples per batch.
        image_size: output height and width.
        channels: output channels: 1, or 3 (grayscale images are repeated).
        num_classes: size of the one-hot labels.
        augment: one of `AUGMENTATIONS` (default: the spec's).
        mixup_alpha: mixup's Beta parameter; 0 disables it.
        cutmix_alpha: CutMix's Beta parameter; 0 disables it.
        random_erasing: probability of random erasing per image.
        color_jitter: strength of brightness/contrast/saturation jitter
            (``"imagenet"`` augmentation only).
        cache: keep the decoded images in memory (see `fits_in_memory`).
        shuffle_buffer: shuffle buffer size (default: the whole split, up to
            50,000).
        seed: seed for shuffling and augmentation; ``None`` for fresh
            randomness.
        deterministic: keep the element order independent of thread timing.
        drop_remainder: drop a last partial batch (default: when training).

    Returns:
        A batched `tf.data.Dataset` of ``(float32 images, float32 one-hot)``.
    """
    augment = augment or spec.augment
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}. Received: augment={augment!r}")
    if channels not in (1, 3) or (channels == 1 and spec.channels == 3):
        raise ValueError(
            f"channels must be 1 or 3, and 1 only for grayscale data ({spec.channels}-channel "
            f"here). Received: channels={channels!r}"
        )
    autotune = tf.data.AUTOTUNE
    mean = tf.constant(spec.mean, tf.float32) * 255.0
    std = tf.constant(spec.std, tf.float32) * 255.0
    drop_remainder = training if drop_remainder is None else drop_remainder
    if cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(shuffle_buffer or 50_000, seed=seed, reshuffle_each_iteration=True)
    # One seed pair per example (and per batch below) drives stateless random
    # ops: reproducible whatever the parallelism.
    ds = tf.data.Dataset.zip((ds, tf.data.Dataset.random(seed=seed).batch(2)))

    def prepare(example, rng):
        image, label = example
        image = tf.cast(image, tf.float32)
        if training:
            image = _augment(image, rng, augment, image_size, color_jitter)
        else:
            image = eval_resize(image, image_size, image_size, augment == "imagenet")
        image = (image - mean) / std
        if training and random_erasing > 0:
            image = _random_erase(image, tf.random.experimental.stateless_fold_in(rng, 7),
                                  random_erasing)
        if channels == 3 and spec.channels == 1:
            image = tf.repeat(image, 3, axis=-1)
        return image, tf.one_hot(label, num_classes)

    options = tf.data.Options()
    options.deterministic = deterministic or seed is not None
    ds = ds.map(prepare, num_parallel_calls=autotune).with_options(options)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if training and (mixup_alpha > 0 or cutmix_alpha > 0):
        batch_rng = tf.data.Dataset.random(seed=None if seed is None else seed + 1).batch(2)
        ds = tf.data.Dataset.zip((ds, batch_rng)).map(
            lambda batch, rng: _mix(*batch, rng, mixup_alpha, cutmix_alpha),
            num_parallel_calls=autotune)
    return ds.prefetch(autotune)


def _augment(image, rng, augment, size, color_jitter):
    seeds = [tf.random.experimental.stateless_fold_in(rng, i) for i in range(5)]
    if augment in ("crop_flip", "crop"):
        image = _resize(image, size)
        image = tf.pad(image, [[4, 4], [4, 4], [0, 0]])
        image = tf.image.stateless_random_crop(image, [size, size, tf.shape(image)[-1]],
                                               seed=seeds[0])
        if augment == "crop_flip":
            image = tf.image.stateless_random_flip_left_right(image, seed=seeds[1])
        return image
    if augment == "imagenet":
        begin, crop, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(image), tf.zeros([0, 0, 4]), seed=seeds[0], min_object_covered=0.0,
            aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0), max_attempts=10,
            use_image_if_no_bounding_boxes=True)
        image = tf.slice(image, begin, crop)
        image = tf.image.resize(image, [size, size])
        image = tf.image.stateless_random_flip_left_right(image, seed=seeds[1])
        if color_jitter > 0:
            image = tf.image.stateless_random_brightness(image, 255.0 * color_jitter, seeds[2])
            image = tf.image.stateless_random_contrast(image, 1 - color_jitter,
                                                       1 + color_jitter, seeds[3])
            if image.shape[-1] == 3:
                image = tf.image.stateless_random_saturation(image, 1 - color_jitter,
                                                             1 + color_jitter, seeds[4])
            image = tf.clip_by_value(image, 0.0, 255.0)
        return image
    return _resize(image, size)


def _resize(image, size):
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return tf.image.resize(image, [size, size])


def eval_resize(image, height, width, center_crop):
    """The evaluation resize of one image, shared by `pipeline` and the export.

    Plain: straight to ``height x width``. Center crop (the ImageNet
    evaluation): the shorter side to ``min(height, width) / 0.875`` (256 for
    224), then the central ``height x width``.
    """
    if not center_crop:
        if image.shape[0] == height and image.shape[1] == width:
            return image
        return tf.image.resize(image, [height, width])
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = (min(height, width) / 0.875) / tf.reduce_min(shape)
    new = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), [height, width])
    image = tf.image.resize(image, new)
    return tf.image.crop_to_bounding_box(image, (new[0] - height) // 2,
                                         (new[1] - width) // 2, height, width)


def _random_erase(image, rng, probability):
    """Random erasing (Zhong et al. 2017): a box of 2-40% of the area, noise-filled."""
    seeds = [tf.random.experimental.stateless_fold_in(rng, i) for i in range(5)]
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    area = tf.cast(h * w, tf.float32) * tf.random.stateless_uniform([], seeds[0], 0.02, 0.4)
    log_ratio = tf.random.stateless_uniform([], seeds[1], np.log(0.3), np.log(1 / 0.3))
    ratio = tf.exp(log_ratio)
    eh = tf.clip_by_value(tf.cast(tf.sqrt(area * ratio), tf.int32), 1, h)
    ew = tf.clip_by_value(tf.cast(tf.sqrt(area / ratio), tf.int32), 1, w)
    top = tf.random.stateless_uniform([], seeds[2], 0, h - eh + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform([], seeds[3], 0, w - ew + 1, dtype=tf.int32)
    rows = tf.range(h)[:, None, None]
    cols = tf.range(w)[None, :, None]
    inside = (rows >= top) & (rows < top + eh) & (cols >= left) & (cols < left + ew)
    noise = tf.random.stateless_normal(tf.shape(image), seeds[4])
    apply = tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(rng, 9)) \
        < probability
    return tf.where(inside & apply, noise, image)


def _beta(rng, alpha):
    a = tf.random.stateless_gamma([], rng, alpha)
    b = tf.random.stateless_gamma([], tf.random.experimental.stateless_fold_in(rng, 1), alpha)
    return a / (a + b)


def _mix(images, labels, rng, mixup_alpha, cutmix_alpha):
    """Mixup (Zhang et al. 2017) or CutMix (Yun et al. 2019) on one batch; when both
    are on, each batch gets one of them with equal probability."""
    def fold(i):
        return tf.random.experimental.stateless_fold_in(rng, i)

    perm = tf.argsort(tf.random.stateless_uniform([tf.shape(images)[0]], fold(0)))
    other_images, other_labels = tf.gather(images, perm), tf.gather(labels, perm)

    def mixup():
        lam = _beta(fold(1), mixup_alpha)
        return lam * images + (1 - lam) * other_images, lam * labels + (1 - lam) * other_labels

    def cutmix():
        lam = _beta(fold(2), cutmix_alpha)
        h, w = tf.shape(images)[1], tf.shape(images)[2]
        ch = tf.cast(tf.cast(h, tf.float32) * tf.sqrt(1.0 - lam), tf.int32)
        cw = tf.cast(tf.cast(w, tf.float32) * tf.sqrt(1.0 - lam), tf.int32)
        cy = tf.random.stateless_uniform([], fold(3), 0, h, dtype=tf.int32)
        cx = tf.random.stateless_uniform([], fold(4), 0, w, dtype=tf.int32)
        y0, y1 = tf.maximum(cy - ch // 2, 0), tf.minimum(cy + ch // 2, h)
        x0, x1 = tf.maximum(cx - cw // 2, 0), tf.minimum(cx + cw // 2, w)
        rows = tf.range(h)[None, :, None, None]
        cols = tf.range(w)[None, None, :, None]
        box = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
        # The labels follow the area actually pasted (the box is clipped).
        kept = 1.0 - tf.cast((y1 - y0) * (x1 - x0), tf.float32) / tf.cast(h * w, tf.float32)
        return (tf.where(box, other_images, images),
                kept * labels + (1 - kept) * other_labels)

    if cutmix_alpha <= 0:
        return mixup()
    if mixup_alpha <= 0:
        return cutmix()
    return tf.cond(tf.random.stateless_uniform([], fold(5)) < 0.5, cutmix, mixup)
