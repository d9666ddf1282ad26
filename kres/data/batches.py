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

An image folder's split is `FolderImages`: its files, decoded when a batch
needs them (`kres.data.file_decoding`, to TensorFlow's pixels). Images of
any size are cropped and resized one by one in NumPy (the bilinear resize
of ``tf.image.resize``), with the crop boxes and flips drawn by the recipe's
layers: the same keys give the same boxes as on tf.data, and nothing is
compiled per image size.

Keras's `fit` takes the `PyDataset` as it is, and makes each batch when the
model asks for it (one worker; `workers` threads would make them ahead).
"""

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import keras
import numpy as np

from kres.data.batch_augment import pipeline_steps
from kres.data.keyed_draws import (
    batch_key,
    epoch_key,
    epoch_order,
    example_key,
    fold_in,
    keyed_generator,
)
from kres.preprocessing import CROP_FRACTION


@dataclass(frozen=True)
class Examples:
    """A split held in memory: ``images`` uint8 ``(n, height, width, channels)``, ``labels``.

    Labels are integers ``(n,)``, or multi-hot float32 ``(n, classes)``.
    (`FolderImages` gives ``images`` as a list of arrays of any size.)
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


@dataclass(frozen=True)
class FolderImages:
    """A split of an image folder, read without TensorFlow: its files, decoded on demand.

    Attributes:
        root: the folder the paths are relative to.
        paths: the files' relative paths.
        labels: int64 ``(n,)``, or multi-hot float32 ``(n, classes)``.
        channels: what the files are decoded to, 3 or 1
            (`kres.data.file_decoding.read`).
    """

    root: str
    paths: tuple
    labels: np.ndarray
    channels: int = 3

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        """The files at `index` (a slice or an index array) decoded, as `Examples` whose
        images are a list (the files' sizes vary)."""
        from kres.data.file_decoding import read

        # A slice without an array over the whole folder (this runs once a batch).
        chosen = np.asarray(range(len(self.paths))[index] if isinstance(index, slice)
                            else index)
        images = list(_decoders().map(
            lambda i: read(os.path.join(self.root, self.paths[i]), self.channels), chosen))
        return Examples(images, self.labels[chosen])


_POOL = []


def _decoders():
    """The threads that decode a batch's files (Pillow and libjpeg-turbo release the GIL)."""
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(min(8, os.cpu_count() or 1)))
    return _POOL[0]


def fits_in_memory(spec, examples, budget_bytes=4 << 30):
    """Whether `examples` decoded images of `spec` fit the cache budget (4 GiB).

    Datasets whose images vary in size (ImageNet, folders) are not cached.
    """
    if spec.image_size is None:
        return False
    return examples * spec.image_size ** 2 * spec.channels <= budget_bytes


