"""The residual family: ResNet, ResNet-V2, ResNeXt, Wide ResNet, SE-ResNet(Xt),
the CIFAR ResNets and their plain twins.

Every named variant is one row of `VARIANTS` (its constructor name and its
spec); `build_resnet`, made by the template of `kres.models.template`, turns any
`ResNetSpec` into a Functional `keras.Model` through `kres.models.blocks`. Any other
member of the family is a row with other field values
(``dataclasses.replace(spec, depths=(2, 2, 2))`` or
``kres.build_model("resnet50", cardinality=8, width_per_group=8)``).
"""

import collections
import dataclasses
import re
from dataclasses import dataclass

from keras import layers

from kres import checks
from kres.models import blocks, template
from kres.models.families.resnet_timm import load_timm_weights
from kres.models.family import Family, blocks_per_stage, last_per_level
from kres.weights.keras_applications import PublishedWeights

STEMS = ("imagenet", "cifar")
DOWNSAMPLE = ("first", "last")


@dataclass(frozen=True)
class ResNetSpec(template.StemAndStages):
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
            `kres.models.blocks.residual_block`).
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
        checks.tuples(self, "depths", "widths")
        checks.choice("block", self.block, blocks.BLOCKS)
        checks.choice("stem", self.stem, STEMS)
        checks.choice("stride_on", self.stride_on, blocks.STRIDE_ON)
        checks.choice("downsample", self.downsample, DOWNSAMPLE)
        checks.choice("shortcut", self.shortcut, blocks.SHORTCUTS)
        for field in ("depths", "widths"):
            checks.int_tuple(field, getattr(self, field))
        if len(self.widths) != len(self.depths):
            raise ValueError(
                f"widths must give one width per stage ({len(self.depths)} stages). "
                f"Received: widths={self.widths!r}"
            )
        for field in ("stem_width", "widen_factor", "cardinality", "width_per_group"):
            checks.positive_int(field, getattr(self, field))
        if not checks.is_int(self.se_ratio) or self.se_ratio < 0:
            raise ValueError(
                "se_ratio is the squeeze-and-excitation reduction ratio r (an integer, 16 in "
                f"the paper; 0 disables it). Received: se_ratio={self.se_ratio!r}"
            )
        checks.rate("drop_path_rate", self.drop_path_rate)
        for field in ("preact", "zero_init_last", "conv_bias"):
            checks.boolean(field, getattr(self, field))
        template.check_common_fields(self)
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
# keras.applications v1 ResNets: stride on the first 1x1 convolution, biases on
# every convolution, Keras's batch-norm epsilon.
KERAS_V1_LAYOUT = {"stride_on": "1x1", "conv_bias": True, "bn_epsilon": 1.001e-5}
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
# Registry name: (constructor name, spec).
VARIANTS = {
    # He et al. 2015 (arXiv:1512.03385), Table 1, with the stride on the 3x3
    # convolution as in torchvision ("v1.5").
    "resnet18": ("ResNet18", _rep(_IMAGENET, block="basic", depths=(2, 2, 2, 2))),
    "resnet34": ("ResNet34", _rep(_IMAGENET, block="basic", depths=(3, 4, 6, 3))),
    "resnet50": ("ResNet50", _IMAGENET),
    "resnet101": ("ResNet101", _rep(_IMAGENET, depths=(3, 4, 23, 3))),
    "resnet152": ("ResNet152", _rep(_IMAGENET, depths=(3, 8, 36, 3))),
    # He et al. 2016 (arXiv:1603.05027), pre-activation, keras.applications layout.
    "resnet50v2": ("ResNet50V2", _KERAS_V2),
    "resnet101v2": ("ResNet101V2", _rep(_KERAS_V2, depths=(3, 4, 23, 3))),
    "resnet152v2": ("ResNet152V2", _rep(_KERAS_V2, depths=(3, 8, 36, 3))),
    # Xie et al. 2017 (arXiv:1611.05431), Table 1 and Sec. 5.1.
    "resnext50_32x4d": ("ResNeXt50", _rep(_IMAGENET, cardinality=32, width_per_group=4)),
    "resnext101_32x4d": ("ResNeXt101", _rep(_IMAGENET, depths=(3, 4, 23, 3), cardinality=32,
                                            width_per_group=4)),
    "resnext101_32x8d": ("ResNeXt101_32x8d", _rep(_IMAGENET, depths=(3, 4, 23, 3),
                                                  cardinality=32, width_per_group=8)),
    "resnext101_64x4d": ("ResNeXt101_64x4d", _rep(_IMAGENET, depths=(3, 4, 23, 3),
                                                  cardinality=64, width_per_group=4)),
    # Zagoruyko & Komodakis 2016 (arXiv:1605.07146), ImageNet WRN-50-2 as in
    # torchvision: twice as wide a bottleneck, same outputs.
    "wide_resnet50_2": ("WideResNet50", _rep(_IMAGENET, width_per_group=128)),
    "wide_resnet101_2": ("WideResNet101", _rep(_IMAGENET, depths=(3, 4, 23, 3),
                                               width_per_group=128)),
    # Hu et al. 2017 (arXiv:1709.01507), Table 1, r = 16.
    "se_resnet50": ("SEResNet50", _rep(_IMAGENET, se_ratio=16)),
    "se_resnet101": ("SEResNet101", _rep(_IMAGENET, depths=(3, 4, 23, 3), se_ratio=16)),
    "se_resnet152": ("SEResNet152", _rep(_IMAGENET, depths=(3, 8, 36, 3), se_ratio=16)),
    "se_resnext50_32x4d": ("SEResNeXt50", _rep(_IMAGENET, cardinality=32, width_per_group=4,
                                               se_ratio=16)),
    "se_resnext101_32x4d": ("SEResNeXt101", _rep(_IMAGENET, depths=(3, 4, 23, 3),
                                                 cardinality=32, width_per_group=4,
                                                 se_ratio=16)),
    # He et al. 2015, Sec. 4.2: 6n+2 layers, option A shortcuts (Table 6).
    **{f"cifar_resnet{d}": (f"CifarResNet{d}", _rep(_CIFAR, depths=_cifar_depths(d, 2)))
       for d in (20, 32, 44, 56, 110, 1202)},
    # ... and the plain baselines of Fig. 6.
    **{f"cifar_plain{d}": (f"CifarPlain{d}", _rep(_CIFAR, depths=_cifar_depths(d, 2),
                                                  shortcut="none"))
       for d in (20, 32, 44, 56, 110)},
    # He et al. 2016, Table 2: pre-activation ResNet-110 (basic) and -164
    # (bottleneck) on CIFAR, projection shortcuts.
    "cifar_preact_resnet110": ("CifarPreActResNet110",
                               _rep(_CIFAR, depths=_cifar_depths(110, 2), preact=True,
                                    shortcut="B")),
    "cifar_preact_resnet164": ("CifarPreActResNet164",
                               _rep(_CIFAR, block="bottleneck", depths=_cifar_depths(164, 3),
                                    preact=True, shortcut="B")),
    # Xie et al. 2017, Sec. 5.3 and Table 7: ResNeXt-29 on CIFAR.
    "resnext29_8x64d": ("ResNeXt29_8x64d", _rep(_RESNEXT29, cardinality=8, width_per_group=64)),
    "resnext29_16x64d": ("ResNeXt29_16x64d", _rep(_RESNEXT29, cardinality=16,
                                                  width_per_group=64)),
    "resnext29_32x4d": ("ResNeXt29_32x4d", _rep(_RESNEXT29, cardinality=32, width_per_group=4)),
    # Zagoruyko & Komodakis 2016, Table 1: WRN-d-k, (d - 4) / 6 blocks per stage.
    **{f"wrn{d}_{k}": (f"WRN{d}_{k}", _rep(_WRN, depths=_cifar_depths(d, 2, 4), widen_factor=k))
       for d, k in ((16, 4), (16, 8), (28, 10), (40, 4))},
}
SPECS = {name: spec for name, (_, spec) in VARIANTS.items()}


