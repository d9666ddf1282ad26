"""The classifier tops of the model template: global pooling and ``predictions``,
or flatten and fully connected layers (AlexNet, VGG).

`Head` carries what the caller asked of the top (validated); the layer names
are keras.applications' (``avg_pool``, ``max_pool``, ``flatten``,
``predictions``).
"""

import dataclasses

from keras import layers

from kres import checks

POOLINGS = (None, "avg", "max")


@dataclasses.dataclass(frozen=True)
class Head:
    """What the caller asked of the model's top, validated.

    Attributes:
        include_top: whether the classifier is added.
        pooling: ``None``, ``"avg"`` or ``"max"``.
        classes: number of classes.
        activation: the classifier's activation (``None``: logits).
        float32_output: keep the classifier in float32 (mixed precision).
    """

    include_top: bool
    pooling: str | None
    classes: int
    activation: object
    float32_output: bool = False

    def __post_init__(self):
        checks.boolean("include_top", self.include_top)
        if self.pooling not in POOLINGS:
            role = " (the global pooling that feeds the classifier)" if self.include_top else ""
            checks.fail("pooling", self.pooling, f"must be None, 'avg' or 'max'{role}")
        checks.positive_int("classes", self.classes)


def classifier_head(x, head):
    """Global pooling and the ``predictions`` layer, as in keras.applications.

    Without `head.include_top`, only the pooling `head.pooling` asks for
    (``max_pool`` or ``avg_pool``); with it, ``"max"`` or else average
    pooling, then the classifier.
    """
    if head.pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    elif head.pooling == "avg" or head.include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if head.include_top:
        x = predictions(x, head)
    return x


def pooled_top(spec, x, head, model_name):
    """The default top: global average (or max) pooling and ``predictions``."""
    return classifier_head(x, head)


def predictions(x, head, name="predictions"):
    """The classifier layer (``predictions``), float32 under a mixed policy."""
    return layers.Dense(head.classes, activation=head.activation, name=name,
                        dtype="float32" if head.float32_output else None)(x)


def flatten(x, model_name, adaptive_pool=None):
    """Flattens the last feature map for a fully connected classifier.

    Args:
        x: the last feature map.
        model_name: the model's name, for the error message.
        adaptive_pool: ``(height, width)`` to average-pool the map to first
            (torchvision's ``AdaptiveAvgPool2d``, layer ``adaptive_pool``), or
            ``None``.

    Returns:
        The flat features (layer ``flatten``).

    Raises:
        ValueError: if the map's height or width is unknown (an input_shape
            with ``None``), which a fully connected layer cannot take.
    """
    if any(d is None for d in x.shape[1:]):
        raise ValueError(
            f"{model_name} with include_top=True flattens its features into fully connected "
            f"layers, so the input height and width must be known; build with e.g. "
            f"input_shape=(224, 224, 3), or include_top=False. Received: a feature map of "
            f"shape {tuple(x.shape)}"
        )
    if adaptive_pool is not None:
        x = layers.AdaptiveAveragePooling2D(adaptive_pool, name="adaptive_pool")(x)
    return layers.Flatten(name="flatten")(x)


def fully_connected_head(x, names, *, width, dropout_rate, dropout_first=True):
    """Hidden fully connected layers with ReLU and dropout (AlexNet, VGG).

    Args:
        x: the flattened features.
        names: one layer name per hidden layer (``("fc1", "fc2")``).
        width: units of each hidden layer.
        dropout_rate: dropout rate; 0 for none.
        dropout_first: dropout on each layer's input (torchvision's AlexNet)
            instead of its output (the papers, torchvision's VGG).

    Returns:
        The last hidden layer's output.
    """
    for name in names:
        if dropout_rate and dropout_first:
            x = layers.Dropout(dropout_rate, name=f"{name}_dropout")(x)
        x = layers.Dense(width, activation="relu", name=name)(x)
        if dropout_rate and not dropout_first:
            x = layers.Dropout(dropout_rate, name=f"{name}_dropout")(x)
    return x
