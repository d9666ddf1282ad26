"""The one model template every family's builder is made from.

A family supplies its spec dataclass and the body of its network (and, if its
classifier is not global pooling plus ``predictions``, its top); `builder`
turns them into the family's ``build_<family>(spec, ...)`` with the
keras.applications arguments (`include_top`, `weights`, `input_tensor`,
`input_shape`, `pooling`, `classes`, `classifier_activation`, `name`) and
`dtype`, validated the same way for all families (the classifier tops are in
`kres.models.heads`).
"""

import contextlib

import keras

from kres import checks
from kres.models import heads
from kres.models.saving import deep_graphs
from kres.weights.files import check_weights, load_weights_file


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
    return image, one_or_all(keras.utils.get_source_inputs(image))


def one_or_all(inputs):
    """A model's inputs as Keras wants them given: one input alone, not in a list (a
    model made from a list of one expects a list, and Keras warns at every call
    given one array, the loaded model too)."""
    return inputs[0] if len(inputs) == 1 else inputs
