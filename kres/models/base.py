"""The one model template every family's builder is made from.

A family supplies its spec dataclass and the body of its network (and, if its
classifier is not global pooling plus ``predictions``, its top); `builder`
turns them into the family's ``build_<family>(spec, ...)`` with the
keras.applications arguments (`include_top`, `weights`, `input_tensor`,
`input_shape`, `pooling`, `classes`, `classifier_activation`, `name`) and
`dtype`, validated the same way for all families (the classifier tops are in
`kres.models.heads`). This module also holds the weight-file loading,
`deep_graphs` and `load_model`.
"""

import contextlib
import os
import re
import sys

import keras

from kres import checks
from kres.models import heads


def check_common_fields(spec):
    """The checks every family's spec shares: default input size and classes, and the
    batch-norm settings of the families that have them."""
    for field in ("default_size", "default_classes"):
        checks.positive_int(field, getattr(spec, field))
    if hasattr(spec, "bn_momentum"):
        checks.number("bn_momentum", spec.bn_momentum, low=0, high=1)
        checks.number("bn_epsilon", spec.bn_epsilon, low=0, low_open=True)


class StemAndStages:
    """For specs with a `stem` (``"imagenet"``: 4x downsampling, ``"cifar"``: none)
    and `depths` (one entry per stage, each stage after the first halving)."""

    @property
    def total_stride(self):
        """How much the network downsamples its input."""
        return (4 if self.stem == "imagenet" else 1) * 2 ** (len(self.depths) - 1)

    @property
    def min_size(self):
        """The smallest input height and width the network accepts."""
        return self.total_stride


def builder(spec_type, body, top=None, *, family):
    """Makes a family's builder from its spec type and network body.

    Args:
        spec_type: the family's spec dataclass.
        body: ``body(spec, image, head) -> features`` or ``(features,
            extra_outputs)``: the network from the input image to its last
            feature map (and outputs such as auxiliary classifiers).
        top: ``top(spec, features, head, model_name) -> output``: the
            classifier when `include_top`; default `kres.models.heads.pooled_top`.
        family: the family's name, the default model name.

    Returns:
        ``build(spec, *, include_top=True, weights=None, input_tensor=None,
        input_shape=None, pooling=None, classes=None,
        classifier_activation="softmax", name=None, dtype=None)``.
    """

    def build(spec, *, include_top=True, weights=None, input_tensor=None, input_shape=None,
              pooling=None, classes=None, classifier_activation="softmax", name=None,
              dtype=None):
        if not isinstance(spec, spec_type):
            raise ValueError(f"spec must be a {spec_type.__name__}. Received: spec={spec!r}")
        check_weights(weights)
        name = name or family
        with dtype_policy(dtype) as policy:
            head = heads.Head(include_top, pooling,
                              spec.default_classes if classes is None else classes,
                              classifier_activation, policy.name.startswith("mixed"))
            image, inputs = make_input(input_tensor=input_tensor, input_shape=input_shape,
                                       default_size=spec.default_size, min_size=spec.min_size)
            features = body(spec, image, head)
            x, extra = features if isinstance(features, tuple) else (features, [])
            if include_top:
                x = (top or heads.pooled_top)(spec, x, head, name)
            else:
                x = heads.classifier_head(x, head)
            with deep_graphs():
                model = keras.Model(inputs, [x, *extra] if extra else x, name=name)
        if weights is not None:
            load_weights_file(model, weights)
        return model

    build.__name__ = build.__qualname__ = f"build_{family}"
    build.__doc__ = f"""Builds a {family} network from its spec.

    Args:
        spec: a `{spec_type.__name__}`.
        include_top: whether to add the classifier.
        weights: ``None`` (random initialisation) or the path of a weights
            file (see `load_weights_file`).
        input_tensor: optional Keras tensor to use as the model's input.
        input_shape: ``(height, width, channels)``; defaults to
            ``(spec.default_size, spec.default_size, 3)``. Height and width
            may be ``None`` where the network allows.
        pooling: ``None``, ``"avg"`` or ``"max"``: global pooling of the
            features when `include_top` is False, or before the classifier.
        classes: number of classes; defaults to ``spec.default_classes``.
        classifier_activation: activation of ``predictions``; ``None`` for
            logits.
        name: the model's name (default ``"{family}"``).
        dtype: a Keras dtype policy for the layers (``"mixed_bfloat16"``,
            ...); ``None`` for the global one. The classifier stays float32
            under a mixed policy. The global policy is left as it was.

    Returns:
        A Functional `keras.Model`.

    Raises:
        ValueError: for any invalid argument, naming it and the value
            received.
    """
    return build


