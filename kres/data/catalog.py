"""The datasets kres knows by name: where tfds keeps them, and how each is fed.

A `DatasetSpec` says how kres reads one dataset (tfds name, splits,
validation size), what its images are (size, channels, classes) and how a
model is trained on it (its statistics, from `kres.preprocessing`, and the
training augmentation). Needs no TensorFlow.
"""

import os
from dataclasses import dataclass

from kres import checks
from kres.preprocessing import AUGMENTATIONS, DATASET_STATISTICS, Preprocessing


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


def _spec(name, tfds_name, image_size, channels, num_classes, **kwargs):
    mean, std, _ = DATASET_STATISTICS[name]
    return DatasetSpec(tfds_name, image_size, channels, num_classes, mean, std, **kwargs)


DATASETS = {
    "cifar10": _spec("cifar10", "cifar10", 32, 3, 10),
    "cifar100": _spec("cifar100", "cifar100", 32, 3, 100),
    "fashion_mnist": _spec("fashion_mnist", "fashion_mnist", 28, 1, 10),
    "mnist": _spec("mnist", "mnist", 28, 1, 10, augment="crop"),
    "imagenette": _spec("imagenette", "imagenette/320px-v2", None, 3, 10, augment="imagenet",
                        test_split="validation", val_size=500),
    "imagenet2012": _spec("imagenet2012", "imagenet2012", None, 3, 1000, augment="imagenet",
                          test_split="validation", val_size=10000),
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
