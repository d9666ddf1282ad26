"""VGG (Simonyan & Zisserman, arXiv:1409.1556): stacks of 3x3 convolutions.

Every variant is one row of `SPECS`: configurations A, B, D and E of the
paper's Table 1 (VGG-11/13/16/19), each with and without batch
normalisation. Layer names are keras.applications' (``block1_conv1`` ...
``fc1``, ``fc2``, ``predictions``), so its published weights load by name.
"""

import collections
import dataclasses
import re
from dataclasses import dataclass

from keras import layers

from kres import checks
from kres.models import blocks, heads, template
from kres.models.family import Family, blocks_per_stage, last_per_level
from kres.weights.keras_applications import PublishedWeights


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
        checks.tuples(self, "depths", "widths", "adaptive_pool")
        checks.int_tuple("depths", self.depths)
        checks.int_tuple("widths", self.widths)
        if len(self.widths) != len(self.depths):
            raise ValueError(
                f"widths must give one width per stage ({len(self.depths)} stages). "
                f"Received: widths={self.widths!r}")
        checks.int_tuple("adaptive_pool", self.adaptive_pool, optional=True)
        checks.boolean("batch_norm", self.batch_norm)
        checks.positive_int("fc_width", self.fc_width)
        checks.rate("dropout_rate", self.dropout_rate)
        template.check_common_fields(self)

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
# Registry name: (constructor name, spec).
VARIANTS = {
    **{f"vgg{n}": (f"VGG{n}", dataclasses.replace(_VGG, depths=d)) for n, d in _DEPTHS.items()},
    **{f"vgg{n}_bn": (f"VGG{n}BN", dataclasses.replace(_VGG, depths=d, batch_norm=True))
       for n, d in _DEPTHS.items()},
}
SPECS = {name: spec for name, (_, spec) in VARIANTS.items()}


def _body(spec, image, head):
    x = image
    for i, (depth, width) in enumerate(zip(spec.depths, spec.widths)):
        for j in range(depth):
            conv_name = f"block{i + 1}_conv{j + 1}"
            if spec.batch_norm:
                x = layers.Conv2D(width, 3, padding="same", kernel_initializer=blocks.conv_init(),
                                  name=conv_name)(x)
                x = blocks.batch_norm(x, name=f"{conv_name}_bn", momentum=spec.bn_momentum,
                                      epsilon=spec.bn_epsilon, after_bias=True)
                x = layers.Activation("relu", name=f"{conv_name}_relu")(x)
            else:
                x = layers.Conv2D(width, 3, padding="same", activation="relu",
                                  kernel_initializer=blocks.conv_init(), name=conv_name)(x)
        x = layers.MaxPooling2D(2, strides=2, name=f"block{i + 1}_pool")(x)
    return x


def _top(spec, x, head, model_name):
    x = heads.flatten(x, model_name, spec.adaptive_pool)
    x = heads.fully_connected_head(x, ("fc1", "fc2"), width=spec.fc_width,
                                  dropout_rate=spec.dropout_rate, dropout_first=False)
    return heads.predictions(x, head)


build_vgg = template.builder(VGGSpec, _body, _top, family="vgg")


# --- Stage outputs -------------------------------------------------------------------

StageLayout = collections.namedtuple("StageLayout", "depths batch_norm")
_CONV = re.compile(r"block(\d+)_conv(\d+)")


def stage_outputs(spec):
    """``{"C<k>": layer}`` of a spec (or a `StageLayout`): ``C<k>`` is the last
    convolution of block ``k + 1`` (with its ReLU under batch norm), before its
    max-pool (timm's VGG features, and the conv4_3 of SSD); the last block's
    max-pool is the deepest stage."""
    relu = "_relu" if spec.batch_norm else ""
    ends = []
    for i, depth in enumerate(spec.depths):
        ends += [(i, f"block{i + 1}_conv{depth}{relu}"), (i + 1, f"block{i + 1}_pool")]
    return last_per_level(ends)


def layout_of(model):
    """The `StageLayout` of a model this family's builder made, read from its layers."""
    names = [layer.name for layer in model.layers]
    per_block = blocks_per_stage(names, _CONV)
    return StageLayout(tuple(per_block[b] for b in sorted(per_block)),
                       "block1_conv1_relu" in names)


# File names and MD5 hashes as keras.applications (Keras 3.15) records them; accuracy
# as keras.io's applications table gives it.
WEIGHTS = {
    "vgg16": PublishedWeights("vgg16", "vgg16", "64373286793e3c8b2b4e3219cbf3544b",
        "6d6bbae143d832006294945121d1f1fc", "caffe", top1=71.3, top5=90.1),
    "vgg19": PublishedWeights("vgg19", "vgg19", "cbe5617147190e668d6c5d5026f83318",
        "253f8cb515780f3b799900260a226db6", "caffe", top1=71.3, top5=90.0),
}

FAMILY = Family(
    name="vgg",
    description="VGG-11/13/16/19, with and without batch norm",
    variants=VARIANTS,
    build=build_vgg,
    signature=r"block\d+_conv\d+",
    stage_outputs=stage_outputs,
    layout_of=layout_of,
    weights=WEIGHTS,
)
