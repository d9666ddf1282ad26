"""Tensor-to-tensor helpers shared by every kres family.

Every residual unit of every family (ResNet v1/v1.5/v2, ResNeXt, Wide ResNet,
SE-ResNet(Xt), the CIFAR ResNets and their plain twins) is built by the one
`residual_block` below; `residual_stage` stacks them and `resnet_stem`
starts them (the classifier heads are the model template's, in
`kres.models.template`). Layer names follow keras.applications
(``conv1_conv``, ``conv2_block1_1_conv``, ``conv5_block3_out``, ``avg_pool``,
``predictions``): they are the weight format and never change once released.
"""

import keras
from keras import layers

from kres import checks
from kres.layers import BatchNormalization, GroupedConv2D, ZeroPadChannels

BLOCKS = ("basic", "bottleneck")
SHORTCUTS = ("A", "B", "none")
STRIDE_ON = ("3x3", "1x1")
EXPANSION = {"basic": 1, "bottleneck": 4}

def conv_init():
    """torchvision's ResNet initialisation, He normal over fan-out: a new
    initializer for every layer. (A Keras initializer instance without a seed
    draws the same values at every call, so one instance shared by many layers
    would start every convolution of a shape with the same kernel.)"""
    return keras.initializers.VarianceScaling(scale=2.0, mode="fan_out",
                                              distribution="untruncated_normal")


def bottleneck_width(planes, cardinality=1, width_per_group=64):
    """Width of a bottleneck block's grouped 3x3 convolution.

    The ResNeXt/timm formula: ``int(planes * width_per_group / 64) *
    cardinality``. ResNet-50 (1, 64) gives ``planes``; ResNeXt-50 32x4d gives
    ``2 * planes``; Wide ResNet-50-2 (1, 128) gives ``2 * planes``.

    Args:
        planes: the stage's base width (64, 128, 256, 512 on ImageNet).
        cardinality: number of groups.
        width_per_group: width of each group at ``planes == 64``.

    Returns:
        The width, an integer multiple of `cardinality`.

    Raises:
        ValueError: if the formula gives less than one channel per group.
    """
    per_group = int(planes * width_per_group / 64)
    if per_group < 1:
        raise ValueError(
            f"width_per_group is too small for a stage of {planes} planes: each of the "
            f"{cardinality} groups would get {planes * width_per_group / 64:g} channels. "
            f"Received: width_per_group={width_per_group}"
        )
    return per_group * cardinality


def conv2d(x, filters, kernel_size, *, name, strides=1, groups=1, use_bias=False,
           kernel_initializer=None):
    """A convolution padded as in torchvision (symmetric ``kernel_size // 2``).

    Strided convolutions get an explicit ``ZeroPadding2D`` (named
    ``{name}_pad``) and ``valid`` padding, because Keras's ``same`` padding is
    asymmetric at stride 2 and would not match weights trained elsewhere.
    Grouped convolutions use `kres.layers.GroupedConv2D`.

    Args:
        x: input tensor (channels last).
        filters: output channels.
        kernel_size: an odd integer.
        name: layer name prefix; the convolution is ``{name}_conv``.
        strides: integer stride.
        groups: number of groups (1 for an ordinary convolution).
        use_bias: whether the convolution has a bias.
        kernel_initializer: Keras initializer for the kernel (default: a new
            `conv_init`).

    Returns:
        The output tensor.
    """
    padding = "same"
    if strides > 1 and kernel_size > 1:
        x = layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
        padding = "valid"
    conv = GroupedConv2D if groups > 1 else layers.Conv2D
    return conv(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        groups=groups,
        use_bias=use_bias,
        kernel_initializer=kernel_initializer or conv_init(),
        name=f"{name}_conv",
    )(x)


