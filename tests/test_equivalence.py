"""kres reproduces keras.applications' ResNets exactly when built in their layout.

The keras.applications model gets random weights (BN statistics included),
every one of its weighted layers is copied to the kres layer of the same name,
and both must give the same outputs. Matching names prove the layer naming too.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kres
from kres.models.families import resnet
from tests.golden import KERAS_APPLICATIONS
from tests.reference import copy_weights_by_name, randomize_weights

KERAS_V1 = resnet.KERAS_V1_LAYOUT


@pytest.mark.parametrize("reference, name, overrides", [
    (keras.applications.ResNet50, "resnet50", KERAS_V1),
    (keras.applications.ResNet50V2, "resnet50v2", {}),
])
def test_same_outputs_as_keras_applications(reference, name, overrides):
    ref = reference(weights=None, input_shape=(96, 96, 3), classes=7)
    ours = kres.build_model(name, input_shape=(96, 96, 3), classes=7, **overrides)
    randomize_weights(ref)

    copied = copy_weights_by_name(ref, ours)
    assert {layer.name for layer in ours.layers if layer.weights} == set(copied)
    assert kres.count_params(ours) == sum(
        int(np.prod(w.shape)) for w in ref.trainable_weights)

    x = tf.random.uniform((4, 96, 96, 3), -2, 2, seed=1)
    expected = ref(x, training=False).numpy()
    got = ours(x, training=False).numpy()
    assert np.abs(got - expected).max() < 1e-4
    # Not a trivial agreement: the predictions differ between images.
    assert np.abs(expected - expected.mean(axis=0)).max() > 1e-3


@pytest.mark.parametrize("reference, name", [
    (keras.applications.ResNet101, "resnet101"),
    (keras.applications.ResNet152, "resnet152"),
    (keras.applications.ResNet50V2, "resnet50v2"),
    (keras.applications.ResNet101V2, "resnet101v2"),
    (keras.applications.ResNet152V2, "resnet152v2"),
])
def test_same_size_as_keras_applications(reference, name):
    overrides = {} if name.endswith("v2") else KERAS_V1
    ref = reference(weights=None, input_shape=(64, 64, 3))
    ours = kres.build_model(name, input_shape=(64, 64, 3), **overrides)
    assert [(w.path, w.shape) for w in ours.weights] == [(w.path, w.shape) for w in ref.weights]
    if name in KERAS_APPLICATIONS:  # the figure tests/golden.py gives these rows
        assert sum(int(np.prod(w.shape)) for w in ref.trainable_weights) == \
            KERAS_APPLICATIONS[name] == kres.count_params(ours)


def test_keras_v1_layout_macs():
    # REFERENCE.md: the v1 layout costs 3.858 GMACs, v1.5 4.089.
    model = kres.build_model("resnet50", **KERAS_V1)
    assert kres.count_macs(model) / 1e9 == pytest.approx(3.858, rel=1e-3)
    assert kres.count_params(model) == 25_557_032 + 26_560
