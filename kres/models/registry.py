"""The registry of named models: list, look up, build.

Each module of `kres.models.families` declares its family (a
`kres.models.family.Family`: variants, builder, stage outputs, published
weights, state-dict loader); this module collects those it finds there
(`FAMILIES`) and merges their variants. Keyword arguments of `build_model`
that are spec fields override the row; the others go to the builder, except
``weights="imagenet"`` and a ``.safetensors`` file, which go through the
family's published weights and state-dict loader.

`kres.models.catalog` and `kres.models.constructors` are generated from this registry
(``python -m kres.models.registry``) so that the command line and ``import kres``
know the models without building them; the tests check that they agree.
"""

import dataclasses
import fnmatch
import importlib
import json
import os
import pkgutil
import sys
import textwrap

from kres import checks
from kres.models import families as _families_package
from kres.weights.files import check_weights
from kres.weights.keras_applications import load_keras_weights


@dataclasses.dataclass(frozen=True)
class Registered:
    """One registered model: its family, constructor name, spec and builder."""

    family: str
    constructor: str
    spec: object
    build: object


def _collect_families():
    """Every `Family` declared in `kres.models.families`, by name, in name order."""
    found = {}
    for module_info in sorted(pkgutil.iter_modules(_families_package.__path__),
                              key=lambda m: m.name):
        module = importlib.import_module(f"{_families_package.__name__}.{module_info.name}")
        family = getattr(module, "FAMILY", None)
        if family is not None:
            found[family.name] = family
    return found


FAMILIES = _collect_families()
_MODELS = {name: Registered(family.name, constructor, spec, family.build)
           for family in FAMILIES.values()
           for name, (constructor, spec) in family.variants.items()}
_PUBLISHED = {name: weights for family in FAMILIES.values()
              for name, weights in family.weights.items()}
BUILD_ARGS = ("include_top", "weights", "input_tensor", "input_shape", "pooling", "classes",
              "classifier_activation", "name", "dtype")


def list_models(pattern="*"):
    """Names of the registered models, sorted.

    Args:
        pattern: a shell-style filter such as ``"resnext*"``.

    Returns:
        A list of registry names.

    Example:

    >>> import kres
    >>> kres.list_models("resnext101*")
    ['resnext101_32x4d', 'resnext101_32x8d', 'resnext101_64x4d']
    """
    return sorted(n for n in _MODELS if fnmatch.fnmatchcase(n, pattern))


def get_spec(name):
    """The spec (a frozen dataclass) of a registered model.

    Raises:
        ValueError: for an unknown name, suggesting the closest ones.

    Example:

    >>> import kres
    >>> kres.get_spec("resnext50_32x4d").cardinality
    32
    """
    return lookup(name).spec


def build_model(name, /, **kwargs):
    """Builds a registered model, optionally changing fields of its spec.

    Args:
        name: a registry name (see `list_models`).
        **kwargs: constructor arguments (`include_top`, `weights`,
            `input_tensor`, `input_shape`, `pooling`, `classes`,
            `classifier_activation`, `name`, `dtype`) and spec fields to
            override (`depths`, `cardinality`, `width_per_group`,
            `se_ratio`, `drop_path_rate`, ...).

    Returns:
        A Functional `keras.Model` named `name` unless `name` is given.

    Raises:
        ValueError: for an unknown model name or keyword, or an invalid value.

    Example:

    >>> import kres
    >>> model = kres.build_model("cifar_resnet20", depths=(5, 5, 5))  # ResNet-32
    >>> kres.count_params(model)
    464154
    """
    build_args = {k: v for k, v in kwargs.items() if k in BUILD_ARGS}
    overrides = {k: v for k, v in kwargs.items() if k not in BUILD_ARGS}
    state_dict = _state_dict_loader(name, build_args.get("weights"))
    if state_dict:
        state_dict_path, build_args["weights"] = build_args["weights"], None
    imagenet = isinstance(build_args.get("weights"), str) and build_args["weights"] == "imagenet"
    if imagenet:
        spec = get_spec(name)  # unknown names fail first
        overrides = published_weights(name).overrides(
            name, overrides, include_top=build_args.get("include_top", True),
            classes=build_args.get("classes") or spec.default_classes)
        build_args["weights"] = None
    spec = resolve_spec(name, **overrides)
    build_args["name"] = build_args.get("name") or name
    model = lookup(name).build(spec, **build_args)
    if imagenet:
        include_top = build_args.get("include_top", True)
        load_keras_weights(model, published_weights(name).fetch(include_top))
    if state_dict:
        state_dict(model, state_dict_path)
    return model


