"""kres.feature_extractor: stage outputs of every family, shared and pretrained weights,
frozen batch norm, refusals, and the FPN example.

Spatial sizes are exact: networks that pad before every stride (ResNet, GoogLeNet, the
DenseNet stem) give ``ceil(size / stride)``; unpadded 2x2 pooling (VGG's max-pools,
DenseNet's transitions) rounds down.
"""

import importlib.util
import math
import os

import keras
import numpy as np
import pytest

import kres
from kres.models import backbones, registry
from kres.models.inference import leaves
from tests.test_timm import TorchArch, random_state, write_safetensors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = ((64, 64), (72, 104))  # a multiple of 32, and one that is not


def ceil_size(size, level):
    return math.ceil(size / 2 ** level)


def densenet_size(size, level):  # padded stem to stride 4, then unpadded 2x2 pools
    return ceil_size(size, min(level, 2)) // 2 ** max(level - 2, 0)


def floor_size(size, level):
    return size // 2 ** level


# name, overrides, stages -> (layer, channels), the size rule.
CASES = {
    "resnet18": ("resnet18", {}, {
        "C2": ("conv2_block2_out", 64), "C3": ("conv3_block2_out", 128),
        "C4": ("conv4_block2_out", 256), "C5": ("conv5_block2_out", 512)}, ceil_size),
    "resnext": ("resnext50_32x4d", {"depths": (1, 1, 1, 1)}, {
        "C2": ("conv2_block1_out", 256), "C3": ("conv3_block1_out", 512),
        "C4": ("conv4_block1_out", 1024), "C5": ("conv5_block1_out", 2048)}, ceil_size),
    # keras.applications' layouts: v2 strides the last block of a stage, so its
    # stride-4 output is the block before; v1 strides the 1x1, with biases; SE.
    "resnet_v2": ("resnet50v2", {"depths": (2, 2, 2, 2)}, {
        "C2": ("conv2_block1_out", 256), "C3": ("conv3_block1_out", 512),
        "C4": ("conv4_block1_out", 1024), "C5": ("post_relu", 2048)}, ceil_size),
    "se_resnet_keras_v1": ("se_resnet50", {"depths": (1, 1, 1, 1), "stride_on": "1x1",
                                           "conv_bias": True}, {
        "C2": ("conv2_block1_out", 256), "C3": ("conv3_block1_out", 512),
        "C4": ("conv4_block1_out", 1024), "C5": ("conv5_block1_out", 2048)}, ceil_size),
    "densenet": ("densenet121", {"depths": (2, 3, 4, 2)}, {
        "C2": ("conv2_block2_concat", 128), "C3": ("conv3_block3_concat", 160),
        "C4": ("conv4_block4_concat", 208), "C5": ("relu", 168)}, densenet_size),
    "vgg": ("vgg11", {}, {
        "C2": ("block3_conv2", 256), "C3": ("block4_conv2", 512),
        "C4": ("block5_conv2", 512), "C5": ("block5_pool", 512)}, floor_size),
    "vgg_bn": ("vgg11_bn", {"widths": (8, 8, 16, 16, 16)}, {
        "C0": ("block1_conv1_relu", 8), "C1": ("block2_conv1_relu", 8),
        "C2": ("block3_conv2_relu", 16), "C5": ("block5_pool", 16)}, floor_size),
    "googlenet": ("googlenet_bn", {}, {
        "C2": ("conv3_relu", 192), "C3": ("inception3b_output", 480),
        "C4": ("inception4e_output", 832), "C5": ("inception5b_output", 1024)}, ceil_size),
    # CIFAR networks: strides 1, 2 and 4.
    "cifar_resnet": ("cifar_resnet20", {"depths": (1, 1, 1)}, {
        "C0": ("conv2_block1_out", 16), "C1": ("conv3_block1_out", 32),
        "C2": ("conv4_block1_out", 64)}, ceil_size),
    "wrn": ("wrn16_4", {"depths": (1, 1, 1)}, {
        "C0": ("conv2_block1_out", 64), "C1": ("conv3_block1_out", 128),
        "C2": ("post_relu", 256)}, ceil_size),
    "cifar_densenet": ("densenet_bc_100_12", {"depths": (1, 1, 1)}, {
        "C0": ("conv2_block1_concat", 36), "C1": ("conv3_block1_concat", 30),
        "C2": ("relu", 27)}, floor_size),
}


