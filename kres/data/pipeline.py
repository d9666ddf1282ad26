"""The tf.data input pipelines of training and evaluation.

`pipeline` turns raw ``(uint8 image, label)`` pairs into batches: decoding to
float, the evaluation resize shared with the export
(`kres.preprocessing.eval_resize`), one-hot labels and, for training, the
recipe's augmentation as Keras preprocessing layers (`kres.data.augment`:
the CIFAR pad-crop-flip, the ImageNet random-resized crop with colour
jitter, RandAugment, AugMix, random erasing, MixUp, CutMix). The batches hold
pixels (0-255): the models kres trains normalise them in their first layer
(`kres.layers.InputPreprocessing`), so the model that is trained is the
model that is served. Every random draw is a function of a key, one per
image or batch (`kres.data.keyed_draws.keyed`), so a seeded pipeline gives the
same batches on every run.
"""

import random

import tensorflow as tf

from kres.data.batch_augment import pipeline_steps
from kres.data.keyed_draws import epoch_key, fold_in, hash_pair, keyed
from kres.preprocessing import (  # noqa: F401 (re-exported)
    AUGMENTATIONS,
    AUTO_AUGMENTATIONS,
    FLIPPING,
    eval_resize,
)

# tf.data runs the functions it is given through AutoGraph, which rewrites their
# Python source before tracing (about 0.7 s per pipeline on a busy 2-core CPU, at
# the start of every run, evaluation and export). The pipeline's functions branch
# on Python values and static shapes only, so they are traced as written (and
# what they call is not converted either).
_plain = tf.autograph.experimental.do_not_convert


