"""GoogLeNet / Inception v1 (Szegedy et al., arXiv:1409.4842).

The inception modules are the rows of the paper's Table 1 (`INCEPTION_V1`).
Two networks: ``googlenet``, the paper's (convolutions with biases, 5x5
branches, local response normalisation in the stem), and ``googlenet_bn``,
torchvision's batch-normalised layout (each convolution followed by batch
norm, a 3x3 convolution in the "5x5" branch, 6,624,904 parameters).

The auxiliary classifiers exist only for training: with
``aux_classifiers=True`` the model has three outputs ``[predictions,
aux1_predictions, aux2_predictions]`` (fit it with loss weights
``[1, 0.3, 0.3]``, as in the paper), and `strip_auxiliary` gives the
one-output network that shares its weights, for inference and export.
"""

import collections
import re
from dataclasses import dataclass

import keras
from keras import layers

from kres import checks
from kres.layers import LocalResponseNormalization
from kres.models import blocks, heads, template
from kres.models.family import Family, last_per_level

# Szegedy et al. 2014, Table 1: module, #1x1, #3x3 reduce, #3x3, #5x5 reduce,
# #5x5, pool proj. A 3x3/2 max-pool precedes the first module of stages 3-5.
INCEPTION_V1 = (
    ("3a", 64, 96, 128, 16, 32, 32),
    ("3b", 128, 128, 192, 32, 96, 64),
    ("4a", 192, 96, 208, 16, 48, 64),
    ("4b", 160, 112, 224, 24, 64, 64),
    ("4c", 128, 128, 256, 24, 64, 64),
    ("4d", 112, 144, 288, 32, 64, 64),
    ("4e", 256, 160, 320, 32, 128, 128),
    ("5a", 256, 160, 320, 32, 128, 128),
    ("5b", 384, 192, 384, 48, 128, 128),
)
# The auxiliary classifiers sit on the outputs of these modules (Sec. 5).
AUX_AFTER = ("4a", "4d")


@dataclass(frozen=True)
class GoogLeNetSpec:
    """The architecture of one GoogLeNet.

    Attributes:
        modules: the inception modules, rows of ``(name, 1x1, 3x3 reduce,
            3x3, 5x5 reduce, 5x5, pool proj)``; the first character of the
            name is the stage.
        batch_norm: batch norm after every convolution (which then has no
            bias), as in torchvision.
        branch3_kernel: kernel of the third branch: 5 (the paper) or 3
            (torchvision's layout).
        lrn: local response normalisation after the stem's first max-pool and
            after its 3x3 convolution (the paper's Fig. 3).
        last_pool_size: size of the max-pool before stage 5 (3 in the paper,
            2 in torchvision).
        dropout_rate: dropout before the classifier (0.4 in the paper).
        aux_classifiers: add the two auxiliary classifiers (training only).
        bn_momentum: batch norm momentum.
        bn_epsilon: batch norm epsilon (torchvision: 1e-3).
        default_size: default input height and width.
        default_classes: default number of classes.
    """

    modules: tuple = INCEPTION_V1
    batch_norm: bool = False
    branch3_kernel: int = 5
    lrn: bool = True
    last_pool_size: int = 3
    dropout_rate: float = 0.4
    aux_classifiers: bool = False
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-3
    default_size: int = 224
    default_classes: int = 1000

    def __post_init__(self):
        checks.tuples(self, "modules")
        stages = []
        for row in self.modules:
            if (not isinstance(row, tuple) or len(row) != 7 or not isinstance(row[0], str)
                    or not row[0] or not all(checks.is_int(c) and c >= 1 for c in row[1:])):
                raise ValueError(
                    "modules must be rows of (name, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, "
                    f"pool proj) with positive widths. Received: a row {row!r}")
            stages.append(row[0][0])
        if not stages or stages != sorted(stages):
            raise ValueError("modules must be a non-empty tuple of rows in stage order. "
                             f"Received: modules={self.modules!r}")
        if self.aux_classifiers:
            missing = sorted(set(AUX_AFTER) - {row[0] for row in self.modules})
            if missing:
                raise ValueError(f"aux_classifiers needs the modules {AUX_AFTER}; {missing} are "
                                 f"missing. Received: modules={self.modules!r}")
        checks.choice("branch3_kernel", self.branch3_kernel, (3, 5))
        checks.choice("last_pool_size", self.last_pool_size, (2, 3))
        for field in ("batch_norm", "lrn", "aux_classifiers"):
            checks.boolean(field, getattr(self, field))
        checks.rate("dropout_rate", self.dropout_rate)
        template.check_common_fields(self)

    @property
    def total_stride(self):
        """How much the network downsamples its input."""
        return 4 * 2 ** len({row[0][0] for row in self.modules})

    @property
    def min_size(self):
        """The smallest input height and width the network accepts (the
        auxiliary classifiers' 5x5 pooling needs 5x5 stage-4 maps)."""
        return 80 if self.aux_classifiers else self.total_stride

    def describe(self):
        """A one-line description of the network."""
        kind = "batch-normalised GoogLeNet" if self.batch_norm else "GoogLeNet"
        aux = ", auxiliary classifiers" if self.aux_classifiers else ""
        return (f"{kind} (Inception v1), {len(self.modules)} inception modules, "
                f"{self.branch3_kernel}x{self.branch3_kernel} third branch{aux}, "
                f"{self.default_size}x{self.default_size} input")


