"""Published ImageNet weights: Keras's files load into kres models, proven
without the network.

The published files are keras.applications models' weights in Keras's legacy
HDF5 format. Here each keras.applications model is built with random weights
and saved in that format (Keras's own legacy writer, the writer of those
files); kres loads the file through the mapping that ``weights="imagenet"``
uses and must give the same outputs.
"""

import json

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.legacy.saving import legacy_h5_format

import kres
from kres.models import registry
from kres.models.families import resnet
from kres.weights import keras_applications as kweights
from tests.reference import randomize_weights

APPLICATIONS = {
    "resnet50": keras.applications.ResNet50,
    "resnet101": keras.applications.ResNet101,
    "resnet152": keras.applications.ResNet152,
    "resnet50v2": keras.applications.ResNet50V2,
    "resnet101v2": keras.applications.ResNet101V2,
    "resnet152v2": keras.applications.ResNet152V2,
    "vgg16": keras.applications.VGG16,
    "vgg19": keras.applications.VGG19,
    "densenet121": keras.applications.DenseNet121,
    "densenet169": keras.applications.DenseNet169,
    "densenet201": keras.applications.DenseNet201,
}
SIZE = 64


def _save_legacy(model, path):
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return str(path)


def _layout(name):
    # VGG: Keras flattens the feature map as it is; kres's torchvision-style
    # adaptive pool is the identity only at 224x224.
    return {**dict(kres.published_weights(name).layout),
            **({"adaptive_pool": None} if name.startswith("vgg") else {})}


def test_published_weights_are_declared_whole():
    # Each family's module declares its files as objects: address, hash, preprocessing,
    # layout and the accuracy keras.io gives; the layout builds the model.
    published = kres.published_weights()
    assert published and all(isinstance(w, kweights.PublishedWeights) for w in published.values())
    for name, weights in published.items():
        family = registry.FAMILIES[registry.lookup(name).family]
        assert family.weights[name] is weights
        assert weights.url(True).startswith(kweights.KERAS_BASE_URL) and weights.top_hash
        assert weights.mode in ("caffe", "tf", "torch") and weights.classes == 1000
        assert 70 < weights.top1 < weights.top5 < 100
        registry.resolve_spec(name, **dict(weights.layout))
        assert kres.models.catalog.MODELS[name].imagenet_layout == dict(weights.layout)
    assert {n for n, e in kres.models.catalog.MODELS.items()
            if e.imagenet_layout is not None} == set(published)


def test_every_published_architecture_is_tested():
    assert set(APPLICATIONS) == set(kres.published_weights())


# The deeper members of a family map their layers with the same code as the first
# (resnet50 for resnet101/152, ...), which every run checks; these with `-m slow`.
DEEPER = {"resnet101", "resnet152", "resnet101v2", "resnet152v2", "densenet169",
          "densenet201"}


# Every published model with its classifier; the files without it (the
# "notop" files) on one model per family.
@pytest.mark.parametrize("name, include_top", [
    *(pytest.param(name, True, marks=pytest.mark.slow) if name in DEEPER else (name, True)
      for name in sorted(APPLICATIONS)),
    *((name, False) for name in ("resnet50", "resnet50v2", "vgg16", "densenet121")),
])
def test_keras_file_gives_keras_outputs(tmp_path, name, include_top):
    head = {"classes": 7, "classifier_activation": None,  # logits: differences show
            "pooling": None if include_top else "avg", "include_top": include_top}
    ref = APPLICATIONS[name](weights=None, input_shape=(SIZE, SIZE, 3), **head)
    randomize_weights(ref)
    path = _save_legacy(ref, tmp_path / f"{name}.h5")
    ours = kres.build_model(name, weights=path, input_shape=(SIZE, SIZE, 3), **head,
                            **_layout(name))
    x = tf.random.uniform((3, SIZE, SIZE, 3), -1, 1, seed=2)
    expected = ref(x, training=False).numpy()
    got = ours(x, training=False).numpy()
    spread = np.abs(expected - expected.mean(axis=0)).max()
    assert spread > 0  # the outputs differ between images ...
    assert np.abs(got - expected).max() < min(1e-4, 0.01 * spread)  # ... and kres's follow them


