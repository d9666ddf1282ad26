"""The Keras user's view: constructors, plain Functional models, fit, saving."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kres


def test_every_constructor_names_a_registered_model():
    assert sorted(kres.CONSTRUCTORS.values()) == sorted(set(kres.CONSTRUCTORS.values()))
    assert set(kres.CONSTRUCTORS.values()) == set(kres.list_models())
    for public, key in kres.CONSTRUCTORS.items():
        constructor = getattr(kres, public)
        assert constructor.__name__ == public
        assert f"`{key}`" in constructor.__doc__


def test_resnext50_in_a_keras_script():
    model = kres.ResNeXt50(classes=10, input_shape=(64, 64, 3))
    assert type(model).__name__ == "Functional" and isinstance(model, keras.Model)
    assert model.name == "resnext50_32x4d" and model.output_shape == (None, 10)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x = np.random.default_rng(0).uniform(size=(4, 64, 64, 3)).astype("float32")
    y = np.arange(4) % 10
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_feature_extractor_and_input_tensor():
    features = kres.ResNet18(include_top=False, input_shape=(None, None, 1))
    assert features.output_shape == (None, None, None, 512)
    assert features(tf.zeros((1, 64, 96, 1))).shape == (1, 2, 3, 512)
    pooled = kres.ResNet18(include_top=False, pooling="max", input_shape=(64, 64, 3))
    assert pooled.output_shape == (None, 512)
    image = keras.Input((32, 32, 3))
    model = kres.CifarResNet20(input_tensor=image, classifier_activation=None)
    assert model.inputs[0] is image
    assert model.get_layer("predictions").activation is keras.activations.linear


def test_overrides_give_other_family_members():
    resnet32 = kres.CifarResNet20(depths=(5, 5, 5))
    assert kres.count_params(resnet32) == 464_154
    assert kres.get_spec("cifar_resnet20").depths == (3, 3, 3)  # rows are frozen


@pytest.mark.parametrize("name, kwargs", [
    ("cifar_resnet20", {}),                                       # option A padding layer
    ("se_resnext50_32x4d", {"input_shape": (64, 64, 3)}),         # grouped conv + SE
    ("wrn16_4", {"drop_path_rate": 0.2, "zero_init_last": True}),  # pre-activation, drop path
    ("resnet50v2", {"input_shape": (64, 64, 3)}),                 # keras layout
    ("alexnet_original", {"input_shape": (99, 99, 3), "fc_width": 64}),  # LRN, two towers
    ("vgg11_bn", {"input_shape": (32, 32, 3), "fc_width": 64}),   # adaptive pooling
    ("googlenet", {"input_shape": (96, 96, 3), "aux_classifiers": True}),  # 3 outputs
    ("densenet_bc_100_12", {"depths": (2, 2, 2)}),
])
def test_keras_file_round_trip_in_safe_mode(tmp_path, name, kwargs):
    model = kres.build_model(name, **kwargs)
    x = tf.random.uniform((2, *model.input_shape[1:]))
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    for got, expected in zip(keras.tree.flatten(loaded(x)), keras.tree.flatten(model(x))):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert [la.name for la in loaded.layers] == [la.name for la in model.layers]
