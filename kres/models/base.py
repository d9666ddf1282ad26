"""What every family's builder shares: argument checks, the input, the weights.

Each builder takes the keras.applications arguments (`include_top`,
`weights`, `input_tensor`, `input_shape`, `pooling`, `classes`,
`classifier_activation`, `name`); this module validates them the same way for
all families and finishes the model.
"""

import contextlib
import os
import re
import sys

import keras

POOLINGS = (None, "avg", "max")


def is_int(value):
    """Whether `value` is an integer (and not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_positive_int(field, value):
    """Raises a ValueError naming `field` unless `value` is a positive integer."""
    if not is_int(value) or value < 1:
        raise ValueError(f"{field} must be a positive integer. Received: {field}={value!r}")


def check_choice(field, value, allowed):
    """Raises a ValueError naming `field` unless `value` is one of `allowed`."""
    if value not in allowed:
        raise ValueError(f"{field} must be one of {allowed}. Received: {field}={value!r}")


def check_int_tuple(field, value, minimum=1):
    """Raises a ValueError naming `field` unless `value` is a non-empty tuple of
    integers of at least `minimum`."""
    if (not isinstance(value, tuple) or not value
            or not all(is_int(v) and v >= minimum for v in value)):
        kind = "positive integers" if minimum == 1 else f"integers >= {minimum}"
        raise ValueError(
            f"{field} must be a non-empty tuple of {kind}. Received: {field}={value!r}")


def check_rate(field, value):
    """Raises a ValueError naming `field` unless `value` is a rate in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise ValueError(f"{field} must be in [0, 1). Received: {field}={value!r}")


def check_head_args(*, include_top, pooling, classes, weights):
    """Validates the head and weights arguments of a constructor.

    Raises:
        ValueError: naming the argument and the value received.
    """
    if not isinstance(include_top, bool):
        raise ValueError(
            f"include_top must be True or False. Received: include_top={include_top!r}"
        )
    if pooling not in POOLINGS:
        raise ValueError(
            f"pooling must be None, 'avg' or 'max'"
            f"{' (the global pooling that feeds the classifier)' if include_top else ''}. "
            f"Received: pooling={pooling!r}"
        )
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"classes must be a positive integer. Received: classes={classes!r}")
    if weights is None:
        return
    if weights == "imagenet":
        raise ValueError(
            "weights='imagenet' is resolved by kres.build_model and the constructors "
            "(kres.ResNet50(weights='imagenet')), not by the family builders. "
            "Received: weights='imagenet'"
        )
    if not isinstance(weights, str | os.PathLike) or not os.path.isfile(weights):
        raise ValueError(
            "weights must be None or the path of an existing weights file. "
            f"Received: weights={weights!r}"
        )


def start(spec, spec_type, *, include_top, weights, input_tensor, input_shape, pooling,
          classes):
    """What every builder does first: check its arguments and make the input.

    Args:
        spec: the builder's spec.
        spec_type: the spec class the builder takes.
        include_top, weights, input_tensor, input_shape, pooling, classes:
            the constructor arguments (`classes` ``None``: the spec's default).

    Returns:
        ``(classes, image_input, model_inputs)``.

    Raises:
        ValueError: for a spec of another type or an invalid argument.
    """
    if not isinstance(spec, spec_type):
        raise ValueError(f"spec must be a {spec_type.__name__}. Received: spec={spec!r}")
    classes = spec.default_classes if classes is None else classes
    check_head_args(include_top=include_top, pooling=pooling, classes=classes, weights=weights)
    image, inputs = make_input(input_tensor=input_tensor, input_shape=input_shape,
                               default_size=spec.default_size, min_size=spec.min_size)
    return classes, image, inputs


