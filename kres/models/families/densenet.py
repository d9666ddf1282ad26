"""DenseNet (Huang, Liu, van der Maaten & Weinberger, arXiv:1608.06993).

Each layer of a dense block sees the concatenation of all earlier outputs of
the block; transitions between blocks compress the channels and halve the
resolution. Rows: the ImageNet DenseNet-121/169/201 of the paper's Table 1 in
keras.applications' layout (its layer names, so its published weights load),
and DenseNet-BC for CIFAR (Table 2).
"""

import collections
import dataclasses
import re
from dataclasses import dataclass

from keras import layers

from kres import checks
from kres.models import blocks, template
from kres.models.family import Family, blocks_per_stage, last_per_level
from kres.weights.keras_applications import PublishedWeights

STEMS = ("imagenet", "cifar")


@dataclass(frozen=True)
class DenseNetSpec(template.StemAndStages):
    """The architecture of one DenseNet.

    Attributes:
        depths: layers in each dense block.
        growth_rate: channels each layer adds (k).
        bottleneck: a 1x1 convolution to ``4 * k`` channels before each 3x3
            (the "B" of DenseNet-BC).
        compression: fraction of channels a transition keeps (the "C", 0.5).
        stem: ``"imagenet"`` (7x7/2 convolution, batch norm, ReLU, 3x3/2
            max-pool) or ``"cifar"`` (one 3x3 convolution).
        stem_width: output channels of the stem (64 on ImageNet, ``2 * k``
            for DenseNet-BC on CIFAR).
        bn_momentum: batch norm momentum.
        bn_epsilon: batch norm epsilon (keras.applications: 1.001e-5).
        default_size: default input height and width.
        default_classes: default number of classes.
    """

    depths: tuple
    growth_rate: int = 32
    bottleneck: bool = True
    compression: float = 0.5
    stem: str = "imagenet"
    stem_width: int = 64
    bn_momentum: float = 0.9
    bn_epsilon: float = 1.001e-5
    default_size: int = 224
    default_classes: int = 1000

    def __post_init__(self):
        checks.tuples(self, "depths")
        checks.int_tuple("depths", self.depths)
        checks.choice("stem", self.stem, STEMS)
        for field in ("growth_rate", "stem_width"):
            checks.positive_int(field, getattr(self, field))
        checks.boolean("bottleneck", self.bottleneck)
        if not checks.is_number(self.compression) or not 0.0 < self.compression <= 1.0:
            raise ValueError("compression is the fraction of channels a transition keeps, in "
                             f"(0, 1]. Received: compression={self.compression!r}")
        template.check_common_fields(self)

    def describe(self):
        """A one-line description of the network."""
        kind = "DenseNet-BC" if self.bottleneck and self.compression < 1 else "DenseNet"
        return (f"{kind}, k={self.growth_rate}, layers per block "
                f"{'-'.join(str(d) for d in self.depths)}, compression {self.compression:g}, "
                f"{self.stem} stem, {self.default_size}x{self.default_size} input")


def _bc_cifar(depth, growth_rate):
    """DenseNet-BC-`depth` with growth `growth_rate` on CIFAR: 3 blocks of
    ``(depth - 4) / 6`` bottleneck layers, a ``2k``-channel 3x3 stem."""
    return DenseNetSpec(depths=((depth - 4) // 6,) * 3, growth_rate=growth_rate, stem="cifar",
                        stem_width=2 * growth_rate, bn_epsilon=1e-5, default_size=32,
                        default_classes=10)


_IMAGENET = DenseNetSpec(depths=(6, 12, 24, 16))
# Registry name: (constructor name, spec).
VARIANTS = {
    # Huang et al. 2017, Table 1: DenseNet-121/169/201 (k = 32, BC).
    "densenet121": ("DenseNet121", _IMAGENET),
    "densenet169": ("DenseNet169", dataclasses.replace(_IMAGENET, depths=(6, 12, 32, 32))),
    "densenet201": ("DenseNet201", dataclasses.replace(_IMAGENET, depths=(6, 12, 48, 32))),
    # Table 2: DenseNet-BC on CIFAR (0.8M, 15.3M and 25.6M parameters).
    "densenet_bc_100_12": ("DenseNetBC100", _bc_cifar(100, 12)),
    "densenet_bc_250_24": ("DenseNetBC250", _bc_cifar(250, 24)),
    "densenet_bc_190_40": ("DenseNetBC190", _bc_cifar(190, 40)),
}
SPECS = {name: spec for name, (_, spec) in VARIANTS.items()}


def dense_layer(x, growth_rate, *, name, bottleneck=True, **bn):
    """One layer of a dense block: BN-ReLU-(1x1 conv-BN-ReLU)-3x3 conv, concatenated
    to its input (``{name}_0_bn`` ... ``{name}_2_conv``, ``{name}_concat``)."""
    y = blocks.batch_norm(x, name=f"{name}_0_bn", **bn)
    y = layers.Activation("relu", name=f"{name}_0_relu")(y)
    if bottleneck:
        y = blocks.conv2d(y, 4 * growth_rate, 1, name=f"{name}_1")
        y = blocks.batch_norm(y, name=f"{name}_1_bn", **bn)
        y = layers.Activation("relu", name=f"{name}_1_relu")(y)
    y = blocks.conv2d(y, growth_rate, 3, name=f"{name}_2")
    return layers.Concatenate(name=f"{name}_concat")([x, y])


def transition(x, compression, *, name, **bn):
    """BN-ReLU-1x1 convolution to ``int(channels * compression)``, 2x2 average pool."""
    x = blocks.batch_norm(x, name=f"{name}_bn", **bn)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    x = blocks.conv2d(x, int(x.shape[-1] * compression), 1, name=name)
    return layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)


