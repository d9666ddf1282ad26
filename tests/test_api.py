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
    assert done.stdout.split() == ["kres.layers.batch_norm", "(None,", "3)"]


def test_generated_constructors_and_catalog_match_the_registry():
    # The counts of each row are checked against the built model in test_models.
    from kres.models import catalog, registry

    with open(os.path.join(os.path.dirname(kres.__file__), "models", "constructors.py")) as f:
        assert f.read() == registry.constructors_source(), "run python -m kres.models.registry"
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
    from kres.models.saving import deep_graphs

    before = sys.getrecursionlimit()
    with pytest.raises(RuntimeError, match="inside"), deep_graphs():
        assert sys.getrecursionlimit() >= 20_000
        raise RuntimeError("inside")
    assert sys.getrecursionlimit() == before
    kres.build_model("cifar_resnet20", depths=(1, 1, 1))
    assert sys.getrecursionlimit() == before


# The parts of kres and what each may import: itself and the parts named here, through
# every import, at a module's top or inside a function (a lazy import is a load all the
# same). Data flows one way: models -> data + training -> tuning; serving needs models.
PARTS = {
    "leaves": {"kres.checks", "kres.version", "kres.lazy_names", "kres.native_output",
               "kres.preprocessing", "kres.rundir", "kres.losses", "kres.figures",
               "kres.backends"},
    "images": {"kres.images"}, "layers": {"kres.layers"}, "weights": {"kres.weights"},
    "models": {"kres.models"}, "data": {"kres.data"}, "training": {"kres.training"},
    "tuning": {"kres.tuning"}, "serving": {"kres.serving"}, "cli": {"kres.cli"},
}
MAY_IMPORT = {
    "leaves": set(),
    "images": {"leaves"},
    "layers": {"leaves"},
    "weights": {"leaves", "layers"},
    "models": {"leaves", "layers", "weights"},
    "data": {"leaves", "images"},
    "serving": {"leaves", "images", "layers", "models"},
    "training": {"leaves", "images", "layers", "weights", "models", "data"},
    "tuning": {"leaves", "images", "layers", "weights", "models", "data", "training"},
    "cli": set(PARTS),
}
# Imports that break the rules above and must stay, each with its reason (none today).
EXCEPTIONS = {}


def _part(module):
    for part, prefixes in PARTS.items():
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return part
    return None


def _kres_modules():
    root = os.path.dirname(kres.__file__)
    for folder, _, files in os.walk(root):
        for file in sorted(files):
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                name = "kres." + os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                yield name.removesuffix(".__init__").removesuffix(".kres"), path


def _imports(path, known):
    """Every kres module `path` imports, at its top or in a function."""
    import ast

    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("kres"))
        elif isinstance(node, ast.ImportFrom) and node.module and \
                node.module.startswith("kres"):
            for alias in node.names:  # `from kres.data import splits` imports a module
                child = f"{node.module}.{alias.name}"
                yield child if child in known else node.module


def test_every_import_goes_one_way_and_never_through_the_package_root():
    modules = dict(_kres_modules())
    modules["kres"] = modules.pop("kres", os.path.join(os.path.dirname(kres.__file__),
                                                      "__init__.py"))
    graph, broken = {}, []
    for module, path in modules.items():
        imports = set(_imports(path, modules))
        graph[module] = imports - {module}
        part = _part(module)
        for target in sorted(imports):
            assert target != "kres" or module == "kres", f"{module} imports the package root"
            if module == "kres" or part is None:
                continue  # the package root names everything, lazily
            other = _part(target)
            if other not in (part, *MAY_IMPORT[part]) and (module, target) not in EXCEPTIONS:
                broken.append(f"{module} ({part}) imports {target} ({other})")
    assert not broken, "\n".join(broken)
    assert all(_part(m) for m in modules if m != "kres"), "a module in no part"
    assert len(modules) > 60

    # No circle of imports between modules (a package's __init__ is its own module).
    state = {}

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                raise AssertionError(f"import circle: {' -> '.join([*path, target])}")
            if target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