# Registry name: (constructor name, spec).
VARIANTS = {
    # Szegedy et al. 2014, Table 1 and Fig. 3.
    "googlenet": ("GoogLeNet", GoogLeNetSpec()),
    # torchvision's GoogLeNet: batch norm, 3x3 "5x5" branch, no LRN, 2x2 last pool.
    "googlenet_bn": ("GoogLeNetBN", GoogLeNetSpec(batch_norm=True, branch3_kernel=3, lrn=False,
                                                  last_pool_size=2, dropout_rate=0.2)),
}
SPECS = {name: spec for name, (_, spec) in VARIANTS.items()}


def _body(spec, image, head):
    """Max-pools use ``same`` padding, which equals the paper's (and
    torchvision's ceil-mode) pooling grid at every stage."""
    if spec.aux_classifiers and not head.include_top:
        raise ValueError("aux_classifiers are classifiers and need include_top=True. "
                         "Received: include_top=False")

    def conv(x, filters, kernel_size, name, strides=1):
        x = blocks.conv2d(x, filters, kernel_size, strides=strides,
                          use_bias=not spec.batch_norm, name=name)
        if spec.batch_norm:
            x = blocks.batch_norm(x, name=f"{name}_bn", momentum=spec.bn_momentum,
                                  epsilon=spec.bn_epsilon)
        return layers.Activation("relu", name=f"{name}_relu")(x)

    def max_pool(x, size, name, strides=2):
        return layers.MaxPooling2D(size, strides=strides, padding="same", name=name)(x)

    x = conv(image, 64, 7, "conv1", strides=2)
    x = max_pool(x, 3, "pool1")
    if spec.lrn:
        x = LocalResponseNormalization(name="pool1_lrn")(x)
    x = conv(x, 64, 1, "conv2")
    x = conv(x, 192, 3, "conv3")
    if spec.lrn:
        x = LocalResponseNormalization(name="conv3_lrn")(x)
    aux_outputs = []
    stage, last_stage, pools = None, spec.modules[-1][0][0], 1
    for module, c1, c3r, c3, c5r, c5, pool_proj in spec.modules:
        if module[0] != stage:
            stage, pools = module[0], pools + 1
            size = spec.last_pool_size if stage == last_stage else 3
            x = max_pool(x, size, f"pool{pools}")
        prefix = f"inception{module}"
        branches = [
            conv(x, c1, 1, f"{prefix}_1x1"),
            conv(conv(x, c3r, 1, f"{prefix}_3x3_reduce"), c3, 3, f"{prefix}_3x3"),
            conv(conv(x, c5r, 1, f"{prefix}_5x5_reduce"), c5, spec.branch3_kernel,
                 f"{prefix}_5x5"),
            conv(max_pool(x, 3, f"{prefix}_pool", strides=1), pool_proj, 1,
                 f"{prefix}_pool_proj"),
        ]
        x = layers.Concatenate(name=f"{prefix}_output")(branches)
        if spec.aux_classifiers and module in AUX_AFTER:
            aux_outputs.append(_auxiliary_classifier(x, conv, head,
                                                     f"aux{len(aux_outputs) + 1}"))
    return x, aux_outputs


