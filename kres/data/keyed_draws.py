"""Keras random layers called with draws that are functions of a key.

Keras's random layers draw from a `keras.random.SeedGenerator`,
a variable that each call advances: in a `tf.data` pipeline that runs batches
in parallel, which batch gets which draw depends on thread timing, and a
resumed run (a new process) starts the generator again. `keyed` calls a layer
with every draw a function of a key (a batch's or an image's seed pair), so
the same seed gives the same images whatever the parallelism, and epoch `e`
of a resumed run sees what an uninterrupted run saw (`kres.data.pipeline`).
"""

import keras


class KeyedSeeds(keras.random.SeedGenerator):
    """A seed generator whose n-th draw is the key folded with n: stateless.

    Made for one call of a layer (`keyed`); it holds no variable.
    """

    def __init__(self, key):  # no state variable: Keras's __init__ is not called
        self.key, self.count = key, 0

    def next(self, ordered=True):
        import tensorflow as tf

        self.count += 1
        return tf.random.experimental.stateless_fold_in(self.key, self.count)


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
    seeds = KeyedSeeds(key)
    saved = (layer.__dict__.get("generator"), layer.__dict__.get("_backend_generators"))
    # Past Layer.__setattr__, which would track the generator as a layer variable.
    object.__setattr__(layer, "generator", seeds)
    object.__setattr__(layer, "_backend_generators", {"tensorflow": seeds})
    try:
        return layer(data, training=True)
    finally:
        object.__setattr__(layer, "generator", saved[0])
        if saved[1] is None:
            del layer.__dict__["_backend_generators"]
        else:
            object.__setattr__(layer, "_backend_generators", saved[1])
