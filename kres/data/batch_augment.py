"""The recipes' augmentation of whole training batches, for either input pipeline.

`batch_augmentation` composes the Keras preprocessing layers of
`kres.data.augment` in the recipes' order and calls each with draws keyed to
the batch (`kres.data.keyed_draws`). The tf.data pipeline
(`kres.data.pipeline`) calls it with a tf key inside its graph, the pipeline
without TensorFlow (`kres.data.batches`) with a NumPy key: the keys below
the batch's are the same integers in both.
"""

import keras
import numpy as np

from kres import checks
from kres.data import augment as layers
from kres.data.keyed_draws import fold_in, keyed, mix32
from kres.preprocessing import AUGMENTATIONS


def pipeline_steps(spec, *, training, image_size, channels, augment=None, preprocessing=None,
                   color_jitter=0.0, auto_augment=None, randaugment_ops=2,
                   randaugment_magnitude=9, random_erasing=0.0, mixup_alpha=0.0,
                   cutmix_alpha=0.0):
    """What both pipelines do to a split's images, its settings checked first.

    The arguments are `kres.data.pipeline.pipeline`'s. Returns ``(prep,
    crop, augmentation)``: the model's `kres.preprocessing.Preprocessing`
    (`preprocessing`, else the dataset's), the ImageNet crop and flip applied
    to each image (training with ``"imagenet"``; else None), and
    `batch_augmentation`'s function (training; else None).

    Raises:
        ValueError: for an unknown `augment`, or `channels` other than 1 or
            3 (1 only for grayscale data).
    """
    augment = augment or spec.augment
    checks.choice("augment", augment, AUGMENTATIONS)
    if channels not in (1, 3) or (channels == 1 and spec.channels == 3):
        raise ValueError(
            f"channels must be 1 or 3, and 1 only for grayscale data ({spec.channels}-channel "
            f"here). Received: channels={channels!r}")
    prep = preprocessing or spec.preprocessing((image_size, image_size, channels))
    # The ImageNet crop and flip, per image (images come in any size; the flip
    # mirrors only the images it draws).
    crop = (layers.RandomResizedCrop(image_size, image_size), layers.RandomFlip()) \
        if training and augment == "imagenet" else None
    augmentation = batch_augmentation(
        augment, channels, color_jitter=color_jitter, auto_augment=auto_augment,
        randaugment_ops=randaugment_ops, randaugment_magnitude=randaugment_magnitude,
        random_erasing=random_erasing, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha,
        erase_fill=prep.pixel_statistics()) if training else None
    return prep, crop, augmentation


def batch_augmentation(augment, channels, *, color_jitter=0.0, auto_augment=None, randaugment_ops=2,
                       randaugment_magnitude=9, random_erasing=0.0, mixup_alpha=0.0,
                       cutmix_alpha=0.0, erase_fill=None):
    """The training augmentation of whole batches: ``fn(images, labels, key)``.

    In order, each a Keras preprocessing layer called with draws keyed to
    the batch (`kres.data.keyed_draws.keyed`): pad-and-crop (``"crop_flip"``,
    ``"crop"``), the horizontal flip (``"crop_flip"``; ``"imagenet"``'s is
    applied to each image with its crop, in the pipelines),
    brightness, contrast and (with 3 `channels`) saturation jitter
    (``"imagenet"`` with `color_jitter`), RandAugment or AugMix (`auto_augment`), random erasing,
    then MixUp or CutMix (both on: each batch one of them, evenly).
    `erase_fill` is the ``(mean, std)`` of the model's normalisation in
    pixels (`kres.preprocessing.Preprocessing.pixel_statistics`). Returns
    None where there is nothing to do.

    Example:

    >>> import numpy as np
    >>> from kres.data.batch_augment import batch_augmentation
    >>> augment = batch_augmentation("crop_flip", 1)
    >>> images = np.zeros((2, 8, 8, 1), "float32")
    >>> labels = np.eye(2, dtype="float32")
    >>> key = np.array([0, 1], np.int64)
    >>> out, _ = augment(images, labels, key)
    >>> tuple(out.shape)
    (2, 8, 8, 1)
    """
    steps = []
    if augment in ("crop_flip", "crop"):
        steps.append(layers.PadCrop(4))
    if augment == "crop_flip":  # the ImageNet flip is per image
        steps.append(layers.RandomFlip())
    if augment == "imagenet" and color_jitter > 0:
        steps += [keras.layers.RandomBrightness(color_jitter, value_range=(0, 255)),
                  keras.layers.RandomContrast(color_jitter, value_range=(0, 255)),
                  *([layers.saturation_jitter(color_jitter)] if channels == 3 else [])]
    if auto_augment == "randaugment":
        steps.append(layers.rand_augment(randaugment_ops, randaugment_magnitude))
    elif auto_augment == "augmix":
        steps.append(layers.AugMix(value_range=(0, 255)))
    if random_erasing > 0:
        steps.append(layers.RandomErasing(random_erasing, *erase_fill))
    mixers = ([keras.layers.MixUp(alpha=mixup_alpha)] if mixup_alpha > 0 else []) + (
        [keras.layers.CutMix(factor=(cutmix_alpha, cutmix_alpha))] if cutmix_alpha > 0 else [])
    if not steps and not mixers:
        return None

    def mix(mixer, images, labels, key, j):
        out = keyed(mixer, {"images": images, "labels": labels}, fold_in(key, 100 + j))
        return out["images"], out["labels"]

    def apply(images, labels, key):
        for i, layer in enumerate(steps):
            images = keyed(layer, images, fold_in(key, i))
        if not mixers:
            return images, labels
        if len(mixers) == 1:
            return mix(mixers[0], images, labels, key, 0)
        second = mix32(fold_in(key, 200)[0]) >= 1 << 31  # a fair coin
        if isinstance(key, np.ndarray):  # eager: only the chosen one
            j = int(second)
            return mix(mixers[j], images, labels, key, j)
        import tensorflow as tf

        (x0, y0), (x1, y1) = (mix(m, images, labels, key, j) for j, m in enumerate(mixers))
        return tf.where(second, x1, x0), tf.where(second, y1, y0)

    return apply