def _body(spec, image, head):
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
    return x


build_resnet = template.builder(ResNetSpec, _body, family="resnet")


# --- Stage outputs -------------------------------------------------------------------

StageLayout = collections.namedtuple("StageLayout", "stem depths preact downsample")
_BLOCK_OUT = re.compile(r"conv(\d+)_block(\d+)_out")


def stage_outputs(spec):
    """``{"C<k>": layer}`` of a spec (or a `StageLayout`): the last layer at each stride.

    The stem ends at ``conv1_relu`` (``conv1_conv`` before pre-activation
    blocks) and, on ImageNet, ``pool1_pool`` at stride 4; stage ``i`` (layers
    ``conv{i + 2}_*``) at stride 4 * 2**i (ImageNet stem) or 2**i (CIFAR),
    its blocks ending at ``conv{i + 2}_block{b}_out``; a pre-activation
    network's ``post_relu`` is its last stage's output. With
    ``downsample="last"`` (keras.applications' ResNet-V2) a stage's last block
    is already at the next stride, so the block before it ends the stage.
    """
    imagenet = spec.stem == "imagenet"
    stem_end = "conv1_conv" if spec.preact else "conv1_relu"
    ends = [(1, stem_end), (2, "pool1_pool")] if imagenet else [(0, stem_end)]
    base = 2 if imagenet else 0
    last_stage = len(spec.depths) - 1
    for i, depth in enumerate(spec.depths):
        for b in range(1, depth + 1):
            strided = spec.downsample == "last" and b == depth and i < last_stage
            ends.append((base + i + strided, f"conv{i + 2}_block{b}_out"))
    if spec.preact:
        ends.append((base + last_stage, "post_relu"))
    return last_per_level(ends)