def batch_norm(x, *, name, momentum=0.9, epsilon=1e-5, zero_gamma=False, after_bias=False):
    """Batch normalisation over the channel axis (``{name}``), fused in training.

    The layer is `kres.layers.BatchNormalization`: Keras's layer with a fused
    training kernel, same weights.

    Args:
        x: input tensor.
        name: the layer's full name (``conv1_bn``, ``conv2_block1_3_bn``).
        momentum: moving-average momentum (Keras convention: 0.9 equals
            PyTorch's 0.1).
        epsilon: variance epsilon.
        zero_gamma: start with a zero scale (Bag of Tricks' zero-init of the
            last BN in a residual branch).
        after_bias: `x` is a convolution with a bias, where Keras's inference
            ops measured faster than the fused op (``fused_inference=False``).

    Returns:
        The output tensor.
    """
    return BatchNormalization(
        momentum=momentum,
        epsilon=epsilon,
        gamma_initializer="zeros" if zero_gamma else "ones",
        fused_inference=not after_bias,
        name=name,
    )(x)


def squeeze_excite(x, *, ratio, name):
    """Squeeze-and-excitation (Hu et al. 2017) with reduction ratio `ratio`.

    Global average pool, a 1x1 convolution down to ``channels // ratio`` with
    ReLU, a 1x1 convolution back up with a sigmoid, and a channel-wise product.
    The two 1x1 convolutions carry biases, as in the paper's fully connected
    layers.

    Args:
        x: input tensor.
        ratio: the reduction ratio `r` (16 in the paper).
        name: layer name prefix (``{name}_se_reduce`` ...).

    Returns:
        `x` rescaled channel by channel.
    """
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_squeeze")(x)
    s = layers.Conv2D(max(1, channels // ratio), 1, activation="relu",
                      name=f"{name}_se_reduce")(s)
    s = layers.Conv2D(channels, 1, activation="sigmoid", name=f"{name}_se_expand")(s)
    return layers.Multiply(name=f"{name}_se_excite")([x, s])


def shortcut(x, projection_input, out_channels, *, kind, strides, name, use_bias=False,
             batch_norm_kwargs=None):
    """The identity path of a residual block, chosen from the shapes.

    Same width: the identity, subsampled by a 1x1 max-pool when strided
    (keras.applications ResNet-V2's choice). Different width: option ``"B"``
    projects `projection_input` with a strided 1x1 convolution (followed by
    batch norm when `batch_norm_kwargs` is given); option ``"A"`` subsamples
    and appends zero channels, without parameters (ResNet paper, CIFAR).

    Args:
        x: the block's input.
        projection_input: what a projection convolves (the pre-activated
            input in a pre-activation block, else `x`).
        out_channels: width of the residual branch's output.
        kind: ``"A"`` or ``"B"``.
        strides: the block's stride.
        name: block name prefix (``{name}_0_conv``, ``{name}_0_bn``).
        use_bias: bias on the projection convolution.
        batch_norm_kwargs: keyword arguments of `batch_norm`, or ``None`` for
            no batch norm after the projection.

    Returns:
        The shortcut tensor.

    Raises:
        ValueError: for option A asked to narrow the identity.
    """
    in_channels = x.shape[-1]
    if in_channels != out_channels and kind == "B":
        s = conv2d(projection_input, out_channels, 1, strides=strides, use_bias=use_bias,
                   name=f"{name}_0")
        if batch_norm_kwargs is not None:
            s = batch_norm(s, name=f"{name}_0_bn", after_bias=use_bias, **batch_norm_kwargs)
        return s
    if strides > 1:
        x = layers.MaxPooling2D(1, strides=strides, name=f"{name}_0_pool")(x)
    if in_channels == out_channels:
        return x
    extra = out_channels - in_channels
    if extra < 0:
        raise ValueError(
            f"shortcut option A can only widen the identity, but block {name} goes from "
            f"{in_channels} to {out_channels} channels. Received: shortcut='A'"
        )
    return ZeroPadChannels((extra // 2, extra - extra // 2), name=f"{name}_0_pad")(x)


def residual_block(
    x,
    planes,
    *,
    name,
    block="bottleneck",
    strides=1,
    cardinality=1,
    width_per_group=64,
    preact=False,
    stride_on="3x3",
    shortcut_kind="B",
    se_ratio=0,
    drop_path_rate=0.0,
    zero_init_last=False,
    conv_bias=False,
    bn_momentum=0.9,
    bn_epsilon=1e-5,
):
    """The one residual unit of kres.

    Post-activation (v1): ``relu(branch(x) + shortcut(x))``, each convolution
    followed by batch norm. Pre-activation (v2, He et al. 2016):
    ``branch(relu(bn(x))) + shortcut(x)``. The branch is two 3x3 convolutions
    (``basic``) or 1x1 -> grouped 3x3 -> 1x1 (``bottleneck``, width from
    `bottleneck_width`, output ``4 * planes``). The shortcut follows from the
    shapes (see `shortcut`); ``shortcut_kind="none"`` drops it and gives the
    plain baselines of the ResNet paper's degradation experiment.

    Args:
        x: input tensor.
        planes: the stage's base width.
        name: block name prefix, e.g. ``conv3_block1``.
        block: ``"basic"`` or ``"bottleneck"``.
        strides: 1, or 2 to halve the resolution.
        cardinality: groups of the bottleneck's 3x3 convolution (ResNeXt).
        width_per_group: channels per group at ``planes == 64``.
        preact: pre-activation (v2) instead of post-activation (v1).
        stride_on: ``"3x3"`` (v1.5, torchvision) or ``"1x1"`` (v1,
            keras.applications): which bottleneck convolution carries the
            stride.
        shortcut_kind: ``"A"`` (zero-padded identity), ``"B"`` (projection
            when the width changes) or ``"none"``.
        se_ratio: squeeze-and-excitation reduction ratio; 0 disables it.
        drop_path_rate: probability of dropping the whole branch for a sample
            during training (stochastic depth).
        zero_init_last: start the branch at zero: the last batch norm's scale
            (post-activation) or the last convolution (pre-activation).
        conv_bias: keras.applications' convention of convolution biases:
            on every convolution in v1; in v2 only on those not followed
            directly by batch norm.
        bn_momentum: batch norm momentum.
        bn_epsilon: batch norm epsilon.

    Returns:
        The block's output tensor, named ``{name}_out``.

    Raises:
        ValueError: for an unknown `block`, `stride_on` or `shortcut_kind`,
            or a width that `cardinality` cannot split.
    """
    checks.choice("block", block, BLOCKS)
    checks.choice("stride_on", stride_on, STRIDE_ON)
    checks.choice("shortcut_kind", shortcut_kind, SHORTCUTS)
    bn = {"momentum": bn_momentum, "epsilon": bn_epsilon}
    # In v2 a convolution feeding straight into a sum carries the bias instead
    # of the batch norm that v1 would put there.
    last_bias = conv_bias
    mid_bias = conv_bias and not preact
    last_init = "zeros" if zero_init_last and preact else None

    inputs = x
    if preact:
        x = batch_norm(x, name=f"{name}_preact_bn", **bn)
        x = layers.Activation("relu", name=f"{name}_preact_relu")(x)
    branch_input = x

    out_channels = planes * EXPANSION[block]
    x, last = _branch(x, planes, out_channels, name=name, block=block, strides=strides,
                      cardinality=cardinality, width_per_group=width_per_group,
                      stride_on=stride_on, mid_bias=mid_bias, last_bias=last_bias,
                      last_init=last_init, bn=bn)
    if not preact:
        x = batch_norm(x, name=f"{last}_bn", zero_gamma=zero_init_last, after_bias=last_bias,
                       **bn)
    if se_ratio:
        x = squeeze_excite(x, ratio=se_ratio, name=name)
    if drop_path_rate > 0:
        # Dropout with a per-sample noise shape drops the whole branch of a
        # sample and rescales the survivors: stochastic depth.
        x = layers.Dropout(drop_path_rate, noise_shape=(None, 1, 1, 1),
                           name=f"{name}_drop_path")(x)

    if shortcut_kind != "none":
        s = shortcut(inputs, branch_input, out_channels, kind=shortcut_kind, strides=strides,
                     use_bias=conv_bias, name=name, batch_norm_kwargs=None if preact else bn)
        x = layers.Add(name=f"{name}_out" if preact else f"{name}_add")([s, x])
    if not preact:
        x = layers.Activation("relu", name=f"{name}_out")(x)
    return x


def _branch(x, planes, out_channels, *, name, block, strides, cardinality, width_per_group,
            stride_on, mid_bias, last_bias, last_init, bn):
    """A residual block's convolutions up to its last (without the last batch norm):
    ``(output, name of the last convolution)``."""
    if block == "bottleneck":
        width = bottleneck_width(planes, cardinality, width_per_group)
        s1, s3 = (strides, 1) if stride_on == "1x1" else (1, strides)
        x = _conv_bn_relu(x, width, 1, s1, name=f"{name}_1", use_bias=mid_bias, bn=bn)
        x = _conv_bn_relu(x, width, 3, s3, name=f"{name}_2", use_bias=mid_bias, bn=bn,
                          groups=cardinality)
        last = f"{name}_3"
        x = conv2d(x, out_channels, 1, use_bias=last_bias, kernel_initializer=last_init,
                   name=last)
        return x, last
    if cardinality != 1:
        raise ValueError(
            "cardinality > 1 needs bottleneck blocks (ResNeXt groups the bottleneck's 3x3 "
            f"convolution). Received: cardinality={cardinality} with block='basic'"
        )
    x = _conv_bn_relu(x, planes, 3, strides, name=f"{name}_1", use_bias=mid_bias, bn=bn)
    last = f"{name}_2"
    x = conv2d(x, out_channels, 3, use_bias=last_bias, kernel_initializer=last_init,
               name=last)
    return x, last


def _conv_bn_relu(x, filters, kernel_size, strides, *, name, use_bias, bn, groups=1):
    """Convolution ``{name}``, batch norm ``{name}_bn``, ReLU ``{name}_relu``."""
    x = conv2d(x, filters, kernel_size, strides=strides, groups=groups, use_bias=use_bias,
               name=name)
    x = batch_norm(x, name=f"{name}_bn", after_bias=use_bias, **bn)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def residual_stage(x, planes, depth, *, name, strides=2, downsample="first",
                   drop_path_rates=None, **block_kwargs):
    """`depth` residual blocks named ``{name}_block1`` ... ``{name}_block{depth}``.

    Args:
        x: input tensor.
        planes: the stage's base width.
        depth: number of blocks.
        name: stage name (``conv2`` ... ``conv5``).
        strides: the stage's stride.
        downsample: ``"first"`` (the papers, torchvision) or ``"last"``
            (keras.applications ResNet-V2): which block carries the stride.
        drop_path_rates: one stochastic-depth rate per block, or ``None``.
        **block_kwargs: passed to `residual_block`.

    Returns:
        The stage's output tensor.
    """
    strided = 0 if downsample == "first" else depth - 1
    rates = drop_path_rates or [0.0] * depth
    for i in range(depth):
        x = residual_block(x, planes, strides=strides if i == strided else 1,
                           drop_path_rate=rates[i], name=f"{name}_block{i + 1}", **block_kwargs)
    return x


def resnet_stem(x, *, kind, width, preact=False, use_bias=False, bn_momentum=0.9,
                bn_epsilon=1e-5):
    """The stem: ``imagenet`` (7x7/2 convolution and 3x3/2 max-pool) or ``cifar`` (3x3).

    Pre-activation networks leave out the stem's batch norm and ReLU (the
    first block normalises its input).

    Args:
        x: the image tensor.
        kind: ``"imagenet"`` or ``"cifar"``.
        width: output channels.
        preact: build the pre-activation stem.
        use_bias: bias on the stem convolution.
        bn_momentum: batch norm momentum.
        bn_epsilon: batch norm epsilon.

    Returns:
        The stem's output tensor.
    """
    if kind == "imagenet":
        x = conv2d(x, width, 7, strides=2, use_bias=use_bias, name="conv1")
    else:
        x = conv2d(x, width, 3, use_bias=use_bias, name="conv1")
    if not preact:
        x = batch_norm(x, name="conv1_bn", momentum=bn_momentum, epsilon=bn_epsilon,
                       after_bias=use_bias)
        x = layers.Activation("relu", name="conv1_relu")(x)
    if kind == "imagenet":
        # Zero padding equals PyTorch's -inf padding after a ReLU; before one
        # (pre-activation) it is what keras.applications ResNet-V2 does.
        x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    return x