def pipeline(ds, spec, *, training, batch_size, image_size, channels, num_classes,
             augment=None, mixup_alpha=0.0, cutmix_alpha=0.0, random_erasing=0.0,
             color_jitter=0.0, auto_augment=None, randaugment_ops=2, randaugment_magnitude=9,
             cache=True, shuffle_buffer=None, seed=None, deterministic=False,
             drop_remainder=None, preprocessing=None, first_epoch=0):
    """Turns raw ``(uint8 image, label)`` pairs into training or evaluation batches.

    Decodes to float, resizes to `image_size` (training with the
    ``"imagenet"`` augmentation: the random-resized crop and the flip), converts
    grayscale to `channels`, one-hot encodes the labels, batches, augments
    the batches (training only; `kres.data.batch_augment.batch_augmentation`) and prefetches. The
    images stay pixels, 0-255 (the crop pads with black): the model
    normalises them (`kres.layers.InputPreprocessing`). Every random draw is
    keyed (one key per image for the crop, one per batch for the rest), so
    with a `seed` the batches are the same on every run.

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
        mixup_alpha: MixUp's Beta parameter; 0 disables it.
        cutmix_alpha: CutMix's Beta parameter; 0 disables it.
        random_erasing: probability of random erasing per image.
        color_jitter: strength of brightness/contrast/saturation jitter
            (``"imagenet"`` augmentation only).
        auto_augment: ``"randaugment"`` or ``"augmix"`` after the geometric
            augmentation (``None``: neither).
        randaugment_ops: RandAugment's number of operations (N).
        randaugment_magnitude: RandAugment's magnitude (M, 0 to 10).
        cache: keep the decoded images in memory (see `kres.data.batches.fits_in_memory`).
            A training split so held is shuffled whole each epoch, in
            `kres.data.keyed_draws.epoch_order`'s order (the pipeline without
            TensorFlow's, `kres.data.batches`); so is a split that gives its
            elements by index (an image folder's files).
        shuffle_buffer: the shuffle buffer of a split streamed (a tfds
            dataset not held in memory; default: the whole split, up to 50,000).
        seed: seed for shuffling and augmentation; ``None`` for fresh
            randomness.
        deterministic: keep the element order independent of thread timing.
        drop_remainder: drop a last partial batch (default: when training).
        preprocessing: the `kres.preprocessing.Preprocessing` of the model
            (pretrained weights' own), whose statistics random erasing uses
            and whose `resize` an evaluation pipeline brings images to the
            input size with (the center crop, or a plain resize), as the
            model's server does; default: the dataset's (`spec.preprocessing`).
        first_epoch: the epoch a training pipeline starts at.

    Returns:
        A batched `tf.data.Dataset` of ``(float32 pixels, float32 one-hot)``;
        for training, of infinite cardinality (each epoch's last partial
        batch dropped unless `drop_remainder` is False).
    """
    prep, crop, augmentation = pipeline_steps(
        spec, training=training, image_size=image_size, channels=channels, augment=augment,
        preprocessing=preprocessing, color_jitter=color_jitter, auto_augment=auto_augment,
        randaugment_ops=randaugment_ops, randaugment_magnitude=randaugment_magnitude,
        random_erasing=random_erasing, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha)
    autotune = tf.data.AUTOTUNE
    drop_remainder = training if drop_remainder is None else drop_remainder
    count = int(ds.cardinality())
    # A training split held in memory is shuffled whole, in
    # `kres.data.keyed_draws.epoch_order`'s order, as the pipeline without
    # TensorFlow shuffles it; a stream (images of many sizes, or more than
    # memory holds) through a shuffle buffer.
    held = _held(ds, count) if (training and cache and count > 0 and
                                ds.element_spec[0].shape.is_fully_defined()) else None
    # A training split that gives its elements by index (an image folder's
    # files) is read in that order too, uncached; a stream (tfds's files)
    # through a shuffle buffer.
    indexed = training and held is None and count > 0 and _by_index(ds)
    if cache and held is None and not indexed:
        ds = ds.cache()
    options = tf.data.Options()
    # Evaluation keeps the split's order: a report names each image by its position.
    options.deterministic = deterministic or seed is not None or not training

    @_plain
    def prepare(example, rng):
        image, label = example
        image = tf.cast(image, tf.float32)
        if crop is not None:
            image = keyed(crop[0], image, rng)
            image = keyed(crop[1], image, fold_in(rng, 1))
        elif training:
            image = _resize(image, image_size)
        else:
            image = eval_resize(image, image_size, image_size, prep.resize == "center_crop")
        return finish(image, label, 0)

    def finish(images, labels, batch_axes):
        # Grayscale to RGB if asked, and one-hot labels (a multi-label
        # split's are multi-hot already), of one example or a batch.
        if channels == 3 and spec.channels == 1:
            images = tf.repeat(images, 3, axis=-1)
        if labels.shape.rank == 1 + batch_axes:
            return images, tf.cast(labels, tf.float32)
        return images, tf.one_hot(labels, num_classes)

    def keys(epoch_seed, first):
        # Key i of an epoch is (epoch_seed + first, i), as `kres.data.keyed_draws`
        # gives them (example_key, batch_key) to the pipeline without TensorFlow.
        return tf.data.Dataset.range(1 << 62).map(
            lambda i: tf.stack([tf.cast(epoch_seed, tf.int64) + first, i]))

    def batches(examples, epoch_seed):
        # One key per example (and per batch below) drives the random draws:
        # reproducible whatever the parallelism.
        examples = tf.data.Dataset.zip((examples, keys(epoch_seed, 0)))
        out = examples.map(prepare, num_parallel_calls=autotune).with_options(options)
        return augmented(out.batch(batch_size, drop_remainder=drop_remainder), epoch_seed)

    def whole_batches(order, images, labels, epoch_seed):
        # `batches` of a split held in memory, without a per-image crop: each
        # batch gathered and prepared in one step, as `prepare` does one image
        # at a time (the same batches, at a sixth of the CPU time: on 28x28
        # images tf.data's per-element work costs more than the work itself).
        @_plain
        def gathered(index):
            chosen = _resize(tf.cast(tf.gather(images, index), tf.float32), image_size)
            return finish(chosen, tf.gather(labels, index), 1)

        out = order.batch(batch_size, drop_remainder=drop_remainder)
        return augmented(out.map(gathered, num_parallel_calls=autotune).with_options(options),
                         epoch_seed)

    def augmented(out, epoch_seed):
        # The batch augmentation, its draws keyed to each batch.
        if augmentation is None:
            return out
        return tf.data.Dataset.zip((out, keys(epoch_seed, 1))).map(
            _plain(lambda batch, key: augmentation(*batch, key)), num_parallel_calls=autotune)

    if not training:
        return batches(ds, 0).prefetch(autotune)
    # Epoch e's order and random draws come from (seed, e) alone: a run
    # resumed at epoch e (a new process, a new iterator) sees the batches an
    # uninterrupted run sees there, whatever iterators were made before.
    base = random.SystemRandom().randrange(1 << 31) if seed is None else seed
    buffer = shuffle_buffer or 50_000

    @_plain
    def epoch(e):
        epoch_seed = epoch_key(base, e)
        if held is not None or indexed:
            order = tf.data.Dataset.from_tensor_slices(tf.argsort(
                hash_pair(tf.cast(epoch_seed, tf.int64), tf.range(count, dtype=tf.int64)),
                stable=True))
            if indexed:
                return batches(order.map(lambda i: tf.data.experimental.at(
                    ds, tf.cast(i, tf.int64)), num_parallel_calls=autotune), epoch_seed)
            images, labels = held
            if crop is None:
                return whole_batches(order, images, labels, epoch_seed)
            return batches(order.map(lambda i: (tf.gather(images, i), tf.gather(labels, i))),
                           epoch_seed)
        # The traced function's graph-level seed is dropped: tf.data's seed
        # helper compares a tensor seed with 0 in Python when the global seed
        # is 0 (an error), and the order then depends on `seed` alone.
        tf.compat.v1.get_default_graph().seed = None
        return batches(ds.shuffle(buffer, seed=epoch_seed), epoch_seed)

    epochs = tf.data.Dataset.range(first_epoch, 1 << 62).flat_map(epoch).with_options(options)
    return epochs.apply(tf.data.experimental.assert_cardinality(
        tf.data.INFINITE_CARDINALITY)).prefetch(autotune)


def _by_index(ds):
    """Whether `ds` gives its elements by index (`tf.data.experimental.at`): datasets
    of tensors mapped, as an image folder's files are; not tfds's files."""
    try:
        tf.data.experimental.at(ds, 0)
    except (tf.errors.UnimplementedError, tf.errors.FailedPreconditionError,
            tf.errors.InvalidArgumentError, NotImplementedError, TypeError):
        return False
    return True


def _held(ds, count):
    """The `count` examples of `ds` as two tensors (images, labels) in memory."""
    images, labels = ds.batch(count).get_single_element()
    return images, labels


def _resize(image, size):
    """An image, or a batch of them, at `size` x `size` (as it is if it already is)."""
    if image.shape[-3] == size and image.shape[-2] == size:
        return image
    return tf.image.resize(image, [size, size])