def _state_dict_loader(name, weights):
    """The family's loader of a timm/torchvision state dict (``.safetensors``) given as
    `weights`, or ``None`` for other weights; a family that declares no loader is
    refused before anything is built."""
    if not (isinstance(weights, str | os.PathLike) and os.fspath(weights).endswith(".safetensors")):
        return None
    family = FAMILIES[lookup(name).family]
    if family.state_dict_loader is None:
        takers = [f.name for f in FAMILIES.values() if f.state_dict_loader]
        raise ValueError(
            f"{name!r} is a {family.name} network; timm/torchvision state dicts "
            f"(.safetensors) load into the {', '.join(takers)} family only. "
            f"Received: weights={weights!r}")
    check_weights(weights)
    return family.state_dict_loader


def resolve_spec(name, /, **overrides):
    """The spec of a registered model with some fields replaced, validated.

    Raises:
        ValueError: for an unknown model or field, or an invalid value.

    Example:

    >>> from kres.models.registry import resolve_spec
    >>> spec = resolve_spec("resnet50", cardinality=32, width_per_group=4)  # ResNeXt-50
    >>> spec.cardinality, spec.width_per_group
    (32, 4)
    """
    spec = lookup(name).spec
    fields = {f.name for f in dataclasses.fields(spec)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        hint = checks.did_you_mean(unknown[0], sorted(fields | set(BUILD_ARGS)), cutoff=0.6)
        raise ValueError(
            f"Unknown argument {unknown[0]!r} for model {name!r}.{hint} Spec fields: "
            f"{', '.join(sorted(fields))}. Received: {unknown[0]}={overrides[unknown[0]]!r}"
        )
    return dataclasses.replace(spec, **overrides) if overrides else spec


def published_weights(name=None):
    """The published ImageNet weights of a registered model, or of all of them.

    Args:
        name: a registry name, or ``None`` for every model that has them.

    Returns:
        A `kres.weights.keras_applications.PublishedWeights` (address,
        hash, preprocessing, layout, accuracy), or with no name a dict from
        registry name to those.

    Raises:
        ValueError: for a model without published weights, naming those
            that have them.

    Example:

    >>> import kres
    >>> kres.published_weights("resnet50v2").mode
    'tf'
    >>> sorted(kres.published_weights())[:3]
    ['densenet121', 'densenet169', 'densenet201']
    """
    if name is None:
        return dict(_PUBLISHED)
    if name not in _PUBLISHED:
        lookup(name)  # an unknown name says so first
        raise ValueError(
            f"No published ImageNet weights for {name!r}; weights='imagenet' is available for "
            f"{', '.join(_PUBLISHED)}. Pass weights=None, a weights file, or load "
            f"timm weights with kres.load_timm_weights. Received: weights='imagenet' for "
            f"{name!r}"
        )
    return _PUBLISHED[name]


def preprocess_input(x, model):
    """Preprocesses RGB images (0-255) for a model with published ImageNet weights.

    The same transformation as keras.applications' `preprocess_input` of the
    matching module: ``"caffe"`` for the v1 ResNets and VGG, ``"tf"`` for
    the v2 ResNets, ``"torch"`` for DenseNet (`published_weights` says
    which).

    Args:
        x: images, channels last, values 0-255 (NumPy array or tensor).
        model: a registry name (``"resnet50"``) or a model of that name.

    Returns:
        The preprocessed images (float32).

    Raises:
        ValueError: for a model without published weights.

    Example:

    >>> import numpy as np
    >>> import kres
    >>> float(kres.preprocess_input(np.full((1, 2, 2, 3), 255.0), "resnet50v2").max())
    1.0
    """
    name = model if isinstance(model, str) else getattr(model, "name", None)
    if name not in _PUBLISHED:
        raise ValueError(
            f"preprocess_input follows the preprocessing of the published ImageNet weights, "
            f"which exist for {', '.join(_PUBLISHED)}. Received: model={name!r}"
        )
    return _PUBLISHED[name].preprocess(x)


def lookup(name):
    """The `Registered` entry of a model name.

    Raises:
        ValueError: for an unknown name, suggesting the closest ones.
    """
    if name not in _MODELS:
        raise ValueError(
            f"Unknown model name.{checks.did_you_mean(name, _MODELS)} See kres.list_models() "
            f"for all {len(_MODELS)}. Received: name={name!r}"
        )
    return _MODELS[name]


# --- The generated files ------------------------------------------------------------

def catalog_source():
    """The text of ``kres/models/catalog.py``: every model's row, counted from the built model."""
    from kres.models import counting as stats

    lines = ['"""Every registered model at a glance, without building any (generated).',
             "",
             "``python -m kres.models.registry`` writes this file from the registry; the tests",
             "check each row against the model it describes. Counts are at the default",
             "input size with the default classes, as `kres.count_params` and",
             "`kres.count_macs` give them. ``imagenet_layout``: the spec fields of the",
             "published ImageNet weights' layout (``None``: no published weights).",
             '"""',
             "",
             "from collections import namedtuple",
             "",
             'Entry = namedtuple("Entry", "constructor family default_size default_classes "',
             '                   "params macs description imagenet_layout")',
             "",
             "MODELS = {"]
    for name in list_models():
        entry = _MODELS[name]
        model = build_model(name)
        row = (entry.constructor, entry.family, entry.spec.default_size,
               entry.spec.default_classes, stats.count_params(model), stats.count_macs(model),
               entry.spec.describe())
        layout = dict(_PUBLISHED[name].layout) if name in _PUBLISHED else None
        lines.append(f'    "{name}": Entry(')
        lines.append(f"        {', '.join(json.dumps(v) for v in row[:-1])},")
        lines.append(f"        {json.dumps(row[-1])},")
        lines.append(f"        {layout!r}),")
        del model
        import keras

        keras.backend.clear_session()
    lines += ["}", ""]
    return "\n".join(lines)


def constructors_source():
    """The text of ``kres/models/constructors.py``: one explicit function per model."""
    lines = ['"""The keras.applications-style constructors, one per registered model (generated).',
             "",
             "``python -m kres.models.registry`` writes this file from the registry; the",
             "tests check that it matches. Importing it imports neither Keras nor TensorFlow:",
             "each function builds its model through `kres.build_model` when called.",
             '"""',
             "",
             "from kres.models.constructor_template import build, document",
             "",
             "__all__ = [",
             *textwrap.wrap(", ".join(f'"{e.constructor}"' for e in
                                      sorted(_MODELS.values(), key=lambda e: e.constructor)),
                            96, initial_indent="    ", subsequent_indent="    "),
             "]",
             ""]
    for name in list_models():
        entry = _MODELS[name]
        indent = " " * (len(entry.constructor) + 5)
        lines += ["",
                  f"def {entry.constructor}(include_top=True, weights=None, input_tensor=None, "
                  "input_shape=None,",
                  f"{indent}pooling=None, classes={entry.spec.default_classes}, "
                  'classifier_activation="softmax",',
                  f'{indent}name="{name}", **overrides):',
                  f'    return build("{name}", locals())',
                  ""]
    lines += ["", "document(globals(), __all__)", ""]
    return "\n".join(lines)


def main(argv=None):
    """``python -m kres.models.registry [--check]``: write (or check) the generated files."""
    argv = sys.argv[1:] if argv is None else argv
    folder = os.path.dirname(os.path.abspath(__file__))
    files = {"constructors.py": constructors_source(), "catalog.py": catalog_source()}
    stale = []
    for filename, text in files.items():
        path = os.path.join(folder, filename)
        current = open(path).read() if os.path.isfile(path) else None
        if current != text:
            stale.append(filename)
            if "--check" not in argv:
                with open(path, "w") as f:
                    f.write(text)
    verb = "out of date" if "--check" in argv else "rewritten"
    print(f"{', '.join(stale)} {verb}" if stale else "generated files up to date")
    return 1 if stale and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main())
