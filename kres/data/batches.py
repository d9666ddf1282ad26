"""The input pipeline that needs no TensorFlow: in-memory examples batched by a Keras `PyDataset`.

Where TensorFlow is not installed (Keras on JAX), a split is `Examples`: uint8
images and their labels in NumPy arrays (Fashion-MNIST read from its IDX
files, `kres.data.sources.from_arrays`). `batches` makes of it what
`kres.data.pipeline.pipeline` makes of a tf.data split, with the same
arguments: pixels (0-255) as float32 and one-hot labels in batches, for
training endless, each epoch's order (`kres.data.keyed_draws.epoch_order`) and
its random draws a function of the seed and the epoch's number, augmented by
the same Keras preprocessing layers called with the same keys
(`kres.data.batch_augment`). The layers run on Keras's backend (JAX's
random numbers, not TensorFlow's): the same seed gives the same order and
keys as the tf.data pipeline, and the same images where nothing is drawn.

Keras's `fit` takes the `PyDataset` as it is; its `workers` threads make
the next batches while the model trains.
"""

import math
from dataclasses import dataclass

import keras
import numpy as np

from kres.data.batch_augment import pipeline_steps
from kres.data.keyed_draws import batch_key, epoch_key, epoch_order, example_key, fold_in, keyed


@dataclass(frozen=True)
class Examples:
    """A split held in memory: ``images`` uint8 ``(n, height, width, channels)``, ``labels``.

    Labels are integers ``(n,)``, or multi-hot float32 ``(n, classes)``.
    """

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        if len(self.images) != len(self.labels):
            raise ValueError(f"Images and labels differ in number: {len(self.images)} vs "
                             f"{len(self.labels)}.")

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        """The examples at `index` (a slice or an index array), as `Examples`."""
        return Examples(self.images[index], self.labels[index])


def fits_in_memory(spec, examples, budget_bytes=4 << 30):
    """Whether `examples` decoded images of `spec` fit the cache budget (4 GiB).

    Datasets whose images vary in size (ImageNet, folders) are not cached.
    """
    if spec.image_size is None:
        return False
    return examples * spec.image_size ** 2 * spec.channels <= budget_bytes


def make_pipeline(split, spec, **settings):
    """A split's input pipeline: `batches` for `Examples`, else tf.data's.

    `settings` are `kres.data.pipeline.pipeline`'s, which makes the
    pipeline of a `tf.data.Dataset` (a split loaded with TensorFlow).
    """
    if isinstance(split, Examples):
        return batches(split, spec, **settings)
    from kres.data.pipeline import pipeline

    return pipeline(split, spec, **settings)


class Batches(keras.utils.PyDataset):
    """Batch `i` is ``make(i)``; `count` batches, or endless with None.

    Iterating gives the batches in order (finite ones only).
    """

    def __init__(self, make, count, workers=1):
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=4)
        self._make, self._count = make, count

    @property
    def num_batches(self):
        return self._count

    def __len__(self):
        if self._count is None:
            raise TypeError("an endless training pipeline has no length")
        return self._count

    def __getitem__(self, index):
        if self._count is not None and not 0 <= index < self._count:
            raise IndexError(index)
        return self._make(index)

    def map(self, function):
        """These batches with ``function(images, labels)`` applied to each."""
        return Batches(lambda i: function(*self._make(i)), self._count, self.workers)

    def __iter__(self):
        if self._count is None:
            raise TypeError("an endless training pipeline: fit it with steps_per_epoch")
        for i in range(self._count):
            yield self._make(i)


