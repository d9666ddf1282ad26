"""The Keras user's view: constructors, plain Functional models, fit, saving."""

import inspect
import os
import subprocess
import sys

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
    kernels = {w.path: w.numpy().copy() for w in model.trainable_weights if len(w.shape) > 1}
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    # Plain model.fit trains it: two SGD steps, and every kernel moved.
    assert int(model.optimizer.iterations) == 2 and len(history.history["loss"]) == 2
    assert all(not np.array_equal(w.numpy(), kernels[w.path])
               for w in model.trainable_weights if w.path in kernels)


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


def test_import_kres_loads_neither_keras_nor_tensorflow():
    script = ("import sys, inspect, kres\n"
              "assert not {'keras', 'tensorflow'} & set(sys.modules), 'loaded too early'\n"
              "assert inspect.getsourcefile(kres.ResNeXt50).endswith('constructors.py')\n"
              "print(sorted(inspect.signature(kres.ResNeXt50).parameters))\n"
              "model = kres.ResNeXt50(classes=3, input_shape=(32, 32, 3), depths=(1, 1, 1, 1))\n"
              "print(model.output_shape)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    parameters, shape = done.stdout.splitlines()
    assert parameters == str(sorted(["include_top", "weights", "input_tensor", "input_shape",
                                     "pooling", "classes", "classifier_activation", "name",
                                     "overrides"]))
    assert shape == "(None, 3)"


KRES_THEN_KERAS = """
import sys
import kres, keras
model = keras.saving.load_model(sys.argv[1])
print(type(model.get_layer("conv1_bn")).__module__, model.output_shape)
"""


def test_keras_loads_a_kres_file_after_import_kres_keras(tmp_path):
    # A kres .keras file names kres's registered layers; Keras finds them once kres's
    # layers are registered, which `import kres` arranges for whenever Keras loads.
    # (Keras imported first: every other test, whose conftest imports Keras first.)
    path = str(tmp_path / "m.keras")
    kres.CifarResNet20(depths=(1, 1, 1), classes=3).save(path)
    done = subprocess.run([sys.executable, "-c", KRES_THEN_KERAS, path],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["kres.layers", "(None,", "3)"]


def test_generated_constructors_and_catalog_match_the_registry():
    # The counts of each row are checked against the built model in test_models.
    from kres import catalog, registry

    with open(os.path.join(os.path.dirname(kres.__file__), "constructors.py")) as f:
        assert f.read() == registry.constructors_source(), "run python -m kres.registry"
    assert sorted(catalog.MODELS) == kres.list_models()
    for name, entry in catalog.MODELS.items():
        registered = registry.lookup(name)
        spec = registered.spec
        assert (entry.constructor, entry.family, entry.default_size, entry.default_classes,
                entry.description) == (registered.constructor, registered.family,
                                       spec.default_size, spec.default_classes, spec.describe())
        constructor = getattr(kres, entry.constructor)
        assert inspect.signature(constructor).parameters["classes"].default == \
            spec.default_classes


@pytest.mark.parametrize("name", ["train", "evaluate", "tune", "export", "load_model",
                                  "build_model", "flip_averaged"])
def test_top_level_functions_are_documented(name):
    function = getattr(kres, name)
    assert callable(function) and name in dir(kres) and name in kres.__all__
    assert "Example:" in function.__doc__ and "Args:" in function.__doc__


def test_dtype_is_an_argument_and_the_global_policy_stays():
    before = keras.config.dtype_policy().name
    model = kres.CifarResNet20(depths=(1, 1, 1), dtype="mixed_float16")
    assert model.get_layer("conv1_conv").compute_dtype == "float16"
    assert model.get_layer("predictions").dtype_policy.name == "float32"
    assert keras.config.dtype_policy().name == before
    with pytest.raises(ValueError, match=r"dtype must be a Keras dtype policy.*dtype='fp8'"):
        kres.CifarResNet20(dtype="fp8")
    assert keras.config.dtype_policy().name == before
    loaded = kres.load_model(_saved(model))
    assert loaded.get_layer("conv1_conv").compute_dtype == "float16"


def _saved(model):
    import tempfile

    path = os.path.join(tempfile.mkdtemp(), "m.keras")
    model.save(path)
    return path


def test_deep_graphs_restores_the_recursion_limit():
    from kres.models.base import deep_graphs

    before = sys.getrecursionlimit()
    with pytest.raises(RuntimeError, match="inside"), deep_graphs():
        assert sys.getrecursionlimit() >= 20_000
        raise RuntimeError("inside")
    assert sys.getrecursionlimit() == before
    kres.build_model("cifar_resnet20", depths=(1, 1, 1))
    assert sys.getrecursionlimit() == before


# The one-way flow spec -> model -> data + fit -> tune -> export: what each module
# may import from kres at its top level (imports inside functions are not loads).
LOWER_LAYERS_NEVER_IMPORT = {
    "kres.layers": {"kres.blocks", "kres.models", "kres.registry", "kres.training"},
    "kres.blocks": {"kres.models", "kres.registry", "kres.datasets", "kres.training"},
    "kres.models": {"kres.registry", "kres.datasets", "kres.augment", "kres.training",
                    "kres.tuning", "kres.serving"},
    "kres.datasets": {"kres.training", "kres.tuning", "kres.serving", "kres.recipes"},
    "kres.training": {"kres.tuning", "kres.spaces", "kres.serving"},
    "kres.serving": {"kres.training", "kres.recipes", "kres.fitting", "kres.tuning",
                     "kres.spaces", "kres.datasets", "kres.augment", "kres.offline"},
}


def _top_level_imports(path):
    import ast

    tree = ast.parse(open(path).read())
    for node in tree.body:
        if isinstance(node, ast.Import):
            yield from ((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield from ((node.module, alias.name) for alias in node.names)


def test_modules_import_downwards_and_never_the_package_root():
    root = os.path.dirname(kres.__file__)
    submodules = set(kres._SUBMODULES)
    checked = 0
    for folder, _, files in os.walk(root):
        for file in files:
            if not file.endswith(".py") or file == "__init__.py" and folder == root:
                continue
            path = os.path.join(folder, file)
            module = "kres." + os.path.relpath(path, root)[:-3].replace(os.sep, ".")
            module = module.removesuffix(".__init__")
            for imported, name in _top_level_imports(path):
                assert imported != "kres" or name in submodules, \
                    f"{module} imports {name} from the package root"
                target = f"{imported}.{name}" if imported == "kres" else imported
                for lower, forbidden in LOWER_LAYERS_NEVER_IMPORT.items():
                    if module == lower or module.startswith(lower + "."):
                        assert not any(target == f or target.startswith(f + ".")
                                       for f in forbidden), f"{module} imports {target}"
            checked += 1
    assert checked > 30
