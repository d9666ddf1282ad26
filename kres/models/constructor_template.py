"""What every generated constructor of `kres.models.constructors` shares: its body and docstring.

Keras is imported when a constructor is called, not before: the docstrings
and the published weights' layouts come from `kres.models.catalog`.
"""

from kres.models import catalog


def build(name, arguments):
    """Builds registered model `name` from a constructor's ``locals()``."""
    from kres.models.registry import build_model

    arguments = dict(arguments)
    overrides = arguments.pop("overrides")
    return build_model(name, **arguments, **overrides)


def docstring(name):
    """The docstring of the constructor of registered model `name`."""
    entry = catalog.MODELS[name]
    if entry.imagenet_layout is not None:
        published = "this model"
        layout = "".join(f", {k}={v!r}" for k, v in entry.imagenet_layout.items())
    else:
        with_weights = [n for n, e in catalog.MODELS.items() if e.imagenet_layout is not None]
        published = f"{', '.join(with_weights)} only"
        layout = ""
    size = entry.default_size
    return f"""Instantiates `{name}`: {entry.description}.

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
            ``({size}, {size}, 3)``; height and width may be ``None``.
        pooling: ``None``, ``"avg"`` or ``"max"``: global pooling of the
            features (before the classifier when `include_top`).
        classes: number of classes (default {entry.default_classes}).
        classifier_activation: activation of the classifier; ``None`` for logits.
        name: the model's name.
        **overrides: ``dtype`` (a Keras dtype policy for the layers, such as
            ``"mixed_bfloat16"``; the global policy is left as it is) and spec
            fields to change, e.g. ``drop_path_rate=0.1`` (see
            `kres.get_spec("{name}")`).

    Returns:
        A Functional `keras.Model` ({entry.params:,} trainable parameters and
        {entry.macs / 1e6:,.1f} million multiply-accumulates at the defaults).

    Raises:
        ValueError: for an invalid argument, naming it and the value received.

    Example:

    At the defaults, with the parameters counted above:

    >>> import kres
    >>> model = kres.{entry.constructor}()
    >>> model.output_shape, kres.count_params(model)
    ((None, {entry.default_classes}), {entry.params})
    """


def document(namespace, names):
    """Gives each constructor in `namespace` named in `names` its docstring."""
    registry_names = {entry.constructor: name for name, entry in catalog.MODELS.items()}
    for public in names:
        namespace[public].__doc__ = docstring(registry_names[public])
