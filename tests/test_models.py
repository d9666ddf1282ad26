"""Every registered model: its exact size against a published figure or an
independent derivation (tests/golden.py names the source of each), a working
forward and backward pass, and a config that rebuilds the same network."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kres
from kres.models import catalog
from kres.models.saving import deep_graphs
from tests.golden import CIFAR_OPTION_B, DERIVED, KERAS_APPLICATIONS, PAPER_ROUNDED, PUBLISHED

# The deeper and wider members of a family run the same builder code as a smaller
# sibling that is built and tested in full by default (resnet50 for resnet101/152 and
# wide_resnet50_2, vgg11_bn for the VGGs, se_resnet50 and resnext50_32x4d for
# se_resnext50_32x4d, ...): every run checks their catalog rows against the
# published or derived figures (test_catalog_rows_are_the_golden_figures), and
# `-m slow` builds them and checks the built networks (size, forward and backward
# passes, rebuild). ResNet-1202's build alone takes 20 s.
HEAVY = {"resnet101", "resnet152", "resnet101v2", "resnet152v2", "resnext101_32x4d",
         "resnext101_32x8d", "resnext101_64x4d", "wide_resnet101_2", "se_resnet101",
         "se_resnet152", "se_resnext101_32x4d", "densenet169", "densenet201",
         "densenet_bc_250_24", "densenet_bc_190_40", "vgg13", "vgg16", "vgg19", "vgg13_bn",
         "vgg16_bn", "vgg19_bn", "cifar_resnet110", "cifar_plain110", "cifar_preact_resnet164",
         "resnext29_16x64d", "wide_resnet50_2", "se_resnext50_32x4d", "vgg11", "cifar_plain32",
         "cifar_plain44"}
SLOW = {"cifar_resnet1202"}


def _marked(names, slow):
    return [pytest.param(n, marks=pytest.mark.slow) if n in slow else n for n in names]


@pytest.mark.parametrize("name", _marked(kres.list_models(), SLOW | HEAVY))
def test_model_size_training_and_rebuild(name):
    model = kres.build_model(name)  # built once for both halves
    _check_size(name, model)
    _check_trains_and_rebuilds(name, model)


@pytest.mark.parametrize("name", kres.list_models())
def test_catalog_rows_are_the_golden_figures(name):
    # What `kres models` prints (the generated catalog, no build) against the papers'
    # figures; the built networks equal these rows (test_model_size_training_and_rebuild).
    entry = catalog.MODELS[name]
    _check_golden(name, entry.params, entry.macs)


def _check_size(name, model):
    spec = kres.get_spec(name)
    assert model.name == name
    size = spec.default_size
    assert model.input_shape == (None, size, size, 3)
    assert model.output_shape == (None, spec.default_classes)

    # The catalog that `kres models` prints without building anything.
    entry = catalog.MODELS[name]
    assert (entry.params, entry.macs) == (kres.count_params(model), kres.count_macs(model))
    _check_golden(name, kres.count_params(model), kres.count_macs(model))

    # Every kernel starts from its own random draw (a shared Keras initializer
    # instance would give every convolution of a shape the same one).
    kernels = [w.numpy().ravel()[:64].tobytes() for w in model.trainable_weights
               if len(w.shape) > 1]
    assert len(set(kernels)) == len(kernels), "some layers start with identical kernels"


def _check_golden(name, params, macs):
    assert {name} & (PUBLISHED.keys() | DERIVED.keys() | KERAS_APPLICATIONS.keys()), \
        f"{name} has no published or independently derived size in tests/golden.py"
    if name in PUBLISHED:
        published_params, gmacs, _source = PUBLISHED[name]
        assert params == published_params
        assert macs / 1e9 == pytest.approx(gmacs, rel=2e-3)  # GMACs as printed
    if name in DERIVED:
        derived_params, derived_macs, _how = DERIVED[name]
        assert params == derived_params
        assert derived_macs is None or macs == derived_macs
    if name in PAPER_ROUNDED:
        assert round(params / 1e6, 1) == PAPER_ROUNDED[name][0]
    if name in KERAS_APPLICATIONS:
        assert params == KERAS_APPLICATIONS[name]


def _check_trains_and_rebuilds(name, model):
    spec = kres.get_spec(name)
    size = spec.default_size
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


@pytest.mark.parametrize("depth", [pytest.param(d, marks=pytest.mark.slow) if d > 110 else d
                                   for d in sorted(CIFAR_OPTION_B)])
def test_cifar_resnets_with_projection_shortcuts(depth):
    # Option B (1x1 projections with batch norm) against REFERENCE.md and the closed form.
    from tests import closed_form

    params = kres.count_params(kres.build_model(f"cifar_resnet{depth}", shortcut="B"))
    assert params == CIFAR_OPTION_B[depth] == closed_form.cifar_resnet((depth - 2) // 6, "B")[0]
