"""Helpers for comparing kres models with reference models layer by layer."""

import keras
import numpy as np


def randomize_weights(model, seed=0):
    """Gives every weighted layer random weights, batch-norm statistics included,
    so that agreement between two models is not an accident of the initialisation."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, var.shape)])
        elif layer.weights:
            layer.set_weights([w + rng.normal(0, 0.01, w.shape) for w in layer.get_weights()])


def copy_weights_by_name(src, dst):
    """Copies each weighted layer of `src` into the layer of `dst` with its name.

    Returns:
        The names of the copied layers.
    """
    names = []
    for layer in src.layers:
        if layer.weights:
            dst.get_layer(layer.name).set_weights(layer.get_weights())
            names.append(layer.name)
    return names
