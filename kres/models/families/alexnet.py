"""AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012): five convolutions and
three fully connected layers.

Two rows: ``alexnet``, the single-tower network of torchvision (and of
Krizhevsky's "one weird trick" paper, arXiv:1404.5997), and
``alexnet_original``, the paper's two-tower network with local response
normalisation, its towers expressed as two-group convolutions.
"""

from dataclasses import dataclass

from keras import layers

from kres import checks
from kres.layers import GroupedConv2D, LocalResponseNormalization
from kres.models import heads, template
from kres.models.family import Family


@dataclass(frozen=True)
class AlexNetSpec:
    """The architecture of one AlexNet.

    Attributes:
        widths: output channels of the five convolutions.
        groups: groups of each convolution (2 = the paper's two GPU towers).
        conv1_padding: zero padding of the 11x11 stride-4 first convolution.
        lrn: local response normalisation after the first two convolutions'
            ReLUs (paper Sec. 3.3).
        adaptive_pool: spatial size the features are average-pooled to before
            the classifier (torchvision's ``AdaptiveAvgPool2d``), so any input
            size feeds the same classifier; ``None`` flattens as they are.
        fc_width: width of the two hidden fully connected layers.
        dropout_rate: dropout of the classifier (paper: 0.5).
        dropout_first: dropout on the inputs of fc6 and fc7 (torchvision);
            ``False`` puts it on their outputs (the paper).
        default_size: default input height and width.
        default_classes: default number of classes.
    """

    widths: tuple = (64, 192, 384, 256, 256)
    groups: tuple = (1, 1, 1, 1, 1)
    conv1_padding: int = 2
    lrn: bool = False
    adaptive_pool: tuple | None = (6, 6)
    fc_width: int = 4096
    dropout_rate: float = 0.5
    dropout_first: bool = True
    default_size: int = 224
    default_classes: int = 1000

    def __post_init__(self):
        checks.tuples(self, "widths", "groups", "adaptive_pool")
        for field in ("widths", "groups"):
            checks.int_tuple(field, getattr(self, field))
            if len(getattr(self, field)) != 5:
                raise ValueError(f"{field} must give one value for each of the 5 convolutions. "
                                 f"Received: {field}={getattr(self, field)!r}")
        channels = (3, *self.widths)
        for i, g in enumerate(self.groups):
            # The first convolution's input channels are checked when built.
            if channels[i + 1] % g or (i and channels[i] % g):
                raise ValueError(
                    f"groups[{i}] must divide the input and output channels of conv{i + 1} "
                    f"({channels[i]} -> {channels[i + 1]}). Received: groups={self.groups!r}")
        checks.integer("conv1_padding", self.conv1_padding, minimum=0)
        checks.int_tuple("adaptive_pool", self.adaptive_pool, optional=True)
        for field in ("lrn", "dropout_first"):
            checks.boolean(field, getattr(self, field))
        checks.positive_int("fc_width", self.fc_width)
        template.check_common_fields(self)
        checks.rate("dropout_rate", self.dropout_rate)

    @property
    def min_size(self):
        """The smallest input height and width the network accepts: three 3x3/2
        max-pools take a 15-pixel map to 1, and the 11x11/4 first convolution
        makes 15 pixels of ``4 * 14 + 11 - 2 * conv1_padding``."""
        return 4 * 14 + 11 - 2 * self.conv1_padding

    def describe(self):
        """A one-line description of the network."""
        towers = "two-tower" if max(self.groups) > 1 else "single-tower"
        lrn = " with local response normalisation" if self.lrn else ""
        return (f"{towers} AlexNet{lrn}, convolutions "
                f"{'/'.join(str(w) for w in self.widths)}, fully connected {self.fc_width}, "
                f"{self.default_size}x{self.default_size} input")


# Registry name: (constructor name, spec).
VARIANTS = {
    # torchvision's single-tower AlexNet (arXiv:1404.5997): 61,100,840 parameters.
    "alexnet": ("AlexNet", AlexNetSpec()),
    # Krizhevsky et al. 2012, Fig. 2: 96-256-384-384-256 filters, conv2/4/5
    # within a tower, LRN after conv1 and conv2, 227x227 input.
    "alexnet_original": ("AlexNetOriginal",
                         AlexNetSpec(widths=(96, 256, 384, 384, 256), groups=(1, 2, 1, 2, 2),
                                     conv1_padding=0, lrn=True, adaptive_pool=None,
                                     dropout_first=False, default_size=227)),
}
SPECS = {name: spec for name, (_, spec) in VARIANTS.items()}


def _body(spec, image, head):
    """Convolutions carry biases and ReLUs; max-pools are 3x3 with stride 2
    ("overlapping pooling")."""
    if spec.groups[0] > 1 and image.shape[-1] % spec.groups[0]:
        raise ValueError(f"groups[0] must divide the {image.shape[-1]} input channels. "
                         f"Received: groups={spec.groups!r}")
    x = image
    if spec.conv1_padding:
        x = layers.ZeroPadding2D(spec.conv1_padding, name="conv1_pad")(x)
    for i, (width, groups) in enumerate(zip(spec.widths, spec.groups)):
        n = i + 1
        kernel, strides = {0: (11, 4), 1: (5, 1)}.get(i, (3, 1))
        conv = GroupedConv2D if groups > 1 else layers.Conv2D
        x = conv(width, kernel, strides=strides, padding="valid" if i == 0 else "same",
                 groups=groups, activation="relu", name=f"conv{n}")(x)
        if spec.lrn and n <= 2:
            x = LocalResponseNormalization(name=f"conv{n}_lrn")(x)
        if n in (1, 2, 5):
            x = layers.MaxPooling2D(3, strides=2, name=f"pool{n}")(x)
    return x


def _top(spec, x, head, model_name):
    """fc6 and fc7 (ReLU, dropout) and ``predictions``; without adaptive
    pooling that needs a known input size."""
    x = heads.flatten(x, model_name, spec.adaptive_pool)
    x = heads.fully_connected_head(x, ("fc6", "fc7"), width=spec.fc_width,
                                  dropout_rate=spec.dropout_rate,
                                  dropout_first=spec.dropout_first)
    return heads.predictions(x, head)


build_alexnet = template.builder(AlexNetSpec, _body, _top, family="alexnet")


FAMILY = Family(
    name="alexnet",
    description="AlexNet, single- and two-tower",
    variants=VARIANTS,
    build=build_alexnet,
    signature=r"pool5",
    no_stages="AlexNet's 11x11/4 first convolution and unpadded 3x3/2 max-pools give maps "
              "of 55, 27, 13 and 6 pixels at 224x224, not 56, 28, 14 and 7, so a feature "
              "pyramid's 2x upsampling does not line them up",
)
