"""What a model's input goes through before the first layer, shared by training and serving.

`Preprocessing` describes it (input size, normalisation, channel order,
resize mode) and computes the normalisation (`Preprocessing.normalize`, the
one place that maths is written), which a model kres trains carries inside
itself as its first layer (`kres.layers.InputPreprocessing`): the input
pipelines and every export feed it pixels. `eval_resize` is the evaluation
resize that the input pipelines and the exported serving graph both apply,
so a served model sees exactly what it was evaluated on.
"""

import dataclasses
from dataclasses import dataclass

from kres import checks

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The ImageNet mean and std for one-channel models, with the luma weights of
# `kres.images`' grayscale conversion (0.2989, 0.5870, 0.1140): the mean's luma,
# and the same sum of the stds (the luma's std when the channels are fully
# correlated, nearly so in photographs).
IMAGENET_GRAY_MEAN = (0.459,)
IMAGENET_GRAY_STD = (0.226,)
RESIZE_MODES = ("resize", "center_crop")
CHANNEL_ORDERS = ("rgb", "bgr")
# The ImageNet evaluation: the shorter side to size / 0.875 (256 for 224), then the centre.
CROP_FRACTION = 0.875
# The training augmentations by name (`kres.data.pipeline` applies them; named here, free of
# TensorFlow, so that recipes validate on any Keras backend).
AUGMENTATIONS = ("crop_flip", "crop", "imagenet", "none")
# The automatic augmentations a recipe can add after those (`kres.data.augment`), and
# RandAugment's magnitude scale (Cubuk et al. 2020; timm's rand-m9-n2: 0 to 10).
AUTO_AUGMENTATIONS = ("randaugment", "augmix")
MAX_MAGNITUDE = 10
# The augmentations that show a network mirror images.
FLIPPING = ("crop_flip", "imagenet")
# What a model trained on a dataset kres names expects: the training images' per-channel
# mean and standard deviation in [0, 1], and the evaluation resize of its recipe.
DATASET_STATISTICS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "resize"),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "resize"),
    "fashion_mnist": ((0.2860,), (0.3530,), "resize"),
    "mnist": ((0.1307,), (0.3081,), "resize"),
    "imagenette": (IMAGENET_MEAN, IMAGENET_STD, "center_crop"),
    "imagenet2012": (IMAGENET_MEAN, IMAGENET_STD, "center_crop"),
}