@pytest.mark.parametrize("case", list(CASES))
def test_stage_outputs_of_every_family_at_two_sizes(case):
    name, overrides, expected, size_of = CASES[case]
    extractor = kres.feature_extractor(name, tuple(expected), **overrides)
    assert type(extractor).__name__ == "Functional" and extractor.name == f"{name}_backbone"
    assert extractor.input_shape == (None, None, None, 3)
    table = backbones.stage_layers(extractor)
    assert {s: (table[s].layer, table[s].channels) for s in expected} == expected
    assert list(extractor.output) == list(expected)
    assert extractor.pyramid_level_inputs == {f"P{s[1:]}": s for s in expected}
    for stage, tensor in extractor.output.items():
        assert extractor.pyramid_outputs[f"P{stage[1:]}"] is tensor
        assert extractor.get_layer(stage).output is tensor
    for height, width in SIZES:
        features = extractor(np.zeros((1, height, width, 3), "float32"))
        got = {s: tuple(f.shape) for s, f in features.items()}
        assert got == {s: (1, size_of(height, int(s[1:])), size_of(width, int(s[1:])), c)
                       for s, (_, c) in expected.items()}, (height, width)
    keras.backend.clear_session()


@pytest.mark.parametrize("case", ["resnet18", "resnet_v2", "densenet", "vgg_bn", "googlenet",
                                  "cifar_resnet", "wrn", "cifar_densenet"])