@contextlib.contextmanager
def dtype_policy(dtype):
    """Within the block, layers are made with the dtype policy `dtype`.

    `dtype` ``None`` keeps the current global policy. On leaving, the global
    policy is what it was before, whatever happened inside.

    Yields:
        The `keras.DTypePolicy` in force.

    Raises:
        ValueError: for a dtype that is no Keras dtype policy.
    """
    before = keras.config.dtype_policy()
    if dtype is None:
        yield before
        return
    try:
        policy = keras.dtype_policies.get(dtype)
    except (ValueError, TypeError) as error:
        raise ValueError(
            "dtype must be a Keras dtype policy such as 'float32', 'mixed_float16' or "
            f"'mixed_bfloat16'. Received: dtype={dtype!r}") from error
    keras.config.set_dtype_policy(policy)
    try:
        yield policy
    finally:
        keras.config.set_dtype_policy(before)


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
    if not checks.is_int(channels) or channels < 1:
        raise ValueError(
            "input_shape must give a positive number of channels (the classifier head and "
            f"the first convolution need it). Received: input_shape={input_shape}"
        )
    for size in spatial:
        if size is not None and (not checks.is_int(size) or size < min_size):
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


# --- Weights files --------------------------------------------------------------------

def check_weights(weights):
    """`weights` must be ``None`` or an existing file (``"imagenet"`` is the registry's)."""
    if weights is None:
        return
    if isinstance(weights, str) and weights == "imagenet":
        raise ValueError(
            "weights='imagenet' is resolved by kres.build_model and the constructors "
            "(kres.ResNet50(weights='imagenet')), not by the family builders. "
            "Received: weights='imagenet'"
        )
    if not isinstance(weights, str | os.PathLike) or not os.path.isfile(weights):
        checks.fail("weights", weights, "must be None or the path of an existing weights file")


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