def _body(spec, image, head):
    bn = {"momentum": spec.bn_momentum, "epsilon": spec.bn_epsilon}
    if spec.stem == "imagenet":
        x = blocks.conv2d(image, spec.stem_width, 7, strides=2, name="conv1")
        x = blocks.batch_norm(x, name="conv1_bn", **bn)
        x = layers.Activation("relu", name="conv1_relu")(x)
        x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    else:
        x = blocks.conv2d(image, spec.stem_width, 3, name="conv1")
    for i, depth in enumerate(spec.depths):
        for j in range(depth):
            x = dense_layer(x, spec.growth_rate, bottleneck=spec.bottleneck,
                            name=f"conv{i + 2}_block{j + 1}", **bn)
        if i < len(spec.depths) - 1:
            x = transition(x, spec.compression, name=f"pool{i + 2}", **bn)
    x = blocks.batch_norm(x, name="bn", **bn)
    return layers.Activation("relu", name="relu")(x)


build_densenet = template.builder(DenseNetSpec, _body, family="densenet")


# --- Stage outputs -------------------------------------------------------------------

StageLayout = collections.namedtuple("StageLayout", "stem depths")
_DENSE_LAYER = re.compile(r"conv(\d+)_block(\d+)_concat")


def stage_outputs(spec):
    """``{"C<k>": layer}`` of a spec (or a `StageLayout`): the dense blocks' outputs
    (before each transition, as keras-hub and timm take them); the last is the
    final batch norm and ReLU (``relu``). The ImageNet stem ends at
    ``conv1_relu`` (stride 2) and ``pool1`` (4); the CIFAR stem is one
    convolution at stride 1."""
    imagenet = spec.stem == "imagenet"
    ends = [(1, "conv1_relu"), (2, "pool1")] if imagenet else [(0, "conv1_conv")]
    base = 2 if imagenet else 0
    for i, depth in enumerate(spec.depths):
        ends.append((base + i, f"conv{i + 2}_block{depth}_concat"))
    ends.append((base + len(spec.depths) - 1, "relu"))
    return last_per_level(ends)


def layout_of(model):
    """The `StageLayout` of a model this family's builder made, read from its layers."""
    names = [layer.name for layer in model.layers]
    per_stage = blocks_per_stage(names, _DENSE_LAYER)
    return StageLayout("imagenet" if "pool1" in names else "cifar",
                       tuple(per_stage[s] for s in sorted(per_stage)))


# File names and MD5 hashes as keras.applications (Keras 3.15) records them; accuracy
# as keras.io's applications table gives it.
WEIGHTS = {
    "densenet121": PublishedWeights("densenet", "densenet121", "9d60b8095a5708f2dcce2bca79d332c7",
        "30ee3e1110167f948a6b9946edeeb738", "torch", top1=75.0, top5=92.3),
    "densenet169": PublishedWeights("densenet", "densenet169", "d699b8f76981ab1b30698df4c175e90b",
        "b8c4d4c20dd625c148057b9ff1c1176b", "torch", top1=76.2, top5=93.2),
    "densenet201": PublishedWeights("densenet", "densenet201", "1ceb130c1ea1b78c3bf6114dbdfd8807",
        "c13680b51ded0fb44dff2d8f86ac8bb1", "torch", top1=77.3, top5=93.6),
}

FAMILY = Family(
    name="densenet",
    description="DenseNet-121/169/201 and DenseNet-BC",
    variants=VARIANTS,
    build=build_densenet,
    signature=r"conv\d+_block\d+_concat",
    stage_outputs=stage_outputs,
    layout_of=layout_of,
    weights=WEIGHTS,
)