def test_declared_stages_are_where_the_strides_say(case):
    # The family declares its stage layers from the spec; read back from the built
    # model, the same table; each declared layer is at stride 2**k (CASES pins the names).
    name, overrides, _, _ = CASES[case]
    family = registry.FAMILIES[registry.lookup(name).family]
    spec = registry.resolve_spec(name, **overrides)
    declared = family.stage_outputs(spec)
    model = kres.build_model(name, include_top=False, input_shape=(64, 64, 3), **overrides)
    assert family.stage_outputs(family.layout_of(model)) == declared
    sizes = {layer.name: layer.output.shape[1] for layer in model.layers
             if len(layer.output.shape) == 4}
    for stage, layer in declared.items():  # at 64x64: 64 / 2**k, rounded up or down
        assert sizes[layer] in (64 // 2 ** int(stage[1:]), -(-64 // 2 ** int(stage[1:]))), stage
    keras.backend.clear_session()


def test_families_are_found_in_their_package():
    import importlib
    import pkgutil

    from kres.models import families

    modules = {m.name for m in pkgutil.iter_modules(families.__path__)}
    declaring = {m for m in modules
                 if hasattr(importlib.import_module(f"kres.models.families.{m}"), "FAMILY")}
    assert set(registry.FAMILIES) == declaring
    # The other modules there belong to a family (resnet_timm: ResNet's timm mapping).
    assert modules - declaring == {"resnet_timm"}
    assert {registry.lookup(n).family for n in registry.list_models()} == declaring
    for name, family in registry.FAMILIES.items():
        assert family.name == name and family.variants and family.signature
        assert set(family.variants) <= set(registry.list_models())


def test_every_family_is_supported_or_refused():
    with_stages = {name for name, family in registry.FAMILIES.items() if family.stage_outputs}
    assert set(registry.FAMILIES) - with_stages == {"alexnet"}
    tested = {registry.lookup(name).family for name, *_ in CASES.values()}
    assert tested == with_stages


def test_weights_are_shared_with_the_classifier():
    classifier = kres.build_model("resnet18", depths=(1, 1, 1, 1), classes=3,
                                  input_shape=(None, None, 3))
    extractor = kres.feature_extractor(classifier)
    assert extractor.input is classifier.input
    for layer in extractor.layers:
        if layer.weights:
            assert layer is classifier.get_layer(layer.name)
    assert extractor.get_layer("conv1_conv").kernel is classifier.get_layer("conv1_conv").kernel
    ids = {id(w) for w in classifier.weights}
    assert extractor.weights and all(id(w) in ids for w in extractor.weights)
    # The classifier minus its top: every weight but the classifier's two.
    assert len(extractor.weights) == len(classifier.weights) - 2

    names = [f"conv{k}_block1_out" for k in (2, 3, 4, 5)]
    inner = keras.Model(classifier.input, [classifier.get_layer(n).output for n in names])
    x = np.random.default_rng(0).normal(size=(2, 64, 96, 3)).astype("float32")
    before = extractor(x)["C4"].numpy()
    for got, expected in zip(extractor(x).values(), inner(x)):
        np.testing.assert_array_equal(got, expected)
    kernel = classifier.get_layer("conv4_block1_1_conv").kernel
    kernel.assign(kernel * 2.0)  # a change to the classifier ...
    after = extractor(x)["C4"].numpy()  # ... is a change to the extractor
    assert not np.allclose(after, before)
    np.testing.assert_array_equal(after, inner(x)[2])

    # Freezing the extractor's batch norms freezes the classifier's (the same layers).
    frozen = kres.feature_extractor(classifier, "C5", freeze_batch_norm=True)
    assert list(frozen.output) == ["C5"]
    assert classifier.get_layer("conv1_bn").trainable is False
    assert classifier.get_layer("conv5_block1_2_bn").frozen is True


def _trained_once(freeze_batch_norm):
    extractor = kres.feature_extractor("resnet18", ("C4", "C5"), depths=(1, 1, 1, 1),
                                       freeze_batch_norm=freeze_batch_norm)
    image = keras.Input((32, 32, 3))
    features = extractor(image)
    pooled = [keras.layers.GlobalAveragePooling2D()(features[s]) for s in ("C4", "C5")]
    logits = keras.layers.Dense(3)(keras.layers.Concatenate()(pooled))
    model = keras.Model(image, logits)
    model.compile(optimizer=keras.optimizers.SGD(0.1), run_eagerly=True,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(1)
    x = rng.normal(1.0, 2.0, (4, 32, 32, 3)).astype("float32")
    bn = [layer for layer in extractor.layers
          if isinstance(layer, keras.layers.BatchNormalization)]
    bn_before = [w.numpy().copy() for layer in bn for w in layer.weights]
    kernels = [layer.kernel for layer in extractor.layers if isinstance(layer, keras.layers.Conv2D)]
    kernels_before = [k.numpy().copy() for k in kernels]
    training, inference = extractor(x, training=True), extractor(x, training=False)
    model.train_on_batch(x, np.arange(4) % 3)
    bn_after = [w.numpy() for layer in bn for w in layer.weights]
    return {
        "bn": len(bn),
        "bn_changed": sum(not np.array_equal(a, b) for a, b in zip(bn_before, bn_after)),
        "kernels_changed": all(not np.array_equal(k.numpy(), b)
                               for k, b in zip(kernels, kernels_before)),
        "train_mode_is_inference": all(np.allclose(training[s], inference[s], atol=1e-5)
                                       for s in ("C4", "C5")),
        "trainable_bn": sum(w.name in ("gamma", "beta") for w in extractor.trainable_weights),
    }


def test_frozen_batch_norm_keeps_its_statistics_and_scales():
    frozen = _trained_once(freeze_batch_norm=True)
    # One SGD step: every convolution moved; no batch-norm variable did (moving mean
    # and variance, gamma and beta), and in training they normalise as in inference.
    assert frozen["bn"] == 12 and frozen["kernels_changed"]
    assert frozen["bn_changed"] == 0 and frozen["trainable_bn"] == 0
    assert frozen["train_mode_is_inference"]
    # Without freezing, the same step updates all four variables of every batch norm.
    free = _trained_once(freeze_batch_norm=False)
    assert free["bn_changed"] == 4 * free["bn"] and free["trainable_bn"] == 2 * free["bn"]
    assert not free["train_mode_is_inference"]
    keras.backend.clear_session()


def _detector(freeze_batch_norm):
    """A two-level FPN and a per-pixel head on a one-block ResNet-18 extractor, as a
    user builds a detector or segmenter on it."""
    backbone = kres.feature_extractor("resnet18", ("C4", "C5"), depths=(1, 1, 1, 1),
                                      freeze_batch_norm=freeze_batch_norm)
    image = keras.Input((64, 64, 3), name="image")
    features = backbone(image)
    p5 = keras.layers.Conv2D(8, 1, name="lateral5")(features["C5"])
    p4 = keras.layers.Add(name="merge4")([
        keras.layers.Conv2D(8, 1, name="lateral4")(features["C4"]),
        keras.layers.UpSampling2D(2, name="up5")(p5)])
    logits = keras.layers.Conv2D(3, 3, padding="same", name="head")(p4)
    return backbone, keras.Model(image, logits, name="detector")


def test_a_detector_on_the_backbone_saves_and_reloads_in_safe_mode(tmp_path):
    backbone, detector = _detector(freeze_batch_norm=True)
    x = np.random.default_rng(2).normal(size=(2, 64, 64, 3)).astype("float32")
    for model, name in ((detector, "det.keras"), (backbone, "backbone.keras")):
        path = str(tmp_path / name)
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        for got, expected in zip(keras.tree.flatten(loaded(x)), keras.tree.flatten(model(x))):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # The frozen batch norms are frozen in the loaded model too.
    loaded_bn = [layer for layer in leaves(loaded)
                 if isinstance(layer, keras.layers.BatchNormalization)]
    assert loaded_bn and all(layer.frozen and not layer.trainable for layer in loaded_bn)
    keras.backend.clear_session()


def test_class_scores_beside_features_save_as_one_graph_not_as_two_models(tmp_path):
    classifier = kres.build_model("cifar_resnet20", depths=(1, 1, 1), classes=3,
                                  input_shape=(16, 16, 3))
    backbone = kres.feature_extractor(classifier, stages=["C1", "C2"])
    x = np.random.default_rng(3).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    # The documented way (docs/backbones.md, "Saving"): one model of the classifier's graph.
    both = keras.Model(classifier.input, {"classes": classifier.output, **backbone.output})
    inputs = keras.Input((16, 16, 3))
    out = both(inputs)
    head = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(out["C2"]))
    model = keras.Model(inputs, {"classes": out["classes"], "head": head})
    model.save(tmp_path / "one.keras")
    loaded = keras.saving.load_model(tmp_path / "one.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0)["classes"],
                               classifier.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    # Both nested apart: Keras saves the file but cannot load it (as the docs warn);
    # if a Keras release loads it, the warning can go.
    two = keras.Model(inputs, [classifier(inputs), backbone(inputs)["C2"]])
    two.save(tmp_path / "two.keras")
    with pytest.raises(ValueError, match="could not be loaded"):
        keras.saving.load_model(tmp_path / "two.keras")
    keras.backend.clear_session()


def test_a_saved_classifier_of_another_name_becomes_a_backbone(tmp_path):
    # As a detector's author does with a model kres trained: pixels in, renamed, saved,
    # loaded elsewhere. The stage layers are read back from the loaded layers, here in
    # keras.applications' V2 layout, where the last block of a stage downsamples (a
    # one-block stage 3 is all at stride 16, so C3 is stage 2's last unstrided block).
    from kres.models.inputs import image_input
    from kres.preprocessing import Preprocessing

    prep = Preprocessing(64, 64, 3, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    model = kres.build_model("resnet50v2", depths=(2, 1, 2, 1), widths=(8, 8, 16, 16),
                             classes=3, input_tensor=image_input(prep), name="my_classifier")
    model.save(tmp_path / "mine.keras")
    loaded = kres.load_model(str(tmp_path / "mine.keras"))
    extractor = kres.feature_extractor(loaded)
    expected = {"C2": "conv2_block1_out", "C3": "conv2_block2_out", "C4": "conv4_block1_out",
                "C5": "post_relu"}
    assert {s: t.layer for s, t in backbones.stage_layers(loaded).items() if s != "C1"} == \
        expected
    assert registry.FAMILIES["resnet"].stage_outputs(
        registry.resolve_spec("resnet50v2", depths=(2, 1, 2, 1), widths=(8, 8, 16, 16))) == \
        {"C1": "conv1_conv", **expected}
    import warnings

    with warnings.catch_warnings():
        # A model on a kres input takes one array as it is (no "structure of `inputs`
        # doesn't match" warning: its input is no list of one), loaded or not.
        warnings.simplefilter("error")
        features = extractor(np.zeros((1, 64, 64, 3), "float32"))
        assert loaded(np.zeros((1, 64, 64, 3), "float32")).shape == (1, 3)
    assert {s: tuple(f.shape[1:3]) for s, f in features.items()} == {
        "C2": (16, 16), "C3": (8, 8), "C4": (4, 4), "C5": (2, 2)}
    keras.backend.clear_session()


def test_frozen_batch_norm_stays_frozen_through_two_phase_fine_tuning():
    # The detectors' recipe: the backbone frozen while the heads train, then all of it.
    backbone, detector = _detector(freeze_batch_norm=True)
    rng = np.random.default_rng(3)
    x = rng.normal(1.0, 2.0, (8, 64, 64, 3)).astype("float32")
    y = rng.integers(0, 3, (8, 4, 4))
    bn = [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    before = [w.numpy().copy() for layer in bn for w in layer.weights]
    kernel = backbone.get_layer("conv1_conv").kernel
    kernel_before = kernel.numpy().copy()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for trainable in (False, True):
        backbone.trainable = trainable
        detector.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
        detector.fit(x, y, batch_size=4, epochs=1, verbose=0)
    # The second phase trained the backbone's convolutions, and no batch-norm variable
    # (moving mean and variance, scale, offset) of it.
    assert not np.array_equal(kernel.numpy(), kernel_before)
    after = [w.numpy() for layer in bn for w in layer.weights]
    assert len(bn) == 12 and all(np.array_equal(a, b) for a, b in zip(before, after))
    assert all(layer.trainable is False for layer in bn)
    keras.backend.clear_session()


def test_freezing_refuses_keras_own_batch_norm():
    model = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3),
                                        include_top=False)
    with pytest.raises(ValueError, match=r"freeze_batch_norm .* Keras's own \(conv1_bn"):
        kres.feature_extractor(model, "C5", freeze_batch_norm=True)
    keras.backend.clear_session()


def test_timm_weights_give_the_classifiers_features(tmp_path):
    state = random_state(TorchArch("basic"), seed=7)  # ResNet-18, one block per stage
    path = str(write_safetensors(tmp_path / "resnet18.safetensors", state))
    extractor = kres.feature_extractor("resnet18", weights=path, depths=(1, 1, 1, 1))
    np.testing.assert_array_equal(extractor.get_layer("conv1_conv").kernel.numpy(),
                                  state["conv1.weight"].transpose(2, 3, 1, 0))
    classifier = kres.build_model("resnet18", weights=path, depths=(1, 1, 1, 1), classes=5,
                                  input_shape=(64, 96, 3))
    names = [f"conv{k}_block1_out" for k in (2, 3, 4, 5)]
    inner = keras.Model(classifier.input, [classifier.get_layer(n).output for n in names])
    x = np.random.default_rng(8).normal(size=(2, 64, 96, 3)).astype("float32")
    for got, expected in zip(extractor(x).values(), inner(x)):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    keras.backend.clear_session()


def test_mixed_precision_outputs_keep_the_layers_dtype():
    extractor = kres.feature_extractor("cifar_resnet20", ("C0", "C2"), depths=(1, 1, 1),
                                       dtype="mixed_bfloat16")
    assert [t.dtype for t in extractor.outputs] == ["bfloat16", "bfloat16"]
    assert keras.config.dtype_policy().name == "float32"


@pytest.fixture
def no_building(monkeypatch):
    def build_model(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(registry, "build_model", build_model)


@pytest.mark.parametrize("name, kwargs, message", [
    ("resnet18", {"stages": ("C2", "P3")}, r"stages must be one or more distinct stage names "
     r"'C<k>'.*Received: stages=\('C2', 'P3'\)"),
    ("resnet18", {"stages": ()}, r"stage names.*Received: stages=\(\)"),
    ("resnet18", {"stages": ["C3", "C3"]}, r"distinct.*Received: stages=\['C3', 'C3'\]"),
    ("resnet18", {"stages": ("C6",)}, r"stages must be stages that 'resnet18' has: C1, C2, "
     r"C3, C4, C5 \(it downsamples by 32 at most\); C6 is not among them.*"
     r"Received: stages=\('C6',\)"),
    ("cifar_resnet20", {}, r"'cifar_resnet20' has: C0, C1, C2 \(it downsamples by 4 at most\); "
     r"C3, C4, C5 are not.*Received: stages=\('C2', 'C3', 'C4', 'C5'\)"),
    ("vgg11", {"stages": "C6", "depths": (1, 1, 1, 1), "widths": (8, 8, 8, 8)},
     r"'vgg11' has: C0, C1, C2, C3, C4 \(it downsamples by 16 at most\);"),
    ("alexnet", {}, r"does not support alexnet: .*55, 27, 13 and 6.*It supports densenet: .*"
     r"googlenet: .*resnet: .*vgg: .*Received: model_or_name='alexnet'"),
    ("resnet18", {"freeze_batch_norm": "yes"}, r"freeze_batch_norm .*"
     r"Received: freeze_batch_norm='yes'"),
    ("resnet18", {"include_top": True}, r"include_top is not an argument of "
     r"feature_extractor.*Received: include_top=True"),
    ("resnet18", {"pooling": "avg"}, r"Received: pooling='avg'"),
    ("resnet18", {"weights": "imagenet"}, r"No published ImageNet weights for 'resnet18'"),
    ("resnet18", {"cardinality": 0}, r"cardinality"),
    ("resnet_18", {}, r"Unknown model name. Did you mean 'resnet18'"),
])
def test_refusals_before_any_model_is_built(no_building, name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        kres.feature_extractor(name, **kwargs)


def test_refusals_of_models():
    alexnet = kres.build_model("alexnet", include_top=False, input_shape=(63, 63, 3))
    with pytest.raises(ValueError, match=r"does not support alexnet.*"
                                         r"Received: model_or_name='alexnet'"):
        kres.feature_extractor(alexnet)
    image = keras.Input((8, 8, 3))
    other = keras.Model(image, keras.layers.Conv2D(2, 3, name="stem")(image), name="mine")
    with pytest.raises(ValueError, match=r"must be a kres model of a family with stage "
                                         r"outputs.*Received: model_or_name='mine'"):
        kres.feature_extractor(other)
    with pytest.raises(ValueError, match=r"Keyword arguments build a model from a registry "
                                         r"name.*Received: model_or_name='alexnet' with "
                                         r"weights=None"):
        kres.feature_extractor(alexnet, weights=None)
    with pytest.raises(ValueError, match=r"Received: model_or_name=3"):
        kres.feature_extractor(3)


def test_public_and_documented():
    assert kres.feature_extractor is backbones.feature_extractor
    assert "feature_extractor" in kres.__all__ and "feature_extractor" in dir(kres)
    for function in (backbones.feature_extractor, backbones.stage_layers):
        assert all(part in function.__doc__ for part in ("Args:", "Returns:", "Raises:",
                                                         "Example:"))


def test_fpn_example_trains_and_saves(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "fpn_backbone", os.path.join(ROOT, "examples", "fpn_backbone.py"))
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = tmp_path / "segmenter.keras"
    result = example.main(["--smoke", "--out", str(out)])
    assert result["after"]["loss"] < 0.8 * result["before"]["loss"]
    printed = capsys.readouterr().out
    assert "before: loss" in printed and "after:  loss" in printed
    # The segmenter, backbone included, saved and loaded back in safe mode.
    assert out.is_file() and result["reload_difference"] <= 1e-4
    assert f"saved {out}" in printed
    keras.backend.clear_session()
