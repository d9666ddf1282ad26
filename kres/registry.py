"""The registry of named models: list, look up, build.

Each family module in `kres.models` contributes a `SPECS` table and a builder;
this module merges them. Keyword arguments of `build_model` that are spec
fields override the row; the others go to the builder.
"""

import dataclasses
import fnmatch

from kres import weights as kweights
from kres.errors import did_you_mean
from kres.models import alexnet, densenet, googlenet, resnet, vgg

_FAMILIES = (
    (resnet.SPECS, resnet.build_resnet),
    (densenet.SPECS, densenet.build_densenet),
    (vgg.SPECS, vgg.build_vgg),
    (googlenet.SPECS, googlenet.build_googlenet),
    (alexnet.SPECS, alexnet.build_alexnet),
)
_MODELS = {name: (spec, build) for specs, build in _FAMILIES for name, spec in specs.items()}
BUILD_ARGS = ("include_top", "weights", "input_tensor", "input_shape", "pooling", "classes",
              "classifier_activation", "name")


def list_models(pattern="*"):
    """Names of the registered models, sorted.

    Args:
        pattern: a shell-style filter such as ``"resnext*"``.

    Returns:
        A list of registry names.

    Example:

    >>> kres.list_models("resnext101*")
    ['resnext101_32x4d', 'resnext101_32x8d', 'resnext101_64x4d']
    """
    return sorted(n for n in _MODELS if fnmatch.fnmatchcase(n, pattern))


def get_spec(name):
    """The spec (a frozen dataclass) of a registered model.

    Raises:
        ValueError: for an unknown name, suggesting the closest ones.

    Example:

    >>> kres.get_spec("resnext50_32x4d").cardinality
    32
    """
    return _lookup(name)[0]


def build_model(name, /, **kwargs):
    """Builds a registered model, optionally changing fields of its spec.

    Args:
        name: a registry name (see `list_models`).
        **kwargs: constructor arguments (`include_top`, `weights`,
            `input_tensor`, `input_shape`, `pooling`, `classes`,
            `classifier_activation`, `name`) and spec fields to override
            (`depths`, `cardinality`, `width_per_group`, `se_ratio`,
            `drop_path_rate`, ...).

    Returns:
        A Functional `keras.Model` named `name` unless `name` is given.

    Raises:
        ValueError: for an unknown model name or keyword, or an invalid value.

    Example:

    >>> model = kres.build_model("cifar_resnet20", depths=(5, 5, 5))  # ResNet-32
    >>> kres.count_params(model)
    464154
    """
    build_args = {k: v for k, v in kwargs.items() if k in BUILD_ARGS}
    overrides = {k: v for k, v in kwargs.items() if k not in BUILD_ARGS}
    imagenet = isinstance(build_args.get("weights"), str) and build_args["weights"] == "imagenet"
    if imagenet:
        spec = get_spec(name)  # unknown names fail first
        overrides = kweights.imagenet_overrides(
            name, overrides, include_top=build_args.get("include_top", True),
            classes=build_args.get("classes") or spec.default_classes)
        build_args["weights"] = None
    spec = resolve_spec(name, **overrides)
    build_args["name"] = build_args.get("name") or name
    model = _lookup(name)[1](spec, **build_args)
    if imagenet:
        include_top = build_args.get("include_top", True)
        kweights.load_keras_weights(model, kweights.fetch_keras_weights(name, include_top))
    return model


def resolve_spec(name, /, **overrides):
    """The spec of a registered model with some fields replaced, validated.

    Raises:
        ValueError: for an unknown model or field, or an invalid value.

    Example:

    >>> kres.registry.resolve_spec("resnet50", cardinality=32, width_per_group=4).cardinality
    32
    """
    spec = _lookup(name)[0]
    fields = {f.name for f in dataclasses.fields(spec)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        hint = did_you_mean(unknown[0], sorted(fields | set(BUILD_ARGS)), cutoff=0.6)
        raise ValueError(
            f"Unknown argument {unknown[0]!r} for model {name!r}.{hint} Spec fields: "
            f"{', '.join(sorted(fields))}. Received: {unknown[0]}={overrides[unknown[0]]!r}"
        )
    return dataclasses.replace(spec, **overrides) if overrides else spec


def _lookup(name):
    if name not in _MODELS:
        raise ValueError(
            f"Unknown model name.{did_you_mean(name, _MODELS)} See kres.list_models() for all "
            f"{len(_MODELS)}. Received: name={name!r}"
        )
    return _MODELS[name]


def constructor(model_name, public_name):
    """Makes a keras.applications-style constructor for a registered model."""
    spec = get_spec(model_name)

    def build(include_top=True, weights=None, input_tensor=None, input_shape=None,
              pooling=None, classes=spec.default_classes, classifier_activation="softmax",
              name=model_name, **overrides):
        return build_model(model_name, include_top=include_top, weights=weights,
                           input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
                           classes=classes, classifier_activation=classifier_activation,
                           name=name, **overrides)

    if model_name in kweights.KERAS_WEIGHTS:
        layout = dict(kweights.KERAS_WEIGHTS[model_name].layout)
        published = "this model"
        layout = f", {', '.join(f'{k}={v!r}' for k, v in layout.items())}" if layout else ""
    else:
        published = f"{', '.join(kweights.KERAS_WEIGHTS)} only"
        layout = ""
    build.__name__ = build.__qualname__ = public_name
    build.__doc__ = f"""Instantiates `{model_name}`: {spec.describe()}.

    Args:
        include_top: whether to add the global pooling and the ``predictions``
            classifier.
        weights: ``None`` (random initialisation), ``"imagenet"`` (the
            weights keras.applications publishes, for {published}; the model
            is then built in Keras's layout{layout}), or the path of a weights
            file: ``.weights.h5`` saved from the same architecture, a
            keras.applications ``.h5``, or a timm ``.safetensors``.
        input_tensor: optional Keras tensor to use as the model's input.
        input_shape: ``(height, width, channels)``, default
            ``({spec.default_size}, {spec.default_size}, 3)``; height and width
            may be ``None``.
        pooling: ``None``, ``"avg"`` or ``"max"``: global pooling of the
            features (before the classifier when `include_top`).
        classes: number of classes (default {spec.default_classes}).
        classifier_activation: activation of the classifier; ``None`` for logits.
        name: the model's name.
        **overrides: spec fields to change, e.g. ``drop_path_rate=0.1`` (see
            `kres.get_spec("{model_name}")`).

    Returns:
        A Functional `keras.Model`.

    Raises:
        ValueError: for an invalid argument, naming it and the value received.

    Example:

    >>> model = kres.{public_name}(classes=10, input_shape=(64, 64, 3))
    """
    return build