def batches(examples, spec, *, training, batch_size, image_size, channels, num_classes,
            augment=None, mixup_alpha=0.0, cutmix_alpha=0.0, random_erasing=0.0,
            color_jitter=0.0, auto_augment=None, randaugment_ops=2, randaugment_magnitude=9,
            seed=None, drop_remainder=None, preprocessing=None, first_epoch=0, workers=1,
            **unused):
    """`kres.data.pipeline.pipeline` for `Examples`, without TensorFlow: a `Batches`.

    The arguments are `kres.data.pipeline.pipeline`'s (its tf.data-only
    ones, ``cache``, ``shuffle_buffer`` and ``deterministic``, do not apply:
    the examples are in memory, shuffled whole, and the order is always
    deterministic). `workers` threads make batches ahead of the model.

    Example:

    >>> import numpy as np
    >>> from kres.data.batches import Examples, batches
    >>> from kres.data.catalog import DatasetSpec
    >>> spec = DatasetSpec(None, 8, 1, 2, (0.5,), (0.25,), augment="crop_flip")
    >>> data = Examples(np.zeros((10, 8, 8, 1), np.uint8), np.arange(10) % 2)
    >>> train = batches(data, spec, training=True, batch_size=4, image_size=8,
    ...                 channels=1, num_classes=2, seed=0)
    >>> x, y = train[0]
    >>> x.shape, y.shape
    ((4, 8, 8, 1), (4, 2))
    """
    prep, crop, augmentation = pipeline_steps(
        spec, training=training, image_size=image_size, channels=channels, augment=augment,
        preprocessing=preprocessing, color_jitter=color_jitter, auto_augment=auto_augment,
        randaugment_ops=randaugment_ops, randaugment_magnitude=randaugment_magnitude,
        random_erasing=random_erasing, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha)
    drop_remainder = training if drop_remainder is None else drop_remainder
    count = len(examples)
    steps = count // batch_size if drop_remainder else math.ceil(count / batch_size)
    if steps == 0:
        raise ValueError(f"batch_size {batch_size} is more than the {count} examples: no "
                         f"batch to train on. Received: batch_size={batch_size}")
    center_crop = prep.resize == "center_crop"

    def labelled(labels):
        if labels.ndim == 2:  # multi-label: multi-hot already
            return labels.astype(np.float32)
        return np.eye(num_classes, dtype=np.float32)[labels]

    def pixels(images, epoch_seed, first):
        images = images.astype(np.float32)
        if crop is not None:
            out = []
            for j, image in enumerate(images):
                key = example_key(epoch_seed, first + j)
                image = keyed(crop[0], image, key)
                out.append(keras.ops.convert_to_numpy(keyed(crop[1], image, fold_in(key, 1))))
            images = np.stack(out)
        else:
            images = _resized(images, image_size, center_crop and not training)
        if channels == 3 and spec.channels == 1:
            images = np.repeat(images, 3, axis=-1)
        return images

    if not training:
        def make(i):
            chosen = examples[i * batch_size:(i + 1) * batch_size]
            return pixels(chosen.images, 0, i * batch_size), labelled(chosen.labels)

        return Batches(make, steps, workers)

    base = int(np.random.SeedSequence().generate_state(1)[0] >> 1) if seed is None else seed
    orders = {}

    def make(i):
        epoch, b = first_epoch + i // steps, i % steps
        if epoch not in orders:  # two at most: this epoch's and the last's
            orders[epoch] = epoch_order(base, epoch, count)
            orders.pop(epoch - 2, None)
        chosen = examples[orders[epoch][b * batch_size:(b + 1) * batch_size]]
        epoch_seed = epoch_key(base, epoch)
        images = pixels(chosen.images, epoch_seed, b * batch_size)
        labels = labelled(chosen.labels)
        if augmentation is not None:
            images, labels = augmentation(images, labels, batch_key(epoch_seed, b))
        return keras.ops.convert_to_numpy(images), keras.ops.convert_to_numpy(labels)

    return Batches(make, None, workers)


def _resized(images, size, center_crop):
    """The evaluation resize of `kres.preprocessing.eval_resize`, on a batch of one size."""
    height, width = images.shape[1:3]
    if height == size and width == size:
        return images
    if center_crop:
        from kres.preprocessing import CROP_FRACTION

        scale = (size / CROP_FRACTION) / min(height, width)
        new = (max(round(height * scale), size), max(round(width * scale), size))
        images = keras.ops.image.resize(images, new)
        top, left = (new[0] - size) // 2, (new[1] - size) // 2
        return keras.ops.convert_to_numpy(images)[:, top:top + size, left:left + size]
    return keras.ops.convert_to_numpy(keras.ops.image.resize(images, (size, size)))
