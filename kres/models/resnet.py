"""The residual family: ResNet, ResNet-V2, ResNeXt, Wide ResNet, SE-ResNet(Xt),
the CIFAR ResNets and their plain twins.

Every named variant is one row of `SPECS`; `build_resnet` turns any
`ResNetSpec` into a Functional `keras.Model` through `kres.blocks`. Any other
member of the family is a row with other field values
(``dataclasses.replace(spec, depths=(2, 2, 2))`` or
``kres.build_model("resnet50", cardinality=8, width_per_group=8)``).
"""

import dataclasses
from dataclasses import dataclass

from keras import layers

from kres import blocks
from kres.models import base

STEMS = ("imagenet", "cifar")
DOWNSAMPLE = ("first", "last")


@dataclass(frozen=True)
class ResNetSpec:
    """The architecture of one residual network.

    Attributes:
        block: ``"basic"`` (two 3x3) or ``"bottleneck"`` (1x1, 3x3, 1x1).
        depths: blocks per stage.
        widths: base width ("planes") per stage, before `widen_factor`.
        stem: ``"imagenet"`` (7x7/2 + max-pool, downsamples by 4) or
            ``"cifar"`` (3x3, no downsampling).
        stem_width: output channels of the stem.
        widen_factor: multiplies `widths` (Wide ResNet's k on CIFAR).
        cardinality: groups in the bottleneck's 3x3 convolution (ResNeXt).
        width_per_group: channels per group at 64 planes; the bottleneck
            width is ``int(planes * width_per_group / 64) * cardinality``.
        preact: pre-activation blocks (ResNet-V2, Wide ResNet).
        stride_on: ``"3x3"`` (v1.5) or ``"1x1"`` (v1) in bottlenecks.
        downsample: ``"first"`` or ``"last"`` block of a stage is strided.
        shortcut: ``"A"``, ``"B"`` or ``"none"`` (plain network).
        se_ratio: squeeze-and-excitation reduction ratio r; 0 for none.
        drop_path_rate: stochastic depth rate of the last block (rising
            linearly from 0 at the first).
        zero_init_last: zero-initialise each branch's last BN scale.
        conv_bias: keras.applications' convolution biases (see
            `kres.blocks.residual_block`).
        bn_momentum: batch norm momentum.
        bn_epsilon: batch norm epsilon.
        default_size: default input height and width.
        default_classes: default number of classes.
    """

    block: str
    depths: tuple
    widths: tuple = (64, 128, 256, 512)
    stem: str = "imagenet"
    stem_width: int = 64
    widen_factor: int = 1
    cardinality: int = 1
    width_per_group: int = 64
    preact: bool = False
    stride_on: str = "3x3"
    downsample: str = "first"
    shortcut: str = "B"
    se_ratio: int = 0
    drop_path_rate: float = 0.0
    zero_init_last: bool = False
    conv_bias: bool = False
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    default_size: int = 224
    default_classes: int = 1000

    def __post_init__(self):
        for field in ("depths", "widths"):
            value = getattr(self, field)
            if isinstance(value, list):
                object.__setattr__(self, field, tuple(value))
        base.check_choice("block", self.block, blocks.BLOCKS)
        base.check_choice("stem", self.stem, STEMS)
        base.check_choice("stride_on", self.stride_on, blocks.STRIDE_ON)
        base.check_choice("downsample", self.downsample, DOWNSAMPLE)
        base.check_choice("shortcut", self.shortcut, blocks.SHORTCUTS)
        for field in ("depths", "widths"):
            base.check_int_tuple(field, getattr(self, field))
        if len(self.widths) != len(self.depths):
            raise ValueError(
                f"widths must give one width per stage ({len(self.depths)} stages). "
                f"Received: widths={self.widths!r}"
            )
        for field in ("stem_width", "widen_factor", "cardinality", "width_per_group",
                      "default_size", "default_classes"):
            base.check_positive_int(field, getattr(self, field))
        if not base.is_int(self.se_ratio) or self.se_ratio < 0:
            raise ValueError(
                "se_ratio is the squeeze-and-excitation reduction ratio r (an integer, 16 in "
                f"the paper; 0 disables it). Received: se_ratio={self.se_ratio!r}"
            )
        base.check_rate("drop_path_rate", self.drop_path_rate)
        if self.zero_init_last and self.shortcut == "none":
            raise ValueError(
                "zero_init_last would make a plain network (shortcut='none') output zeros from "
                "every block. Received: zero_init_last=True"
            )
        if self.cardinality > 1 and self.block != "bottleneck":
            raise ValueError(
                "cardinality > 1 needs bottleneck blocks. "
                f"Received: cardinality={self.cardinality} with block={self.block!r}"
            )
        if self.block == "bottleneck":
            for planes in self.planes:
                blocks.bottleneck_width(planes, self.cardinality, self.width_per_group)
        if self.shortcut == "A":
            widths = (self.stem_width, *self.out_channels)
            if any(b < a for a, b in zip(widths, widths[1:])):
                raise ValueError(
                    "shortcut='A' pads the identity with zeros, so widths may not shrink "
                    f"from stage to stage. Received: widths={self.widths!r}, "
                    f"stem_width={self.stem_width}"
                )

    @property
    def planes(self):
        """Base width of each stage, `widths` times `widen_factor`."""
        return tuple(w * self.widen_factor for w in self.widths)

    @property
    def out_channels(self):
        """Output channels of each stage."""
        return tuple(p * blocks.EXPANSION[self.block] for p in self.planes)

    @property
    def strides(self):
        """Stride of each stage: 1 for the first, 2 for the others."""
        return (1,) + (2,) * (len(self.depths) - 1)

    @property
    def total_stride(self):
        """How much the network downsamples its input."""
        stem = 4 if self.stem == "imagenet" else 1
        return stem * 2 ** (len(self.depths) - 1)

    @property
    def min_size(self):
        """The smallest input height and width the network accepts."""
        return self.total_stride

    def describe(self):
        """A one-line description, e.g. ``bottleneck ResNeXt 32x4d, depths 3-4-6-3``."""
        kind = "ResNet"
        if self.cardinality > 1:
            kind = f"ResNeXt {self.cardinality}x{self.width_per_group}d"
        elif self.width_per_group != 64 or self.widen_factor != 1:
            kind = "Wide ResNet"
        if self.se_ratio:
            kind = f"SE-{kind} (r={self.se_ratio})"
        if self.shortcut == "none":
            kind = "plain network (no shortcuts)"
        version = "v2 pre-activation" if self.preact else f"v1, stride on {self.stride_on}"
        depths = "-".join(str(d) for d in self.depths)
        return (f"{self.block} {kind}, {version}, depths {depths}, widths "
                f"{'/'.join(str(p) for p in self.planes)}, {self.stem} stem, shortcut "
                f"{self.shortcut}, {self.default_size}x{self.default_size} input")


