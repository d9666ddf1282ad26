"""Keras random layers called with draws that are functions of a key.

Keras's random layers draw from a `keras.random.SeedGenerator`,
a variable that each call advances: in a `tf.data` pipeline that runs batches
in parallel, which batch gets which draw depends on thread timing, and a
resumed run (a new process) starts the generator again. `keyed` calls a layer
with every draw a function of a key (a batch's or an image's seed pair), so
the same seed gives the same images whatever the parallelism, and epoch `e`
of a resumed run sees what an uninterrupted run saw (`kres.data.pipeline`).
"""

import contextlib
import threading

import keras
import numpy as np


class KeyedSeeds(keras.random.SeedGenerator):
    """A seed generator whose n-th draw is the key folded with n: stateless.

    Made for one call of a layer (`keyed`); it holds no variable.
    """

    def __init__(self, key):  # no state variable: Keras's __init__ is not called
        self.key, self.count = key, 0

    def next(self, ordered=True):
        self.count += 1
        return _backend_seed(fold_in(self.key, self.count))


class ListedSeeds(keras.random.SeedGenerator):
    """A seed generator whose n-th draw is ``seeds[n]``: `KeyedSeeds`'s seeds made
    beforehand (`seeds_of`), for a function traced by JAX."""

    def __init__(self, seeds):  # no state variable: Keras's __init__ is not called
        self.seeds, self.count = seeds, 0

    def next(self, ordered=True):
        self.count += 1
        return self.seeds[self.count - 1]


def seeds_of(keys, draws):
    """The JAX seeds of the first `draws` draws of ``KeyedSeeds(key)`` for each of
    `keys` (NumPy ``(n, 2)``): uint32 ``(n, draws, 2)``."""
    return np.stack([np.bitwise_and(fold_in(keys, d), _MASK).astype(np.uint32)
                     for d in range(1, draws + 1)], axis=1)


def _backend_seed(key):
    """A key as the seed of the backend that draws with it.

    A tf tensor (a tf.data pipeline) stays as it is; a NumPy key (the
    pipeline without TensorFlow) becomes JAX's uint32 pair, or a tf tensor.
    """
    if not isinstance(key, np.ndarray):
        return key
    if keras.backend.backend() == "jax":
        return keras.ops.convert_to_tensor(np.bitwise_and(key, _MASK).astype(np.uint32))
    return keras.ops.convert_to_tensor(key)


def keyed(layer, data, key):
    """``layer(data, training=True)`` with every random draw a function of `key`.

    `key` is a pair of int64 seeds (a tensor of shape ``(2,)``, as
    `tf.data.Dataset.random(...).batch(2)` gives); `data` is what the layer
    takes (images, or ``{"images": ..., "labels": ...}``). The layer's own
    generator is set aside for the call and put back after it.

    Example:

    >>> import numpy as np, tensorflow as tf, keras
    >>> from kres.data.keyed_draws import keyed
    >>> flip = keras.layers.RandomFlip("horizontal")
    >>> images = tf.constant(np.arange(16.0).reshape(4, 2, 2, 1))
    >>> key = tf.constant([1, 2], tf.int64)
    >>> a = tf.function(lambda: keyed(flip, images, key))()
    >>> b = tf.function(lambda: keyed(flip, images, key))()
    >>> bool(tf.reduce_all(a == b))
    True
    """
    with keyed_generator(layer, key):
        return layer(data, training=True)


# keyed_generator swaps a layer's generator for the time of a call: threads that
# make batches at once (a PyDataset's workers) take turns.
_SWAP = threading.RLock()


@contextlib.contextmanager
def keyed_generator(layer, key):
    """Within it, every random draw of `layer` is a function of `key` (see `keyed`):
    for calling a layer's own methods, as `get_random_transformation`. One
    thread at a time is within it (the layer's generator is swapped)."""
    seeds = KeyedSeeds(key)
    with _SWAP:
        saved = (layer.__dict__.get("generator"), layer.__dict__.get("_backend_generators"))
        # Past Layer.__setattr__, which would track the generator as a layer variable.
        object.__setattr__(layer, "generator", seeds)
        object.__setattr__(layer, "_backend_generators", {"tensorflow": seeds})
        try:
            yield layer
        finally:
            object.__setattr__(layer, "generator", saved[0])
            if saved[1] is None:
                del layer.__dict__["_backend_generators"]
            else:
                object.__setattr__(layer, "_backend_generators", saved[1])


# Keys are pairs of int64 and every key below a key is made from it by integer
# arithmetic that NumPy and TensorFlow compute alike (`fold_in`), so that the
# tf.data pipeline and the one without TensorFlow (`kres.data.batches`) derive
# the same keys, and the same epoch order (`epoch_order`), from a seed.
_MASK = 0xFFFFFFFF
_MULTIPLIER = 0x45D9F3B  # odd and below 2**31: products stay inside int64


def _bit_ops(x):
    if isinstance(x, np.ndarray | np.integer | int):
        return np.bitwise_and, np.bitwise_xor, np.right_shift
    import tensorflow as tf

    return tf.bitwise.bitwise_and, tf.bitwise.bitwise_xor, tf.bitwise.right_shift


def mix32(x):
    """A 32-bit integer hash of int64 values (each in ``[0, 2**32)`` out), NumPy or TensorFlow."""
    and_, xor, shr = _bit_ops(x)
    x = and_(x, _MASK)
    for _ in range(2):
        x = xor(x, shr(x, 16))
        x = and_(x * _MULTIPLIER, _MASK)
    return xor(x, shr(x, 16))


def hash_pair(a, b):
    """A 32-bit hash of int64 `a` and `b` (arrays or tensors broadcast), NumPy or TensorFlow."""
    and_, xor, shr = _bit_ops(a)
    a = mix32(xor(mix32(and_(a, _MASK)), shr(a, 32)))  # all 64 bits of `a` count
    return mix32(xor(a, b))


def fold_in(key, data):
    """The key that `data` (an int) makes of `key` (an int64 pair; NumPy array or tf tensor;
    or NumPy ``(n, 2)``: n keys)."""
    first, second = key[..., 0], key[..., 1]
    return _stack([hash_pair(hash_pair(first, second), data),
                   hash_pair(hash_pair(second, first), data + 0x9E3779B9)], key)


def _stack(parts, like):
    if isinstance(like, np.ndarray):
        return np.stack(parts, axis=-1).astype(np.int64)
    import tensorflow as tf

    return tf.stack(parts)


def epoch_key(seed, epoch):
    """The seed of epoch `epoch` of a training pipeline seeded with `seed` (int64, either kind)."""
    return seed * 1_000_003 + epoch


def epoch_order(seed, epoch, count):
    """The order of `count` examples in epoch `epoch` of a pipeline seeded with `seed`.

    A permutation (NumPy int64) that is a function of the three numbers alone:
    both pipelines use it, and a resumed run sees an uninterrupted run's order.
    """
    hashed = hash_pair(np.int64(epoch_key(seed, epoch)), np.arange(count, dtype=np.int64))
    return np.argsort(hashed, kind="stable")


def example_key(epoch_seed, position):
    """The key of the example at `position` of an epoch (an int64 pair)."""
    return np.array([epoch_seed, position], np.int64)


def batch_key(epoch_seed, batch):
    """The key of batch `batch` of an epoch (an int64 pair)."""
    return np.array([epoch_seed + 1, batch], np.int64)