@dataclass(frozen=True)
class Preprocessing:
    """What is done to an image before the model sees it.

    Attributes:
        height: model input height.
        width: model input width.
        channels: model input channels (1 or 3).
        mean: per-channel mean in [0, 1] (one value, or one per channel).
        std: per-channel standard deviation in [0, 1].
        resize: ``"resize"`` (straight to the input size) or ``"center_crop"``
            (shorter side to ``size / 0.875``, then the central crop).
        channel_order: ``"rgb"``, or ``"bgr"`` for weights trained on
            BGR images (Caffe's, which keras.applications' v1 ResNets and
            VGG carry). `mean` and `std` are given in the model's order.

    Example:

    >>> from kres.preprocessing import Preprocessing
    >>> Preprocessing(28, 28, 1, (0.286,), (0.353,)).resize
    'resize'
    """

    height: int
    width: int
    channels: int
    mean: tuple
    std: tuple
    resize: str = "resize"
    channel_order: str = "rgb"

    def __post_init__(self):
        checks.tuples(self, "mean", "std")
        for field in ("height", "width"):
            checks.positive_int(field, getattr(self, field))
        checks.choice("channels", self.channels, (1, 3))
        for field in ("mean", "std"):
            value = getattr(self, field)
            if (not isinstance(value, tuple) or len(value) not in (1, self.channels)
                    or not all(checks.is_number(v) for v in value)):
                checks.fail(field, value, f"must be a tuple of 1 or {self.channels} numbers")
        if not all(s > 0 for s in self.std):
            checks.fail("std", self.std, "must be positive")
        checks.choice("resize", self.resize, RESIZE_MODES)
        checks.choice("channel_order", self.channel_order, CHANNEL_ORDERS)
        if self.channel_order == "bgr" and self.channels != 3:
            checks.fail("channel_order", self.channel_order, "needs 3 channels")

    def normalize(self, images):
        """Normalises RGB pixels (0-255, float) as the model expects them.

        Reorders the channels for ``"bgr"``, then subtracts ``mean * 255`` and
        divides by ``std * 255``. Works on NumPy arrays and TensorFlow or
        JAX tensors alike (the constants are NumPy, so a traced graph holds
        them as constants). The one place this is computed: a model's
        `kres.layers.InputPreprocessing` calls it.

        Example:

        >>> import numpy as np
        >>> from kres.preprocessing import Preprocessing
        >>> prep = Preprocessing(2, 2, 3, (0.5,), (0.5,))
        >>> float(prep.normalize(np.full((2, 2, 3), 255.0)).max())
        1.0
        """
        import numpy as np

        mean = np.broadcast_to(np.asarray(self.mean, np.float32) * 255.0, (self.channels,))
        std = np.broadcast_to(np.asarray(self.std, np.float32) * 255.0, (self.channels,))
        if self.channel_order == "bgr":
            images = images[..., ::-1]
        return (images - mean) / std

    def pixel_statistics(self):
        """``(mean, std)`` in pixel values (0-255), one per channel in the images'
        own (RGB) order: the pixel that `normalize` maps to 0, and the step
        that it maps to 1 (random erasing's noise is drawn with them).

        Example:

        >>> from kres.preprocessing import Preprocessing
        >>> mean, std = Preprocessing(2, 2, 3, (0.5,), (0.25,)).pixel_statistics()
        >>> mean.tolist(), std.tolist()
        ([127.5, 127.5, 127.5], [63.75, 63.75, 63.75])
        """
        import numpy as np

        mean = np.broadcast_to(np.asarray(self.mean, np.float32) * 255.0, (self.channels,))
        std = np.broadcast_to(np.asarray(self.std, np.float32) * 255.0, (self.channels,))
        if self.channel_order == "bgr":
            mean, std = mean[::-1], std[::-1]
        return mean.copy(), std.copy()

    @classmethod
    def imagenet(cls, input_shape):
        """ImageNet statistics for a model input ``(height, width, channels)``
        (their luma for a 1-channel model: `IMAGENET_GRAY_MEAN`), plain resize."""
        height, width, channels = input_shape
        if channels == 1:
            return cls(height, width, 1, IMAGENET_GRAY_MEAN, IMAGENET_GRAY_STD)
        return cls(height, width, channels, IMAGENET_MEAN, IMAGENET_STD)

    @classmethod
    def for_dataset(cls, name, input_shape):
        """The preprocessing of a model with input ``(height, width, channels)``
        trained on the dataset kres names `name` (`DATASET_STATISTICS`), or
        ``None`` for a name kres does not know.

        Example:

        >>> from kres.preprocessing import Preprocessing
        >>> Preprocessing.for_dataset("fashion_mnist", (28, 28, 1)).mean
        (0.286,)
        """
        if name not in DATASET_STATISTICS:
            return None
        mean, std, resize = DATASET_STATISTICS[name]
        return cls(*input_shape, mean, std, resize)

    def to_json(self):
        """A JSON-ready dict (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, record):
        """The inverse of `to_json`."""
        return cls(**record)


def eval_resize(image, height, width, center_crop):
    """The evaluation resize of one float image, shared by the pipelines and the export.

    Plain: straight to ``height x width``. Center crop (the ImageNet
    evaluation): the shorter side to ``min(height, width) / 0.875`` (256 for
    224), then the central ``height x width``.
    """
    import tensorflow as tf

    if not center_crop:
        if image.shape[0] == height and image.shape[1] == width:
            return image
        return tf.image.resize(image, [height, width])
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = (min(height, width) / CROP_FRACTION) / tf.reduce_min(shape)
    new = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), [height, width])
    image = tf.image.resize(image, new)
    return tf.image.crop_to_bounding_box(image, (new[0] - height) // 2,
                                         (new[1] - width) // 2, height, width)
