"""Trainable parameters and multiply-accumulates of the classic networks, by hand.

Each function writes a network down from its paper (or from the reference
implementation it names) layer by layer and adds up what each layer costs.
None of it uses kres: it is the independent derivation the size tests compare
kres's built models with. Conventions as kres and torchvision count: trainable
weights only (a batch norm has a scale and an offset per channel), and the
multiply-accumulates of convolutions and fully connected layers at the given
input size.
"""


class Tally:
    """Adds up parameters and multiply-accumulates, layer by layer."""

    def __init__(self):
        self.params = 0
        self.macs = 0

    def conv(self, size, c_in, c_out, k, bias=False, groups=1, bn=False):
        """A k x k convolution producing a `size` x `size` map."""
        weights = k * k * (c_in // groups) * c_out
        self.params += weights + (c_out if bias else 0) + (2 * c_out if bn else 0)
        self.macs += size * size * weights

    def bn(self, channels):
        self.params += 2 * channels

    def dense(self, c_in, c_out):
        self.params += c_in * c_out + c_out
        self.macs += c_in * c_out

    def result(self):
        return self.params, self.macs


def cifar_resnet(n, shortcut="A", classes=10):
    """He et al. 2015, Sec. 4.2: 6n+2 layers, widths 16/32/64 at 32/16/8 pixels.

    Option A shortcuts are parameter-free; B projects with a 1x1 convolution
    and batch norm where the width changes; ``"none"`` is the plain net.
    """
    t = Tally()
    t.conv(32, 3, 16, 3, bn=True)
    c_in = 16
    for stage, width in enumerate((16, 32, 64)):
        size = 32 >> stage
        for _ in range(n):
            t.conv(size, c_in, width, 3, bn=True)
            t.conv(size, width, width, 3, bn=True)
            if shortcut == "B" and c_in != width:
                t.conv(size, c_in, width, 1, bn=True)
            c_in = width
    t.dense(64, classes)
    return t.result()


def preact_cifar_resnet(depth, bottleneck, classes=10):
    """He et al. 2016 (Identity Mappings), CIFAR: full pre-activation units.

    Basic units (2 convolutions, depth 6n+2) or bottlenecks (1x1, 3x3, 1x1 to
    4x the width, depth 9n+2); widths 16/32/64; a 1x1 projection (no batch
    norm: the next unit normalises) where the width changes; a batch norm
    before the classifier.
    """
    per_unit = 3 if bottleneck else 2
    n = (depth - 2) // (3 * per_unit)
    t = Tally()
    t.conv(32, 3, 16, 3)
    c_in, size_in = 16, 32
    for stage, planes in enumerate((16, 32, 64)):
        size = 32 >> stage
        out = 4 * planes if bottleneck else planes
        for _ in range(n):
            t.bn(c_in)
            if bottleneck:
                # The stride is on the 3x3: the first 1x1 sees the unit's input size.
                t.conv(size_in, c_in, planes, 1, bn=True)
                t.conv(size, planes, planes, 3, bn=True)
                t.conv(size, planes, out, 1)
            else:
                t.conv(size, c_in, planes, 3, bn=True)
                t.conv(size, planes, planes, 3)
            if c_in != out:
                t.conv(size, c_in, out, 1)
            c_in, size_in = out, size
    t.bn(c_in)
    t.dense(c_in, classes)
    return t.result()


def wide_resnet(depth, k, classes=10):
    """Zagoruyko & Komodakis 2016: WRN-d-k, pre-activation basic units,
    (d - 4) / 6 per stage, widths 16k/32k/64k, 1x1 projections (no batch norm)."""
    n = (depth - 4) // 6
    t = Tally()
    t.conv(32, 3, 16, 3)
    c_in = 16
    for stage, width in enumerate((16 * k, 32 * k, 64 * k)):
        size = 32 >> stage
        for _ in range(n):
            t.bn(c_in)
            t.conv(size, c_in, width, 3, bn=True)
            t.conv(size, width, width, 3)
            if c_in != width:
                t.conv(size, c_in, width, 1)
            c_in = width
    t.bn(c_in)
    t.dense(c_in, classes)
    return t.result()


def resnext29(cardinality, width_per_group, classes=10):
    """Xie et al. 2017, Sec. 5.3: a 3x3 stem of 64, three stages of three
    bottlenecks at 32/16/8 pixels, grouped width C x d (d scaled with the
    stage: 1x, 2x, 4x), outputs 256/512/1024, projections with batch norm."""
    t = Tally()
    t.conv(32, 3, 64, 3, bn=True)
    c_in, size_in = 64, 32
    for stage in range(3):
        size = 32 >> stage
        width = cardinality * width_per_group * 2 ** stage
        out = 256 * 2 ** stage
        for _ in range(3):
            # The stride is on the 3x3: the first 1x1 sees the block's input size.
            t.conv(size_in, c_in, width, 1, bn=True)
            t.conv(size, width, width, 3, groups=cardinality, bn=True)
            t.conv(size, width, out, 1, bn=True)
            if c_in != out:
                t.conv(size, c_in, out, 1, bn=True)
            c_in, size_in = out, size
    t.dense(c_in, classes)
    return t.result()


def densenet_bc_cifar(depth, k, classes=10):
    """Huang et al. 2017, DenseNet-BC on CIFAR: a 3x3 stem of 2k, three dense
    blocks of (depth - 4) / 6 bottleneck layers (BN, 1x1 to 4k, BN, 3x3 to k)
    at 32/16/8 pixels, transitions (BN, 1x1 halving the channels, 2x2 average
    pool), a batch norm before the classifier."""
    n = (depth - 4) // 6
    t = Tally()
    t.conv(32, 3, 2 * k, 3)
    c = 2 * k
    for block in range(3):
        size = 32 >> block
        for _ in range(n):
            t.bn(c)
            t.conv(size, c, 4 * k, 1, bn=True)
            t.conv(size, 4 * k, k, 3)
            c += k
        if block < 2:
            t.bn(c)
            t.conv(size, c, c // 2, 1)
            c //= 2
    t.bn(c)
    t.dense(c, classes)
    return t.result()


# Szegedy et al. 2014, Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj,
# by stage (28, 14 and 7 pixels at 224x224).
GOOGLENET_TABLE_1 = {
    28: [(64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64)],
    14: [(192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64), (128, 128, 256, 24, 64, 64),
         (112, 144, 288, 32, 64, 64), (256, 160, 320, 32, 128, 128)],
    7: [(256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128)],
}


def googlenet(batch_norm, third_kernel, classes=1000):
    """GoogLeNet at 224x224: the paper's (biases, 5x5 third branch) or
    torchvision's (batch norm instead of biases, a 3x3 third branch)."""
    t = Tally()

    def conv(size, c_in, c_out, k):
        t.conv(size, c_in, c_out, k, bias=not batch_norm, bn=batch_norm)

    conv(112, 3, 64, 7)
    conv(56, 64, 64, 1)
    conv(56, 64, 192, 3)
    c_in = 192
    for size, modules in GOOGLENET_TABLE_1.items():
        for c1, c3r, c3, c5r, c5, pool in modules:
            conv(size, c_in, c1, 1)
            conv(size, c_in, c3r, 1)
            conv(size, c3r, c3, 3)
            conv(size, c_in, c5r, 1)
            conv(size, c5r, c5, third_kernel)
            conv(size, c_in, pool, 1)
            c_in = c1 + c3 + c5 + pool
    t.dense(c_in, classes)
    return t.result()


def alexnet(two_towers, classes=1000):
    """torchvision's single tower (64-192-384-256-256, 224 pixels, pooled to 6x6)
    or the paper's two towers (96-256-384-384-256 at 227 pixels, conv2/4/5 within
    a tower: two groups), with biases everywhere, fc6 and fc7 of 4096."""
    t = Tally()
    if two_towers:
        widths, groups, sizes = (96, 256, 384, 384, 256), (1, 2, 1, 2, 2), (55, 27, 13, 13, 13)
    else:
        widths, groups, sizes = (64, 192, 384, 256, 256), (1,) * 5, (55, 27, 13, 13, 13)
    c_in = 3
    for width, g, size, k in zip(widths, groups, sizes, (11, 5, 3, 3, 3)):
        t.conv(size, c_in, width, k, bias=True, groups=g)
        c_in = width
    t.dense(6 * 6 * c_in, 4096)
    t.dense(4096, 4096)
    t.dense(4096, classes)
    return t.result()


VGG_CONFIGURATIONS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3),
                      19: (2, 2, 4, 4, 4)}  # Simonyan & Zisserman, Table 1: A, B, D, E


