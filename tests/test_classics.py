"""AlexNet, VGG, GoogLeNet and DenseNet: what the shared model tests do not
cover (the published sizes are in test_models through tests/golden.py)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kres
from kres import training
from tests.reference import copy_weights_by_name


def test_googlenet_auxiliary_classifiers_train_and_strip():
    model = kres.GoogLeNetBN(aux_classifiers=True, classes=5, input_shape=(96, 96, 3))
    assert model.output_names == ["predictions", "aux1_predictions", "aux2_predictions"]
    assert model.output_shape == [(None, 5)] * 3
    # The paper's training: auxiliary losses weighted by 0.3.
    model.compile(optimizer=keras.optimizers.SGD(0.01),
                  loss=["sparse_categorical_crossentropy"] * 3, loss_weights=[1.0, 0.3, 0.3])
    x = np.random.default_rng(0).uniform(size=(4, 96, 96, 3)).astype("float32")
    y = np.arange(4) % 5
    aux_kernel = model.get_layer("aux1_fc").kernel.numpy().copy()
    history = model.fit(x, (y, y, y), batch_size=4, epochs=1, verbose=0)
    logs = {k: v[0] for k, v in history.history.items()}
    # The total is the weighted sum of the three heads' losses.
    assert logs["loss"] == pytest.approx(logs["predictions_loss"] + 0.3 * (
        logs["aux1_predictions_loss"] + logs["aux2_predictions_loss"]), rel=1e-4)
    assert not np.array_equal(aux_kernel, model.get_layer("aux1_fc").kernel.numpy())

    inference = kres.strip_auxiliary(model)
    assert inference.output_shape == (None, 5)
    assert "aux1_fc" not in {layer.name for layer in inference.layers}
    np.testing.assert_allclose(inference(x), model(x)[0], rtol=1e-5, atol=1e-6)
    # Without the auxiliary heads, the same weights as the plain network.
    plain = kres.GoogLeNetBN(classes=5, input_shape=(96, 96, 3))
    assert [w.shape for w in plain.weights] == [w.shape for w in inference.weights]


def test_googlenet_auxiliary_classifiers_refused_where_they_cannot_be():
    with pytest.raises(ValueError, match=r"need include_top=True"):
        kres.GoogLeNet(aux_classifiers=True, include_top=False)
    with pytest.raises(ValueError, match=r"at least 80.*input_shape=\(64, 64, 3\)"):
        kres.GoogLeNet(aux_classifiers=True, input_shape=(64, 64, 3))
    config = training.TrainConfig(model="googlenet_bn", dataset="fashion_mnist",
                                  model_overrides={"aux_classifiers": True})
    with pytest.raises(ValueError, match=r"loss_weights.*Received: aux_classifiers=True"):
        training.prepare(config)


@pytest.mark.parametrize("name, size", [("vgg11", 224), ("alexnet", 224)])
def test_adaptive_pool_is_the_identity_at_the_default_size(name, size):
    # torchvision's adaptive pooling lets any input size feed the classifier;
    # at the default size it changes nothing (the keras.applications layout).
    model = kres.build_model(name, classes=3)
    flat = kres.build_model(name, classes=3, adaptive_pool=None)
    copy_weights_by_name(model, flat)
    x = tf.random.uniform((1, size, size, 3), seed=4)
    np.testing.assert_allclose(model(x), flat(x), rtol=1e-5, atol=1e-6)
    other = kres.build_model(name, classes=3, input_shape=(160, 160, 3))
    assert [w.shape for w in other.weights] == [w.shape for w in model.weights]


def test_fully_connected_classifiers_need_a_known_size():
    with pytest.raises(ValueError, match=r"input height and width must be known.*include_top"):
        kres.VGG16(input_shape=(None, None, 3))
    features = kres.VGG16(include_top=False, input_shape=(None, None, 3), pooling="avg")
    assert features.output_shape == (None, 512)


def test_alexnet_original_towers_are_two_group_convolutions():
    model = kres.AlexNetOriginal()
    assert model.input_shape == (None, 227, 227, 3)
    # The count of the two-tower Caffe model of the paper's network.
    assert kres.count_params(model) == 60_965_224
    assert [model.get_layer(f"conv{i}").groups for i in range(1, 6)] == [1, 2, 1, 2, 2]
    assert {"conv1_lrn", "conv2_lrn"} <= {layer.name for layer in model.layers}
    # 227 -> 55 -> 27 -> 13 -> 6, as in the paper's Fig. 2.
    assert model.get_layer("pool5").output.shape[1:] == (6, 6, 256)


@pytest.mark.parametrize("name, kwargs, message", [
    ("alexnet", {"groups": (1, 3, 1, 1, 1)}, r"groups\[1\] must divide.*Received: groups="),
    ("alexnet", {"widths": (64, 192)}, r"5 convolutions. Received: widths=\(64, 192\)"),
    ("alexnet", {"input_shape": (40, 40, 3)}, r"at least 63.*input_shape=\(40, 40, 3\)"),
    ("vgg16", {"widths": (64, 128)}, r"one width per stage.*Received: widths=\(64, 128\)"),
    ("vgg16", {"dropout_rate": 1.5}, r"Received: dropout_rate=1.5"),
    ("googlenet", {"branch3_kernel": 4}, r"Received: branch3_kernel=4"),
    ("googlenet", {"modules": (("3a", 64, 96, 128, 16, 32),)}, r"rows of .*Received: a row"),
    ("densenet121", {"compression": 0}, r"Received: compression=0"),
    ("densenet121", {"growth_rate": -1}, r"Received: growth_rate=-1"),
    ("densenet121", {"stem": "tiny"}, r"Received: stem='tiny'"),
])
def test_bad_arguments(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        kres.build_model(name, **kwargs)