def make_input(*, input_tensor, input_shape, default_size, min_size):
    """Returns ``(image_input, model_inputs)`` for a constructor.

    `input_shape` defaults to ``(default_size, default_size, 3)``; spatial
    sizes may be ``None`` (any size), but a known size must be at least
    `min_size`, the network's total downsampling factor.

    Raises:
        ValueError: for an input shape that is not ``(height, width,
            channels)``, has no channel count, or is smaller than `min_size`.
    """
    if keras.config.image_data_format() != "channels_last":
        raise ValueError(
            "kres models are channels-last. Received: keras.config.image_data_format()="
            f"{keras.config.image_data_format()!r}"
        )
    if input_tensor is not None and input_shape is None:
        input_shape = tuple(input_tensor.shape[1:])
    if input_shape is None:
        input_shape = (default_size, default_size, 3)
    try:
        input_shape = tuple(input_shape)
    except TypeError:
        input_shape = None
    if input_shape is None or len(input_shape) != 3:
        raise ValueError(
            "input_shape must be (height, width, channels). Received: "
            f"input_shape={input_shape!r}"
        )
    *spatial, channels = input_shape
    if not isinstance(channels, int) or channels < 1:
        raise ValueError(
            "input_shape must give a positive number of channels (the classifier head and "
            f"the first convolution need it). Received: input_shape={input_shape}"
        )
    for size in spatial:
        if size is not None and (not isinstance(size, int) or size < min_size):
            raise ValueError(
                f"input_shape is too small for this network: height and width must be at "
                f"least {min_size} (or None). "
                f"Received: input_shape={input_shape}"
            )
    if input_tensor is None:
        image = keras.Input(shape=input_shape, name="image")
        return image, image
    if keras.backend.is_keras_tensor(input_tensor):
        image = input_tensor
    else:
        image = keras.Input(tensor=input_tensor, shape=input_shape)
    return image, keras.utils.get_source_inputs(image)


def finish_model(inputs, outputs, *, name, weights):
    """Wraps the graph in a `keras.Model` and loads `weights` if given.

    Keras loads a ``.weights.h5`` file by position and accepts a file that
    holds more variables than the model; kres refuses that, so a file from
    another architecture is never half-loaded silently.

    Raises:
        ValueError: if the weights file does not match the architecture.
    """
    with deep_graphs():
        model = keras.Model(inputs, outputs, name=name)
    if weights is not None:
        load_weights_file(model, weights)
    return model


def load_weights_file(model, path):
    """Loads a weights file of any kind kres reads, chosen by its name.

    ``*.safetensors``: a timm/torchvision state dict (`kres.load_timm_weights`);
    ``*.h5`` other than ``*.weights.h5``: a keras.applications file
    (`kres.load_keras_weights`); anything else: a Keras weights file
    (`load_weights_strict`).

    Raises:
        ValueError: if the file does not match the model.
    """
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        from kres.timm import load_timm_weights

        load_timm_weights(model, path)
    elif path.endswith(".h5") and not path.endswith(".weights.h5"):
        from kres.weights import load_keras_weights

        load_keras_weights(model, path)
    else:
        load_weights_strict(model, path)


@contextlib.contextmanager
def deep_graphs(limit=20_000):
    """Lets Keras walk graphs thousands of layers deep (ResNet-1202).

    Keras maps a Functional graph recursively, one Python frame per layer, so
    the default recursion limit of 1000 stops it near 1000 layers deep. Also
    needed around `keras.Model.from_config` and `keras.saving.load_model` of
    such models.
    """
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def load_weights_strict(model, path):
    """Loads a weights file into `model`, refusing any mismatch.

    Args:
        model: a built Keras model.
        path: a Keras ``.weights.h5`` file (or any file `model.load_weights`
            reads).

    Raises:
        ValueError: naming the file, when its variables do not match the
            model's in number or shape.
    """
    path = os.fspath(path)
    stored = _count_stored_variables(path)
    if stored is not None and stored != len(model.weights):
        raise ValueError(
            f"The weights file does not match the architecture of {model.name!r}: it holds "
            f"{stored} variables, the model has {len(model.weights)}. Received: weights={path!r}"
        )
    try:
        model.load_weights(path)
    except (ValueError, KeyError, OSError) as error:
        # Keras's message goes on to print whole variables; keep its gist.
        text = str(error)
        detail = text.splitlines()[0] if text else type(error).__name__
        shapes = re.search(r"variable\.shape=\([^)]*\), Received: value\.shape=\([^)]*\)", text)
        if shapes:
            detail += f" ({shapes.group(0)})"
        raise ValueError(
            f"The weights file does not match the architecture of {model.name!r}: {detail} "
            f"Received: weights={path!r}"
        ) from error


def _count_stored_variables(path):
    """Number of variables in a Keras 3 ``.weights.h5`` file, else ``None``."""
    if not path.endswith(".weights.h5"):
        return None
    import h5py

    count = 0

    def visit(_, obj):
        nonlocal count
        count += isinstance(obj, h5py.Dataset)

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return count
