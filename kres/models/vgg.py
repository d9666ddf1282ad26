"""VGG (Simonyan & Zisserman, arXiv:1409.1556): stacks of 3x3 convolutions.

Every variant is one row of `SPECS`: configurations A, B, D and E of the
paper's Table 1 (VGG-11/13/16/19), each with and without batch
normalisation. Layer names are keras.applications' (``block1_conv1`` ...
``fc1``, ``fc2``, ``predictions``), so its published weights load by name.
"""

import dataclasses
from dataclasses import dataclass

from keras import layers

from kres import blocks
from kres.models import base


@dataclass(frozen=True)
class VGGSpec:
    """The architecture of one VGG network.

    Attributes:
        depths: 3x3 convolutions in each of the five stages (each stage ends
            with a 2x2 max-pool).
        widths: channels of each stage.
        batch_norm: batch normalisation after each convolution (torchvision's
            ``vgg16_bn``); the convolutions keep their biases, as there.
        adaptive_pool: spatial size the features are average-pooled to before
            the classifier (torchvision), so any input size feeds the same
            classifier; ``None`` flattens as they are (keras.applications).
            At 224x224 both are the same network.
        fc_width: width of the two hidden fully connected layers.
        dropout_rate: dropout after each hidden fully connected layer.
        bn_momentum: batch norm momentum.
        bn_epsilon: batch norm epsilon.
        default_size: default input height and width.
        default_classes: default number of classes.
    """

    depths: tuple
    widths: tuple = (64, 128, 256, 512, 512)
    batch_norm: bool = False
    adaptive_pool: tuple | None = (7, 7)
    fc_width: int = 4096
    dropout_rate: float = 0.5
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    default_size: int = 224
    default_classes: int = 1000

    def __post_init__(self):
        for field in ("depths", "widths", "adaptive_pool"):
            if isinstance(getattr(self, field), list):
                object.__setattr__(self, field, tuple(getattr(self, field)))
        base.check_int_tuple("depths", self.depths)
        base.check_int_tuple("widths", self.widths)
        if len(self.widths) != len(self.depths):
            raise ValueError(
                f"widths must give one width per stage ({len(self.depths)} stages). "
                f"Received: widths={self.widths!r}")
        if self.adaptive_pool is not None:
            base.check_int_tuple("adaptive_pool", self.adaptive_pool)
        for field in ("fc_width", "default_size", "default_classes"):
            base.check_positive_int(field, getattr(self, field))
        base.check_rate("dropout_rate", self.dropout_rate)

    @property
    def min_size(self):
        """The smallest input height and width the network accepts."""
        return 2 ** len(self.depths)

    def describe(self):
        """A one-line description of the network."""
        layers_ = sum(self.depths) + 3
        bn = " with batch norm" if self.batch_norm else ""
        return (f"VGG-{layers_}{bn}, convolutions per stage "
                f"{'-'.join(str(d) for d in self.depths)}, widths "
                f"{'/'.join(str(w) for w in self.widths)}, "
                f"{self.default_size}x{self.default_size} input")


_VGG = VGGSpec(depths=(2, 2, 3, 3, 3))
# Simonyan & Zisserman 2014, Table 1: configurations A (11), B (13), D (16), E (19).
_DEPTHS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
SPECS = {
    **{f"vgg{n}": dataclasses.replace(_VGG, depths=d) for n, d in _DEPTHS.items()},
    **{f"vgg{n}_bn": dataclasses.replace(_VGG, depths=d, batch_norm=True)
       for n, d in _DEPTHS.items()},
}


def build_vgg(spec, *, include_top=True, weights=None, input_tensor=None, input_shape=None,
              pooling=None, classes=None, classifier_activation="softmax", name="vgg"):
    """Builds a VGG network from its spec.

    Args:
        spec: a `VGGSpec`.
        include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, name: as in `kres.models.resnet.build_resnet`.

    Returns:
        A Functional `keras.Model`.

    Raises:
        ValueError: for any invalid argument, naming it and the value
            received.

    Example:

    >>> model = build_vgg(SPECS["vgg11"], input_shape=(32, 32, 3), classes=10)
    >>> model.output_shape
    (None, 10)
    """
    classes, image, inputs = base.start(
        spec, VGGSpec, include_top=include_top, weights=weights, input_tensor=input_tensor,
        input_shape=input_shape, pooling=pooling, classes=classes)
    x = image
    for i, (depth, width) in enumerate(zip(spec.depths, spec.widths)):
        for j in range(depth):
            conv_name = f"block{i + 1}_conv{j + 1}"
            if spec.batch_norm:
                x = layers.Conv2D(width, 3, padding="same", kernel_initializer=blocks.CONV_INIT,
                                  name=conv_name)(x)
                x = blocks.batch_norm(x, name=f"{conv_name}_bn", momentum=spec.bn_momentum,
                                      epsilon=spec.bn_epsilon)
                x = layers.Activation("relu", name=f"{conv_name}_relu")(x)
            else:
                x = layers.Conv2D(width, 3, padding="same", activation="relu",
                                  kernel_initializer=blocks.CONV_INIT, name=conv_name)(x)
        x = layers.MaxPooling2D(2, strides=2, name=f"block{i + 1}_pool")(x)
    if not include_top:
        x = blocks.classifier_head(x, include_top=False, pooling=pooling, classes=classes,
                                   classifier_activation=classifier_activation)
        return base.finish_model(inputs, x, name=name, weights=weights)
    x = blocks.flatten(x, name, spec.adaptive_pool)
    x = blocks.fully_connected_head(x, ("fc1", "fc2"), width=spec.fc_width,
                             dropout_rate=spec.dropout_rate, dropout_first=False)
    x = blocks.predictions(x, classes=classes, activation=classifier_activation)
    return base.finish_model(inputs, x, name=name, weights=weights)