_IMAGENET = ResNetSpec(block="bottleneck", depths=(3, 4, 6, 3))
# keras.applications ResNet-V2: biases where no BN follows, the stride in the
# last block of a stage, Keras's BN epsilon.
_KERAS_V2 = dataclasses.replace(_IMAGENET, preact=True, conv_bias=True, downsample="last",
                                bn_epsilon=1.001e-5)
_CIFAR = ResNetSpec(block="basic", depths=(3, 3, 3), widths=(16, 32, 64), stem="cifar",
                    stem_width=16, shortcut="A", bn_momentum=0.9, default_size=32,
                    default_classes=10)
_RESNEXT29 = dataclasses.replace(_CIFAR, block="bottleneck", widths=(64, 128, 256),
                                 stem_width=64, shortcut="B")
_WRN = dataclasses.replace(_CIFAR, preact=True, shortcut="B")


def _cifar_depths(depth, per_block_layers, extra=2):
    """Blocks per stage of a 3-stage CIFAR net of `depth` layers."""
    return ((depth - extra) // (3 * per_block_layers),) * 3


_rep = dataclasses.replace
SPECS = {
    # He et al. 2015 (arXiv:1512.03385), Table 1, with the stride on the 3x3
    # convolution as in torchvision ("v1.5").
    "resnet18": _rep(_IMAGENET, block="basic", depths=(2, 2, 2, 2)),
    "resnet34": _rep(_IMAGENET, block="basic", depths=(3, 4, 6, 3)),
    "resnet50": _IMAGENET,
    "resnet101": _rep(_IMAGENET, depths=(3, 4, 23, 3)),
    "resnet152": _rep(_IMAGENET, depths=(3, 8, 36, 3)),
    # He et al. 2016 (arXiv:1603.05027), pre-activation, keras.applications layout.
    "resnet50v2": _KERAS_V2,
    "resnet101v2": _rep(_KERAS_V2, depths=(3, 4, 23, 3)),
    "resnet152v2": _rep(_KERAS_V2, depths=(3, 8, 36, 3)),
    # Xie et al. 2017 (arXiv:1611.05431), Table 1 and Sec. 5.1.
    "resnext50_32x4d": _rep(_IMAGENET, cardinality=32, width_per_group=4),
    "resnext101_32x4d": _rep(_IMAGENET, depths=(3, 4, 23, 3), cardinality=32, width_per_group=4),
    "resnext101_32x8d": _rep(_IMAGENET, depths=(3, 4, 23, 3), cardinality=32, width_per_group=8),
    "resnext101_64x4d": _rep(_IMAGENET, depths=(3, 4, 23, 3), cardinality=64, width_per_group=4),
    # Zagoruyko & Komodakis 2016 (arXiv:1605.07146), ImageNet WRN-50-2 as in
    # torchvision: twice as wide a bottleneck, same outputs.
    "wide_resnet50_2": _rep(_IMAGENET, width_per_group=128),
    "wide_resnet101_2": _rep(_IMAGENET, depths=(3, 4, 23, 3), width_per_group=128),
    # Hu et al. 2017 (arXiv:1709.01507), Table 1, r = 16.
    "se_resnet50": _rep(_IMAGENET, se_ratio=16),
    "se_resnet101": _rep(_IMAGENET, depths=(3, 4, 23, 3), se_ratio=16),
    "se_resnet152": _rep(_IMAGENET, depths=(3, 8, 36, 3), se_ratio=16),
    "se_resnext50_32x4d": _rep(_IMAGENET, cardinality=32, width_per_group=4, se_ratio=16),
    "se_resnext101_32x4d": _rep(_IMAGENET, depths=(3, 4, 23, 3), cardinality=32,
                                width_per_group=4, se_ratio=16),
    # He et al. 2015, Sec. 4.2: 6n+2 layers, option A shortcuts (Table 6).
    **{f"cifar_resnet{d}": _rep(_CIFAR, depths=_cifar_depths(d, 2))
       for d in (20, 32, 44, 56, 110, 1202)},
    # ... and the plain baselines of Fig. 6.
    **{f"cifar_plain{d}": _rep(_CIFAR, depths=_cifar_depths(d, 2), shortcut="none")
       for d in (20, 32, 44, 56, 110)},
    # He et al. 2016, Table 2: pre-activation ResNet-110 (basic) and -164
    # (bottleneck) on CIFAR, projection shortcuts.
    "cifar_preact_resnet110": _rep(_CIFAR, depths=_cifar_depths(110, 2), preact=True,
                                   shortcut="B"),
    "cifar_preact_resnet164": _rep(_CIFAR, block="bottleneck", depths=_cifar_depths(164, 3),
                                   preact=True, shortcut="B"),
    # Xie et al. 2017, Sec. 5.3 and Table 7: ResNeXt-29 on CIFAR.
    "resnext29_8x64d": _rep(_RESNEXT29, cardinality=8, width_per_group=64),
    "resnext29_16x64d": _rep(_RESNEXT29, cardinality=16, width_per_group=64),
    "resnext29_32x4d": _rep(_RESNEXT29, cardinality=32, width_per_group=4),
    # Zagoruyko & Komodakis 2016, Table 1: WRN-d-k, (d - 4) / 6 blocks per stage.
    "wrn16_4": _rep(_WRN, depths=_cifar_depths(16, 2, 4), widen_factor=4),
    "wrn16_8": _rep(_WRN, depths=_cifar_depths(16, 2, 4), widen_factor=8),
    "wrn28_10": _rep(_WRN, depths=_cifar_depths(28, 2, 4), widen_factor=10),
    "wrn40_4": _rep(_WRN, depths=_cifar_depths(40, 2, 4), widen_factor=4),
}


def build_resnet(spec, *, include_top=True, weights=None, input_tensor=None, input_shape=None,
                 pooling=None, classes=None, classifier_activation="softmax", name="resnet"):
    """Builds a residual network from its spec.

    Args:
        spec: a `ResNetSpec`.
        include_top: whether to add the global pooling and ``predictions``
            classifier.
        weights: ``None`` (random initialisation) or the path of a weights
            file saved from the same architecture.
        input_tensor: optional Keras tensor to use as the model's input.
        input_shape: ``(height, width, channels)``; defaults to
            ``(spec.default_size, spec.default_size, 3)``. Height and width
            may be ``None``.
        pooling: ``None``, ``"avg"`` or ``"max"``: global pooling of the
            features when `include_top` is False, or before the classifier.
        classes: number of classes; defaults to ``spec.default_classes``.
        classifier_activation: activation of ``predictions``; ``None`` for
            logits.
        name: the model's name.

    Returns:
        A Functional `keras.Model`.

    Raises:
        ValueError: for any invalid argument, naming it and the value
            received.

    Example:

    >>> from kres.models.resnet import SPECS, build_resnet
    >>> model = build_resnet(SPECS["cifar_resnet20"])
    >>> model.output_shape
    (None, 10)
    """
    classes, image, inputs = base.start(
        spec, ResNetSpec, include_top=include_top, weights=weights, input_tensor=input_tensor,
        input_shape=input_shape, pooling=pooling, classes=classes)
    bn = {"bn_momentum": spec.bn_momentum, "bn_epsilon": spec.bn_epsilon}
    x = blocks.resnet_stem(image, kind=spec.stem, width=spec.stem_width, preact=spec.preact,
                           use_bias=spec.conv_bias, **bn)
    total = sum(spec.depths)
    rates = [spec.drop_path_rate * i / max(total - 1, 1) for i in range(total)]
    strides = spec.strides
    if spec.downsample == "last":
        # Each stage hands the next stage's downsampling to its last block.
        strides = (*strides[1:], 1)
    start = 0
    for i, (planes, depth, stride) in enumerate(zip(spec.planes, spec.depths, strides)):
        x = blocks.residual_stage(
            x, planes, depth, strides=stride, downsample=spec.downsample,
            drop_path_rates=rates[start:start + depth], name=f"conv{i + 2}",
            block=spec.block, cardinality=spec.cardinality,
            width_per_group=spec.width_per_group, preact=spec.preact,
            stride_on=spec.stride_on, shortcut_kind=spec.shortcut, se_ratio=spec.se_ratio,
            zero_init_last=spec.zero_init_last, conv_bias=spec.conv_bias, **bn)
        start += depth
    if spec.preact:
        x = blocks.batch_norm(x, name="post_bn", momentum=spec.bn_momentum,
                              epsilon=spec.bn_epsilon)
        x = layers.Activation("relu", name="post_relu")(x)
    x = blocks.classifier_head(x, include_top=include_top, pooling=pooling, classes=classes,
                               classifier_activation=classifier_activation)
    return base.finish_model(inputs, x, name=name, weights=weights)