def make_pipeline(split, spec, **settings):
    """A split's input pipeline: `batches` for `Examples` and `FolderImages`, else tf.data's.

    `settings` are `kres.data.pipeline.pipeline`'s, which makes the
    pipeline of a `tf.data.Dataset` (a split loaded with TensorFlow).
    """
    if isinstance(split, Examples | FolderImages):
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
    """`kres.data.pipeline.pipeline` for `Examples` or `FolderImages`, without
    TensorFlow: a `Batches`.

    The arguments are `kres.data.pipeline.pipeline`'s (its tf.data-only
    ones, ``cache``, ``shuffle_buffer`` and ``deterministic``, do not apply:
    the examples are in memory or read by index, shuffled whole, and the
    order is always deterministic). With ``workers=1`` (what kres trains
    with) Keras makes each batch when the model asks for it; more make
    batches ahead of the model in as many threads (Keras's ordered
    enqueuer, 4 batches ahead at most), the same batches.

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

    draws = _crop_draws(crop) if crop is not None else None

    def pixels(images, epoch_seed, first):
        if crop is not None:
            keys = np.stack([example_key(epoch_seed, first + j) for j in range(len(images))])
            boxes, flips = draws(np.array([image.shape[:2] for image in images]), keys)
            images = np.stack([_crop_flip(image, box, flipped, image_size)
                               for image, box, flipped in zip(images, boxes, flips)])
        elif isinstance(images, list):  # decoded files, of any size
            images = np.stack([_resized(image, image_size, center_crop and not training)
                               for image in images])
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
    orders, lock = {}, threading.Lock()

    def order_of(epoch):  # the workers' threads share it; a dropped one is made again
        with lock:
            if epoch not in orders:  # two kept: this epoch's and the last's
                orders[epoch] = epoch_order(base, epoch, count)
                orders.pop(epoch - 2, None)
            return orders[epoch]

    def make(i):
        epoch, b = first_epoch + i // steps, i % steps
        chosen = examples[order_of(epoch)[b * batch_size:(b + 1) * batch_size]]
        epoch_seed = epoch_key(base, epoch)
        images = pixels(chosen.images, epoch_seed, b * batch_size)
        labels = labelled(chosen.labels)
        if augmentation is not None:
            images, labels = augmentation(images, labels, batch_key(epoch_seed, b))
        return keras.ops.convert_to_numpy(images), keras.ops.convert_to_numpy(labels)

    return Batches(make, None, workers)


def _crop_draws(crop):
    """``draws(shapes, keys)``: the crop boxes ``(n, 4)`` and flips ``(n,)`` that
    `pipeline_steps`'s `crop` layers draw for images of `shapes` with `keys` (one
    per image), as `kres.data.keyed_draws.keyed` would have them draw. On JAX one
    compiled call for the batch (image by image, JAX dispatches dozens of small ops
    each: 9 ms an image on a 2-core CPU); elsewhere image by image."""
    resized_crop, flip = crop
    if keras.backend.backend() != "jax":
        def one_by_one(shapes, keys):
            out = []
            for shape, key in zip(shapes, keys):
                with keyed_generator(resized_crop, key):
                    box = resized_crop.get_random_transformation(
                        np.zeros((*shape, 1), np.uint8), training=True)["box"]
                with keyed_generator(flip, fold_in(key, 1)):
                    flips = flip.get_random_transformation(np.zeros((1, 1, 1)))["flips"]
                out.append((keras.ops.convert_to_numpy(box),
                            bool(np.reshape(keras.ops.convert_to_numpy(flips), ()))))
            return np.array([box for box, _ in out]), np.array([f for _, f in out])

        return one_by_one
    import jax
    import jax.numpy as jnp

    from kres.data.keyed_draws import ListedSeeds, seeds_of

    def one(shape, box_seeds, flip_seeds):
        box = resized_crop._box(shape, ListedSeeds(box_seeds))
        flips = flip.get_random_transformation(jnp.zeros((1, 1, 1)),
                                               seed=ListedSeeds(flip_seeds))["flips"]
        return box, jnp.reshape(flips, ())

    batched = jax.jit(jax.vmap(one))

    def draws(shapes, keys):
        boxes, flips = batched(shapes.astype(np.int32), seeds_of(keys, 3),
                               seeds_of(fold_in(keys, 1), 1))
        return np.asarray(boxes), np.asarray(flips)

    return draws


def _crop_flip(image, box, flipped, size):
    """One image cropped to `box` (top, left, height, width), resized and maybe flipped."""
    top, left, height, width = (int(v) for v in box)
    image = bilinear(image[top:top + height, left:left + width], size, size)
    return image[:, ::-1] if flipped else image


def _resized(images, size, center_crop):
    """`kres.preprocessing.eval_resize` in NumPy, on an image or a batch of one size."""
    height, width = images.shape[-3:-1]
    if not center_crop:
        return bilinear(images, size, size)
    # float32, as TensorFlow computes the size (and rounds half to even).
    scale = np.float32(size / CROP_FRACTION) / np.float32(min(height, width))
    new = [max(int(np.round(np.float32(n) * scale)), size) for n in (height, width)]
    images = bilinear(images, *new)
    top, left = (new[0] - size) // 2, (new[1] - size) // 2
    return images[..., top:top + size, left:left + size, :]


def bilinear(images, height, width):
    """``tf.image.resize(images, (height, width))`` (bilinear, half-pixel centres, no
    antialiasing) in NumPy: float32 ``[..., height, width, channels]``.

    Example:

    >>> import numpy as np
    >>> from kres.data.batches import bilinear
    >>> bilinear(np.array([[0.0, 4.0]]).reshape(1, 2, 1), 1, 4)[..., 0].tolist()
    [[0.0, 1.0, 3.0, 4.0]]
    """
    images = np.asarray(images, np.float32)
    if images.shape[-3:-1] == (height, width):
        return images

    def weights(size_in, size_out):
        # As TensorFlow's kernel: source position (i + 0.5) * scale - 0.5, its floor and
        # ceiling clamped into the image, and the fraction past the floor.
        position = ((np.arange(size_out, dtype=np.float32) + np.float32(0.5))
                    * np.float32(size_in / size_out) - np.float32(0.5))
        low = np.floor(position)
        lerp = (position - low).astype(np.float32)
        return (np.clip(low, 0, size_in - 1).astype(np.intp),
                np.minimum(np.ceil(position), size_in - 1).astype(np.intp), lerp)

    y0, y1, dy = weights(images.shape[-3], height)
    x0, x1, dx = weights(images.shape[-2], width)
    dx = dx[:, None]
    top, bottom = images[..., y0, :, :], images[..., y1, :, :]
    top = top[..., x0, :] + (top[..., x1, :] - top[..., x0, :]) * dx
    bottom = bottom[..., x0, :] + (bottom[..., x1, :] - bottom[..., x0, :]) * dx
    return top + (bottom - top) * dy[:, None, None]