def test_weights_imagenet_fetches_through_the_keras_cache(tmp_path, monkeypatch):
    # The network is the one thing not available here: get_file is replaced by
    # a stand-in that records its arguments and returns a file written from
    # keras.applications' own model (1000 classes, as published).
    ref = keras.applications.ResNet50(weights=None, input_shape=(SIZE, SIZE, 3))
    randomize_weights(ref)
    path = _save_legacy(ref, tmp_path / "resnet50.h5")
    calls = []

    def get_file(fname, origin, **kwargs):
        calls.append((fname, origin, kwargs))
        return path

    monkeypatch.setattr(keras.utils, "get_file", get_file)
    ours = kres.ResNet50(weights="imagenet", input_shape=(SIZE, SIZE, 3))
    assert calls == [("resnet50_weights_tf_dim_ordering_tf_kernels.h5",
                      kweights.KERAS_BASE_URL + "resnet/"
                      "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
                      {"cache_subdir": "models", "file_hash": "2cb95161c43110f7111970584f804107"})]
    # Built in Keras's v1 layout (stride on the 1x1, conv biases) automatically.
    assert ours.get_layer("conv2_block1_1_conv").use_bias
    assert ours.get_layer("conv3_block1_1_conv").strides == (2, 2)
    x = tf.random.uniform((2, SIZE, SIZE, 3), seed=3)
    np.testing.assert_allclose(ours(x), ref(x), atol=1e-5)


@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_file_names_and_hashes_are_keras_applications_own(monkeypatch, name):
    # keras.applications asks get_file for its file; record the request and
    # stop there, then compare with kres's table.
    class Stop(Exception):
        pass

    requests = []

    def get_file(fname, origin, **kwargs):
        requests.append((fname, origin, kwargs.get("file_hash")))
        raise Stop

    monkeypatch.setattr(keras.src.utils.file_utils, "get_file", get_file)
    source = kres.published_weights(name)
    for include_top in (True, False):
        with pytest.raises(Stop):
            APPLICATIONS[name](weights="imagenet", include_top=include_top,
                               input_shape=None if include_top else (SIZE, SIZE, 3))
    assert requests == [
        (source.file_name(True), source.url(True), source.top_hash),
        (source.file_name(False), source.url(False), source.notop_hash),
    ]


def test_wrong_architecture_names_the_layer_and_changes_nothing(tmp_path):
    ref = keras.applications.ResNet50(weights=None, input_shape=(SIZE, SIZE, 3), classes=7)
    path = _save_legacy(ref, tmp_path / "resnet50.h5")
    # kres's default ResNet-50 (no conv biases) is not Keras's layout.
    model = kres.build_model("resnet50", input_shape=(SIZE, SIZE, 3), classes=7)
    before = [w.numpy().copy() for w in model.weights]
    with pytest.raises(ValueError, match=r"layer 1 \('conv1_conv'\) holds 2 tensors, the "
                                         r"model's layer 1 \('conv1_conv'\) has 1"):
        kres.load_keras_weights(model, path)
    with pytest.raises(ValueError, match=r"'predictions/kernel' .* shape \(2048, 7\).*expects "
                                         r"\(2048, 9\)"):
        kres.build_model("resnet50", weights=path, input_shape=(SIZE, SIZE, 3), classes=9,
                         **resnet.KERAS_V1_LAYOUT)
    with pytest.raises(ValueError, match=r"the file has \d+ weighted layers.*classifier"):
        kres.build_model("resnet50", weights=path, include_top=False,
                         input_shape=(SIZE, SIZE, 3), **resnet.KERAS_V1_LAYOUT)
    with pytest.raises(ValueError, match=r"does not match 'densenet121'.*Received: weights="):
        kres.load_keras_weights(kres.build_model("densenet121", input_shape=(SIZE, SIZE, 3)),
                                path)
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(before, model.weights))


