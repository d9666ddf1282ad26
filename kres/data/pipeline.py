"""The tf.data input pipelines and the recipes' augmentations.

`pipeline` turns raw ``(uint8 image, label)`` pairs into batches: decoding to
float, the training augmentation (the CIFAR pad-crop-flip, the ImageNet
random-resized crop with colour jitter, random erasing, mixup, CutMix), the
evaluation resize shared with the export (`kres.preprocessing.eval_resize`)
and one-hot labels. The batches hold pixels (0-255): the models kres trains
normalise them in their first layer (`kres.layers.InputPreprocessing`), so
the model that is trained is the model that is served. Every random op is
stateless and seeded per example, so a seeded pipeline gives the same
batches on every run.
"""

import random

import numpy as np
import tensorflow as tf

from kres import checks
from kres.preprocessing import AUGMENTATIONS, FLIPPING, eval_resize  # noqa: F401 (re-exported)


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
             deterministic=False, drop_remainder=None, preprocessing=None, first_epoch=0):
    """Turns raw ``(uint8 image, label)`` pairs into training or evaluation batches.

    Decodes to float, augments (training only), resizes to `image_size`,
    converts grayscale to `channels`, one-hot encodes the labels, batches
    and prefetches. The images stay pixels, 0-255 (the crop pads with black):
    the model normalises them (`kres.layers.InputPreprocessing`). Random
    erasing fills its box with noise that the model's normalisation turns
    into standard-normal values. Random ops are stateless and seeded per
    example, so with a `seed` the batches are the same on every run.

    A training pipeline never ends: it gives epoch after epoch, from
    `first_epoch`, each epoch's order and draws a function of the seed and
    the epoch's number alone (`epoch_key`), so a run resumed at epoch e sees
    what an uninterrupted run saw there. Fit it with ``steps_per_epoch``.

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
        preprocessing: the `kres.preprocessing.Preprocessing` of the model
            (pretrained weights' own), whose statistics random erasing uses;
            default: the dataset's mean and std (`spec.preprocessing`).
        first_epoch: the epoch a training pipeline starts at.

    Returns:
        A batched `tf.data.Dataset` of ``(float32 pixels, float32 one-hot)``;
        for training, of infinite cardinality (each epoch's last partial
        batch dropped unless `drop_remainder` is False).
    """
    augment = augment or spec.augment
    checks.choice("augment", augment, AUGMENTATIONS)
    if channels not in (1, 3) or (channels == 1 and spec.channels == 3):
        raise ValueError(
            f"channels must be 1 or 3, and 1 only for grayscale data ({spec.channels}-channel "
            f"here). Received: channels={channels!r}"
        )
    autotune = tf.data.AUTOTUNE
    prep = preprocessing or spec.preprocessing((image_size, image_size, channels))
    fill = prep.pixel_statistics()
    drop_remainder = training if drop_remainder is None else drop_remainder
    if cache:
        ds = ds.cache()
    options = tf.data.Options()
    options.deterministic = deterministic or seed is not None

    def prepare(example, rng):
        image, label = example
        image = tf.cast(image, tf.float32)
        if training:
            image = _augment(image, rng, augment, image_size, color_jitter)
        else:
            image = eval_resize(image, image_size, image_size, augment == "imagenet")
        if channels == 3 and spec.channels == 1:
            image = tf.repeat(image, 3, axis=-1)
        if training and random_erasing > 0:
            image = _random_erase(image, tf.random.experimental.stateless_fold_in(rng, 7),
                                  random_erasing, *fill, bgr=prep.channel_order == "bgr")
        return image, tf.one_hot(label, num_classes)

    def batches(examples, epoch_seed):
        # One seed pair per example (and per batch below) drives stateless
        # random ops: reproducible whatever the parallelism.
        examples = tf.data.Dataset.zip((examples, tf.data.Dataset.random(seed=epoch_seed).batch(2)))
        out = examples.map(prepare, num_parallel_calls=autotune).with_options(options)
        out = out.batch(batch_size, drop_remainder=drop_remainder)
        if training and (mixup_alpha > 0 or cutmix_alpha > 0):
            batch_rng = tf.data.Dataset.random(seed=epoch_seed + 1).batch(2)  # a tensor here
            out = tf.data.Dataset.zip((out, batch_rng)).map(
                lambda batch, rng: _mix(*batch, rng, mixup_alpha, cutmix_alpha),
                num_parallel_calls=autotune)
        return out

    if not training:
        return batches(ds, seed).prefetch(autotune)
    # Epoch e's order and random draws come from (seed, e) alone: a run
    # resumed at epoch e (a new process, a new iterator) sees the batches an
    # uninterrupted run sees there, whatever iterators were made before.
    base = random.SystemRandom().randrange(1 << 31) if seed is None else seed
    buffer = shuffle_buffer or 50_000

    def epoch(e):
        # The traced function's graph-level seed is dropped: tf.data's seed
        # helper compares a tensor seed with 0 in Python when the global seed
        # is 0 (an error), and the order then depends on `seed` alone.
        tf.compat.v1.get_default_graph().seed = None
        epoch_seed = epoch_key(base, e)
        return batches(ds.shuffle(buffer, seed=epoch_seed), epoch_seed)

    epochs = tf.data.Dataset.range(first_epoch, 1 << 62).flat_map(epoch).with_options(options)
    return epochs.apply(tf.data.experimental.assert_cardinality(
        tf.data.INFINITE_CARDINALITY)).prefetch(autotune)


def epoch_key(seed, epoch):
    """The seed of epoch `epoch` of a training pipeline seeded with `seed` (int64 tensors)."""
    return tf.cast(seed, tf.int64) * 1_000_003 + tf.cast(epoch, tf.int64)


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
        begin, crop = random_resized_crop_box(tf.shape(image), seeds[0])
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


# The ImageNet random-resized crop (Szegedy et al. 2015; torchvision's defaults).
CROP_AREA = (0.08, 1.0)
CROP_ASPECT = (3 / 4, 4 / 3)


def random_resized_crop_box(shape, seed):
    """``(begin, size)`` of the ImageNet random-resized crop of an image of `shape`.

    A box of 8% to 100% of the image's area with a width-to-height ratio
    between 3/4 and 4/3 (ten tries; the whole image when none fits), drawn
    with a stateless seed.
    """
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, tf.zeros([0, 0, 4]), seed=seed, min_object_covered=0.0,
        aspect_ratio_range=CROP_ASPECT, area_range=CROP_AREA, max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    return begin, size


def _resize(image, size):
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return tf.image.resize(image, [size, size])


def _random_erase(image, rng, probability, mean, std, bgr=False):
    """Random erasing (Zhong et al. 2017): a box of 2-40% of the area, filled with
    noise that the model's normalisation (`mean`, `std` in pixels; `bgr`: its
    channel order) turns into the standard-normal draws, channel for channel."""
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
    noise = mean + std * (noise[..., ::-1] if bgr else noise)
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
