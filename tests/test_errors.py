"""Every wrong argument fails at build time with a ValueError that names the
argument and the value received."""

import pytest

import kres


@pytest.mark.parametrize("name, kwargs, message", [
    ("resnet51", {}, r"Did you mean 'resnet50'.*Received: name='resnet51'"),
    ("resnet50", {"cardinalty": 32}, r"Did you mean 'cardinality'.*Received: cardinalty=32"),
    ("resnext29_32x4d", {"width_per_group": 0}, r"Received: width_per_group=0"),
    ("cifar_resnet20", {"block": "bottleneck", "cardinality": 8, "width_per_group": 2},
     r"each of the 8 groups would get 0.5 channels. Received: width_per_group=2"),
    ("cifar_resnet20", {"cardinality": 4}, r"bottleneck blocks. Received: cardinality=4"),
    ("resnext50_32x4d", {"cardinality": 0}, r"Received: cardinality=0"),
    ("resnet50", {"depths": (3, 0, 6, 3)}, r"Received: depths=\(3, 0, 6, 3\)"),
    ("resnet50", {"depths": (3, -4, 6, 3)}, r"Received: depths=\(3, -4, 6, 3\)"),
    ("resnet50", {"depths": (3, 4)}, r"one width per stage \(2 stages\)"),
    ("resnet50", {"input_shape": (16, 16, 3)}, r"at least 32.*input_shape=\(16, 16, 3\)"),
    ("cifar_resnet20", {"input_shape": (2, 32, 3)}, r"at least 4.*input_shape=\(2, 32, 3\)"),
    ("resnet50", {"input_shape": (64, 64)}, r"input_shape=\(64, 64\)"),
    ("resnet50", {"input_shape": (64, 64, None)}, r"channels.*input_shape=\(64, 64, None\)"),
    ("resnet50", {"classes": 0}, r"Received: classes=0"),
    ("resnet50", {"classes": "10"}, r"Received: classes='10'"),
    ("resnet50", {"pooling": "sum"}, r"classifier.*Received: pooling='sum'"),
    ("resnet50", {"include_top": False, "pooling": "median"}, r"Received: pooling='median'"),
    ("cifar_resnet20", {"weights": "imagenet"}, r"available for densenet121, .*resnet50, .*vgg19\. "
                                           r".*Received: weights="),
    ("resnet50", {"weights": "/no/such.weights.h5"}, r"Received: weights='/no/such"),
    ("cifar_plain20", {"zero_init_last": True}, r"Received: zero_init_last=True"),
    ("resnet50", {"shortcut": "C"}, r"Received: shortcut='C'"),
    ("se_resnet50", {"se_ratio": 0.25}, r"reduction ratio.*Received: se_ratio=0.25"),
    ("resnet50", {"drop_path_rate": 1.0}, r"Received: drop_path_rate=1.0"),
    ("cifar_resnet20", {"widths": (64, 32, 16)}, r"shortcut='A'.*widths=\(64, 32, 16\)"),
])
def test_bad_arguments(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        kres.build_model(name, **kwargs)


def test_unknown_name_in_get_spec():
    with pytest.raises(ValueError, match=r"Did you mean 'resnext50_32x4d'"):
        kres.get_spec("resnext50_32x4")


@pytest.fixture(scope="module")
def resnet20_weights(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("w") / "resnet20.weights.h5")
    kres.build_model("cifar_resnet20").save_weights(path)
    return path


@pytest.mark.parametrize("name, kwargs", [
    ("cifar_resnet32", {}),           # more layers than the file
    ("cifar_resnet20", {"depths": (2, 2, 2)}),  # fewer: Keras alone would accept it
    ("cifar_resnet20", {"classes": 100}),  # another head
    ("cifar_resnet20", {"shortcut": "B"}),
])
def test_weights_from_another_architecture(resnet20_weights, name, kwargs):
    with pytest.raises(ValueError, match=r"does not match the architecture.*Received: weights="):
        kres.build_model(name, weights=resnet20_weights, **kwargs)


def test_matching_weights_load(resnet20_weights):
    import numpy as np

    model = kres.build_model("cifar_resnet20", weights=resnet20_weights)
    other = kres.build_model("cifar_resnet20")
    other.load_weights(resnet20_weights)
    for a, b in zip(model.weights, other.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("make, message", [
    # The shared checks: a bool is no integer, a string no number.
    (lambda: kres.checks.positive_int("epochs", True), r"^epochs must be a positive integer. "
                                                       r"Received: epochs=True$"),
    (lambda: kres.checks.number("lr", "0.1", low=0), r"^lr must be a number >= 0. "
                                                     r"Received: lr='0.1'$"),
    (lambda: kres.checks.number("lr", float("nan")), r"Received: lr=nan"),
    (lambda: kres.checks.choice("tuner", "hyperbnd", ("random", "hyperband")),
     r"Did you mean 'hyperband'\? Received: tuner='hyperbnd'"),
    (lambda: kres.checks.int_tuple("depths", (3, True)), r"Received: depths=\(3, True\)"),
    # Every config dataclass checks itself when made.
    (lambda: kres.data.catalog.DatasetSpec("x", 28, 2, 10, (0.5,), (0.5,)), r"channels=2"),
    (lambda: kres.data.catalog.DatasetSpec("x", 28, 1, 10, (0.5,), (0.0,)), r"std=\(0.0,\)"),
    (lambda: kres.preprocessing.Preprocessing(28, 28, 1, (0.5,), (0.5,), "crop"),
     r"resize='crop'"),
    (lambda: kres.preprocessing.Preprocessing(28, 0, 1, (0.5,), (0.5,)), r"width=0"),
    (lambda: kres.tuning.spaces.Space("resnet50", {}), r"Received: depths=\{\}"),
    (lambda: kres.get_spec("densenet121").__class__(depths=(6,), compression=0),
     r"compression=0"),
    (lambda: kres.layers.ZeroPadChannels((1, -1)), r"padding=\(1, -1\)"),
])
def test_checks_name_the_field_and_the_value(make, message):
    with pytest.raises(ValueError, match=message):
        make()