def test_not_a_keras_h5_file(tmp_path):
    path = tmp_path / "empty.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ValueError, match=r"no layer_names.*Received: weights="):
        kres.load_keras_weights(kres.build_model("cifar_resnet20"), path)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match=r"Cannot read an HDF5 file.*Received: weights="):
        kres.load_keras_weights(kres.build_model("cifar_resnet20"), tmp_path / "text.h5")


@pytest.mark.parametrize("name, kwargs, message", [
    ("googlenet", {}, r"No published ImageNet weights for 'googlenet'; .*available for "
                      r"densenet121, .*resnet50, .*vgg19.*Received: weights='imagenet'"),
    ("resnext50_32x4d", {}, r"kres.load_timm_weights"),
    ("resnet50", {"classes": 10}, r"1000 classes.*include_top=False.*Received: classes=10"),
    ("resnet50", {"stride_on": "3x3"}, r"need stride_on='1x1'.*Received: stride_on='3x3'"),
])
def test_imagenet_refusals_before_any_download(monkeypatch, name, kwargs, message):
    def get_file(*args, **kwargs):
        raise AssertionError("no download may be attempted")

    monkeypatch.setattr(keras.utils, "get_file", get_file)
    with pytest.raises(ValueError, match=message):
        kres.build_model(name, weights="imagenet", **kwargs)


def test_offline_imagenet_says_where_to_put_the_file(monkeypatch, tmp_path):
    def get_file(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(keras.utils, "get_file", get_file)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"copy densenet121_weights_tf_dim_ordering_tf_kernels"
                                           r"_notop.h5 .* into .*models"):
        kres.DenseNet121(weights="imagenet", include_top=False, input_shape=(SIZE, SIZE, 3))


@pytest.mark.parametrize("name, module", [
    ("resnet50", keras.applications.resnet),
    ("resnet50v2", keras.applications.resnet_v2),
    ("vgg19", keras.applications.vgg19),
    ("densenet169", keras.applications.densenet),
])
def test_preprocess_input_matches_keras_applications(name, module):
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = module.preprocess_input(x.copy())
    np.testing.assert_allclose(kres.preprocess_input(x, name), expected, rtol=1e-6)
    model = kres.build_model(name, input_shape=(32, 32, 3), include_top=False)
    np.testing.assert_allclose(kres.preprocess_input(x, model), expected, rtol=1e-6)
    assert x.max() > 200  # the caller's array is left alone


def test_preprocess_input_for_a_model_without_weights():
    with pytest.raises(ValueError, match=r"Received: model='googlenet'"):
        kres.preprocess_input(np.zeros((1, 8, 8, 3)), "googlenet")


def test_decode_predictions(tmp_path):
    index = {str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}
    path = tmp_path / "imagenet_class_index.json"
    path.write_text(json.dumps(index))
    preds = np.zeros((2, 1000), "float32")
    preds[0, [3, 7, 1]] = [0.5, 0.3, 0.2]
    preds[1, 999] = 1.0
    decoded = kres.decode_predictions(preds, top=2, class_index=str(path))
    assert decoded[0] == [("n00000003", "class_3", 0.5), ("n00000007", "class_7",
                                                          pytest.approx(0.3))]
    assert decoded[1][0] == ("n00000999", "class_999", 1.0)
    with pytest.raises(ValueError, match=r"Received: preds.shape=\(2, 10\)"):
        kres.decode_predictions(np.zeros((2, 10)), class_index=str(path))
    with pytest.raises(ValueError, match=r"Received: top=0"):
        kres.decode_predictions(preds, top=0, class_index=str(path))