def layout_of(model):
    """The `StageLayout` of a model this family's builder made, read from its layers."""
    names = [layer.name for layer in model.layers]
    per_stage = blocks_per_stage(names, _BLOCK_OUT)
    depths = tuple(per_stage[s] for s in sorted(per_stage))
    downsample = "first"
    if len(depths) > 1:
        # Which block of the first stage halves the map: its last one in Keras's V2 layout.
        last = f"conv2_block{depths[0]}"
        strides = {tuple(layer.strides) for layer in model.layers
                   if layer.name.startswith(f"{last}_") and hasattr(layer, "strides")}
        downsample = "last" if (2, 2) in strides else "first"
    return StageLayout("imagenet" if "pool1_pool" in names else "cifar", depths,
                       "post_relu" in names, downsample)


# --- Published weights ---------------------------------------------------------------

_V1 = tuple(KERAS_V1_LAYOUT.items())
# File names and MD5 hashes as keras.applications (Keras 3.15) records them; accuracy
# as keras.io's applications table gives it.
WEIGHTS = {
    "resnet50": PublishedWeights("resnet", "resnet50", "2cb95161c43110f7111970584f804107",
        "4d473c1dd8becc155b73f8504c6f6626", "caffe", top1=74.9, top5=92.1, layout=_V1),
    "resnet101": PublishedWeights("resnet", "resnet101", "f1aeb4b969a6efcfb50fad2f0c20cfc5",
        "88cf7a10940856eca736dc7b7e228a21", "caffe", top1=76.4, top5=92.8, layout=_V1),
    "resnet152": PublishedWeights("resnet", "resnet152", "100835be76be38e30d865e96f2aaae62",
        "ee4c566cf9a93f14d82f913c2dc6dd0c", "caffe", top1=76.6, top5=93.1, layout=_V1),
    "resnet50v2": PublishedWeights("resnet", "resnet50v2", "3ef43a0b657b3be2300d5770ece849e0",
        "fac2f116257151a9d068a22e544a4917", "tf", top1=76.0, top5=93.0),
    "resnet101v2": PublishedWeights("resnet", "resnet101v2", "6343647c601c52e1368623803854d971",
        "c0ed64b8031c3730f411d2eb4eea35b5", "tf", top1=77.2, top5=93.8),
    "resnet152v2": PublishedWeights("resnet", "resnet152v2", "a49b44d1979771252814e80f8ec446f9",
        "ed17cf2e0169df9d443503ef94b23b33", "tf", top1=78.0, top5=94.2),
}

FAMILY = Family(
    name="resnet",
    description="ResNet v1/v1.5, ResNet-V2, ResNeXt, Wide ResNet, SE-ResNet(Xt), the CIFAR "
                "ResNets, WRN and ResNeXt-29",
    variants=VARIANTS,
    build=build_resnet,
    signature=r"conv\d+_block\d+_out",
    # Pre-activation networks end with post_bn/post_relu, which is then their last
    # stage: the normalised features the classifier sees (timm's choice for its
    # pre-activation features; keras-hub takes the raw sum).
    stage_outputs=stage_outputs,
    layout_of=layout_of,
    weights=WEIGHTS,
    # timm's and torchvision's ResNet-family state dicts, by tensor name (resnet_timm).
    state_dict_loader=load_timm_weights,
)
