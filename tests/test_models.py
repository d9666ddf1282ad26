"""Every registered model: exact size, a working forward and backward pass, and
a config that rebuilds the same network."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kres
from kres import catalog
from kres.models.base import deep_graphs
from tests.golden import PUBLISHED


@pytest.mark.parametrize("name", kres.list_models())
def test_model(name):
    model = kres.build_model(name)
    spec = kres.get_spec(name)
    assert model.name == name
    size = spec.default_size
    assert model.input_shape == (None, size, size, 3)
    assert model.output_shape == (None, spec.default_classes)

    # The catalog that `kres models` prints without building anything.
    entry = catalog.MODELS[name]
    assert (entry.params, entry.macs) == (kres.count_params(model), kres.count_macs(model))

    if name in PUBLISHED:
        params, gmacs = PUBLISHED[name]
        assert kres.count_params(model) == params
        assert kres.count_macs(model) / 1e9 == pytest.approx(gmacs, rel=2e-3)

    x = tf.random.uniform((2, size, size, 3))
    with tf.GradientTape() as tape:
        probs = model(x, training=True)
        labels = tf.constant([1, 2])
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, probs))
    grads = tape.gradient(loss, model.trainable_weights)
    assert probs.shape == (2, spec.default_classes)
    np.testing.assert_allclose(tf.reduce_sum(probs, axis=1), 1.0, rtol=1e-5)
    missing = [w.path for w, g in zip(model.trainable_weights, grads) if g is None]
    assert not missing, f"no gradient for {missing[:5]}"
    bad = [w.path for w, g in zip(model.trainable_weights, grads)
           if not np.all(np.isfinite(g)) or not np.any(g)]
    assert not bad, f"non-finite or all-zero gradient for {bad[:5]}"

    # The config alone rebuilds the same network: same weights, same outputs.
    with deep_graphs():
        clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(x), model(x), rtol=1e-5, atol=1e-6)