def vgg(layers, batch_norm, classes=1000):
    """VGG at 224x224 as torchvision builds it: 3x3 convolutions with biases
    (and batch norm in the _bn variants), five stages, fc 25088-4096-4096."""
    t = Tally()
    c_in = 3
    for stage, (depth, width) in enumerate(zip(VGG_CONFIGURATIONS[layers],
                                               (64, 128, 256, 512, 512))):
        for _ in range(depth):
            t.conv(224 >> stage, c_in, width, 3, bias=True, bn=batch_norm)
            c_in = width
    t.dense(512 * 7 * 7, 4096)
    t.dense(4096, 4096)
    t.dense(4096, classes)
    return t.result()


def imagenet_bottleneck_resnet(depths, reduction=0, classes=1000):
    """torchvision's bottleneck ResNet ("v1.5": the stride on the 3x3) at 224x224:
    a 7x7/2 stem of 64 and a max-pool, stages of planes 64-128-256-512 at 56/28/14/7
    pixels with outputs 4x wider, projections with batch norm at each stage's first
    block; with `reduction`, Hu et al.'s SE blocks (biases in both layers)."""
    t = Tally()
    t.conv(112, 3, 64, 7, bn=True)
    c_in, size_in = 64, 56
    for stage, (depth, planes) in enumerate(zip(depths, (64, 128, 256, 512))):
        size, out = 56 >> stage, 4 * planes
        for _ in range(depth):
            t.conv(size_in, c_in, planes, 1, bn=True)
            t.conv(size, planes, planes, 3, bn=True)
            t.conv(size, planes, out, 1, bn=True)
            if reduction:
                t.dense(out, out // reduction)
                t.dense(out // reduction, out)
            if c_in != out:
                t.conv(size, c_in, out, 1, bn=True)
            c_in, size_in = out, size
    t.dense(c_in, classes)
    return t.result()


def squeeze_excitation_extra(depths, reduction=16):
    """What SE blocks (Hu et al. 2017, with biases in both fully connected
    layers) add to a bottleneck ResNet of these stage depths at 224x224: per
    block of C = 256, 512, 1024, 2048 output channels, C -> C/r -> C."""
    params = macs = 0
    for depth, channels in zip(depths, (256, 512, 1024, 2048)):
        squeezed = channels // reduction
        params += depth * (channels * squeezed + squeezed + squeezed * channels + channels)
        macs += depth * 2 * channels * squeezed
    return params, macs