def _top(spec, x, head, model_name):
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if spec.dropout_rate:
        x = layers.Dropout(spec.dropout_rate, name="dropout")(x)
    return heads.predictions(x, head)


build_googlenet = template.builder(GoogLeNetSpec, _body, _top, family="googlenet")


def _auxiliary_classifier(x, conv, head, name):
    """The paper's Sec. 5 side classifier: 5x5/3 average pool, 1x1 convolution
    to 128, fully connected 1024 with ReLU, 70% dropout, the classifier."""
    x = layers.AveragePooling2D(5, strides=3, name=f"{name}_pool")(x)
    x = conv(x, 128, 1, f"{name}_1x1")
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = layers.Dense(1024, activation="relu", name=f"{name}_fc")(x)
    x = layers.Dropout(0.7, name=f"{name}_dropout")(x)
    return heads.predictions(x, head, name=f"{name}_predictions")


def strip_auxiliary(model):
    """The one-output inference network of a model with auxiliary classifiers.

    The returned model shares its layers (and weights) with `model` and
    computes only the ``predictions`` output; a model with one output is
    returned as it is.

    Args:
        model: a Functional Keras model.

    Returns:
        A Functional `keras.Model` with one output.

    Example:

    >>> import kres
    >>> train_model = kres.GoogLeNet(aux_classifiers=True, classes=10)
    >>> len(train_model.outputs), len(kres.strip_auxiliary(train_model).outputs)
    (3, 1)
    """
    if len(model.outputs) == 1:
        return model
    return keras.Model(model.inputs, model.get_layer("predictions").output, name=model.name)


# --- Stage outputs -------------------------------------------------------------------

StageLayout = collections.namedtuple("StageLayout", "modules lrn")
_MODULE = re.compile(r"inception(\w+)_output")


def stage_outputs(spec):
    """``{"C<k>": layer}`` of a spec (or a `StageLayout`): the stem's ``conv1_relu``
    at stride 2, its third convolution (``conv3_relu``, or ``conv3_lrn`` in the
    paper's network) at 4, then the last inception module of each stage
    (``inception3b_output``, ``inception4e_output``, ``inception5b_output``)."""
    ends = [(1, "conv1_relu"), (2, "conv3_lrn" if spec.lrn else "conv3_relu")]
    stages = sorted({row[0][0] for row in spec.modules})
    ends += [(3 + stages.index(row[0][0]), f"inception{row[0]}_output") for row in spec.modules]
    return last_per_level(ends)


def layout_of(model):
    """The `StageLayout` of a model this family's builder made, read from its layers
    (module rows carry only their names)."""
    names = [layer.name for layer in model.layers]
    modules = tuple((m.group(1),) for m in map(_MODULE.fullmatch, names) if m)
    return StageLayout(modules, "conv3_lrn" in names)


FAMILY = Family(
    name="googlenet",
    description="GoogLeNet and its batch-normalised layout",
    variants=VARIANTS,
    build=build_googlenet,
    signature=r"inception\w+_output",
    stage_outputs=stage_outputs,
    layout_of=layout_of,
)