def load_weights_strict(model, path):
    """Loads a Keras weights file into `model`, refusing any mismatch.

    Keras loads a ``.weights.h5`` file by position and accepts a file that
    holds more variables than the model; this refuses that, so a file from
    another architecture is never half-loaded silently.

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


@contextlib.contextmanager
def deep_graphs(limit=20_000):
    """Within the block, Keras can walk graphs thousands of layers deep (ResNet-1202).

    Keras maps a Functional graph recursively, one Python frame per layer, so
    the default recursion limit of 1000 stops it near 1000 layers deep. The
    limit is raised for the block only and restored on leaving. Needed around
    building, `keras.Model.from_config` and `keras.saving.load_model` of such
    models (`kres.load_model` uses it).
    """
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def load_model(path, *, safe_mode=True, **kwargs):
    """Loads a ``.keras`` file holding a kres model (or any Keras model).

    `keras.saving.load_model` with kres's layers registered and the
    recursion limit raised for deep graphs (ResNet-1202) while it loads.

    Args:
        path: a ``.keras`` file, e.g. a run's ``best.keras``.
        safe_mode: Keras's safe mode (on by default: kres models need no
            ``Lambda``).
        **kwargs: other arguments of `keras.saving.load_model`.

    Returns:
        The Keras model.

    Raises:
        ValueError: if there is no file at `path`.

    Example:

    >>> model = kres.load_model("runs/demo/best.keras")  # doctest: +SKIP
    """
    import kres.layers  # noqa: F401  (registers kres's layers with Keras)

    if not os.path.isfile(path):
        checks.fail("path", os.fspath(path), "must be an existing .keras file")
    with deep_graphs():
        return keras.saving.load_model(path, safe_mode=safe_mode, **kwargs)


# --- A model's own preprocessing ------------------------------------------------------

PREPROCESSING_LAYER = "preprocessing"


def leaves(model):
    """Every layer of `model` that is no model itself, nested models walked into."""
    for layer in model.layers:
        yield from leaves(layer) if isinstance(layer, keras.Model) else (layer,)


def image_input(preprocessing, class_names=None):
    """The input of a model that normalises its own pixels.

    A ``keras.Input`` named ``image`` of the preprocessing's shape, through a
    `kres.layers.InputPreprocessing` layer named ``preprocessing``: pass it
    to a builder as `input_tensor` and the model takes pixels (0-255) and
    carries its normalisation, resize mode and class names in its config.
    `kres.train` and `kres.tune` build every model so.

    Args:
        preprocessing: a `kres.preprocessing.Preprocessing`.
        class_names: a name per class, or ``None``.

    Example:

    >>> prep = kres.preprocessing.Preprocessing(28, 28, 1, (0.286,), (0.353,))
    >>> model = kres.CifarResNet20(input_tensor=image_input(prep), classes=10)
    >>> preprocessing_layer(model).mean
    (0.286,)
    """
    from kres.layers import InputPreprocessing

    p = preprocessing
    image = keras.Input((p.height, p.width, p.channels), name="image")
    return InputPreprocessing(p.mean, p.std, p.channel_order, p.resize, class_names,
                              name=PREPROCESSING_LAYER)(image)


def preprocessing_layer(model):
    """The `kres.layers.InputPreprocessing` of a model that normalises its own
    input (nested models included), or ``None``.

    Raises:
        ValueError: for a model holding two that disagree.
    """
    from kres.layers import InputPreprocessing

    found = [layer for layer in leaves(model) if isinstance(layer, InputPreprocessing)]
    configs = {repr({k: v for k, v in layer.get_config().items() if k != "name"})
               for layer in found}
    if len(configs) > 1:
        raise ValueError(f"The model {model.name!r} holds {len(found)} InputPreprocessing "
                         "layers that disagree; a model has one normalisation.")
    return found[0] if found else None


def with_preprocessing(model, preprocessing, class_names=None):
    """`model` behind an `InputPreprocessing` layer: a model that takes pixels.

    For a model built without one (by hand, or elsewhere) whose
    normalisation is known: the returned Functional model feeds `model`
    (nested, its weights shared) the normalised pixels, and carries the
    description in its config like a model kres trained.

    Args:
        model: a Keras model with a known input shape, normalising nothing itself.
        preprocessing: its `kres.preprocessing.Preprocessing`.
        class_names: a name per class, or ``None``.

    Raises:
        ValueError: for a model that normalises its input already, or a
            preprocessing of another input shape.

    Example:

    >>> prep = kres.preprocessing.Preprocessing(32, 32, 3, (0.5,), (0.25,))
    >>> served = with_preprocessing(kres.CifarResNet20(), prep)
    >>> served.input_shape, served.output_shape
    ((None, 32, 32, 3), (None, 10))
    """
    carried = preprocessing_layer(model)
    if carried is not None:
        raise ValueError(f"The model {model.name!r} normalises its input already "
                         f"(mean {carried.mean}, std {carried.std}); it needs no preprocessing. "
                         f"Received: preprocessing={preprocessing!r}")
    shape = (preprocessing.height, preprocessing.width, preprocessing.channels)
    if tuple(model.input_shape[1:]) != shape:
        raise ValueError(f"preprocessing must give the model's input shape "
                         f"{tuple(model.input_shape[1:])}. Received: "
                         f"preprocessing={preprocessing!r}")
    image = image_input(preprocessing, class_names)
    return keras.Model(keras.utils.get_source_inputs(image), model(image), name=model.name)


def in_float32(model):
    """`model` computing in float32: a mixed-precision model's network with its own weights.

    A model built or trained in ``mixed_bfloat16`` or ``mixed_float16``
    keeps float32 variables; this rebuilds its graph with every layer in
    float32 and gives it those variables' values, so it computes what the
    trained weights say at float32 precision, on any device (bfloat16 is
    emulated, and slow, on CPUs without AVX512-BF16 or AMX). `kres.export`
    serves every model through it. A float32 model is returned as it is.

    Example:

    >>> model = kres.CifarResNet20(dtype="mixed_bfloat16")
    >>> in_float32(model).get_layer("conv1_conv").compute_dtype
    'float32'
    """
    if all(layer.compute_dtype == "float32" for layer in leaves(model)):
        return model

    def float32_layer(layer):
        if isinstance(layer, keras.Model):  # a nested network (`flip_averaged`'s)
            return in_float32(layer)
        config = layer.get_config()
        if "dtype" not in config:  # an operation such as `keras.ops.flip`
            return layer.__class__.from_config(config)
        return layer.__class__.from_config({**config, "dtype": "float32"})

    with deep_graphs():
        clone = keras.models.clone_model(model, clone_function=float32_layer)
    clone.set_weights(model.get_weights())
    return clone


def flip_averaged(model):
    """`model` averaging its predictions for each image and its mirror image.

    Test-time augmentation for networks trained with horizontal flips (the
    CIFAR and Fashion-MNIST recipes' ``crop_flip``): the returned Functional
    model runs `model` on the image and on the image flipped left to right
    and outputs the mean of the two probability vectors. It shares `model`'s
    weights, costs two forward passes per image, saves, loads and exports
    like any kres model. A recipe's ``test_flip`` scores a run's test set
    through it.

    Args:
        model: a Keras image classifier (channels-last) that outputs
            probabilities.

    Returns:
        A Functional `keras.Model` with `model`'s input and output shapes.

    Raises:
        ValueError: for a model whose input is not an image batch
            ``(batch, height, width, channels)``.

    Example:

    >>> model = kres.CifarResNet20(classes=10, input_shape=(28, 28, 1))
    >>> flip_averaged(model).output_shape
    (None, 10)
    """
    shape = model.input_shape
    if not isinstance(shape, tuple) or len(shape) != 4:
        raise ValueError("model must take one image batch of shape (batch, height, width, "
                         f"channels). Received: a model with input_shape={shape}")
    image = keras.Input(shape=shape[1:], name="image")
    mirrored = keras.ops.flip(image, axis=2)
    probabilities = keras.layers.Average(name="flip_average", dtype="float32")(
        [model(image), model(mirrored)])
    return keras.Model(image, probabilities, name=f"{model.name}_flip_averaged")
