"""The ResNet family's timm/torchvision mapping: their ResNet weights into kres models.

timm (``timm.create_model("resnet50")``) and torchvision publish their
ResNet-family weights as PyTorch state dicts, usually as ``.safetensors``
files. `load_timm_weights` maps the state dict onto a kres model built in
the same architecture, layer by layer, by name, and hands the pairs to
`kres.weights.torch_state_dict.load_state_dict` (NumPy only: no PyTorch, no
``safetensors`` package)::

    conv1.weight                    -> conv1_conv
    bn1.{weight,bias,running_*}     -> conv1_bn
    layer1.0.conv2.weight           -> conv2_block1_2_conv
    layer1.0.bn2.*                  -> conv2_block1_2_bn
    layer1.0.downsample.{0,1}.*     -> conv2_block1_0_conv, conv2_block1_0_bn
    layer1.0.se.{fc1,fc2}.*         -> conv2_block1_se_reduce, conv2_block1_se_expand
    fc.{weight,bias}                -> predictions

kres's default ImageNet residual networks are built like torchvision's v1.5
ResNets (stride on the bottleneck's 3x3 convolution, symmetric padding, batch
norm epsilon 1e-5, no convolution biases), so once loaded they compute what
the PyTorch model computes in eval mode. Like the PyTorch model they expect
inputs normalised the way the weights were trained (for timm's and
torchvision's ImageNet weights: RGB in [0, 1], minus the ImageNet mean, over
its standard deviation); kres models include no preprocessing.
"""

import re

import keras

from kres.layers import ZeroPadChannels
from kres.weights.torch_state_dict import (
    batch_norm_slots,
    conv_slots,
    dense_slots,
    load_state_dict,
)

SUPPORTED = (
    "load_timm_weights supports the post-activation ImageNet networks kres builds in its "
    "default layout: ResNet v1/v1.5 (resnet18 ... resnet152), ResNeXt, Wide ResNet and "
    "SE-ResNet(Xt), with the stride on the 3x3 convolution and no convolution biases."
)

_BLOCK_LAYER = re.compile(r"^conv(\d+)_block(\d+)_(?:(\d)_(conv|bn)|se_(reduce|expand))$")
_STEM_AND_HEAD = ("conv1_conv", "conv1_bn", "predictions")


def load_timm_weights(model, path):
    """Loads a timm or torchvision ResNet-family state dict into a kres model.

    The state dict uses PyTorch's names and layouts (``layer1.0.conv1.weight``
    of shape ``(out, in / groups, kh, kw)``, ``fc.weight`` of shape
    ``(classes, features)``, ...); see the module docstring for the mapping.
    Every tensor is checked against the model before anything is assigned, so
    a load that fails leaves the model exactly as it was. ``num_batches_tracked``
    buffers are ignored, and so are the classifier's ``fc.*`` tensors when the
    model was built with ``include_top=False`` (a feature extractor).

    Args:
        model: a kres model in the default post-activation ImageNet layout,
            e.g. ``kres.build_model("resnext50_32x4d")`` (see `SUPPORTED`).
        path: a ``.safetensors`` file of the state dict, or the state dict
            itself as a mapping of names to NumPy arrays.

    Returns:
        `model`, with its weights replaced.

    Raises:
        ValueError: if `model` is not in the supported layout (another
            family, a pre-activation, CIFAR or keras.applications-layout
            model, the stride on the 1x1, option-A or no shortcuts); if the
            file cannot be read (see
            `kres.weights.safetensors_file.read_safetensors`); or if the state dict
            does not match the model: a tensor of the wrong shape (naming it,
            the kres layer, and both shapes), tensors missing or left over
            (naming a few and counting them), or a classifier for another
            number of classes.

    Example:

    It needs timm's file from Hugging Face (``timm/resnet50.a1_in1k``'s
    ``model.safetensors``), a download, so it is skipped as a test:

    >>> import kres  # doctest: +SKIP
    >>> model = kres.build_model("resnet50", classifier_activation=None)  # doctest: +SKIP
    >>> model = kres.load_timm_weights(model, "model.safetensors")  # doctest: +SKIP
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model built by kres. Received: model={model!r}")
    _check_layout(model)
    return load_state_dict(model, path, _weight_slots(model), classifier_prefix="fc.")


def _weight_slots(model):
    """The timm tensor of every kres variable, found from the layer names.

    Runs after `_check_layout`, which leaves only layers of known names.
    """
    slots = []

    def conv(layer, prefix, bias=False):
        _check_type(model, layer, keras.layers.Conv2D)
        slots.extend(conv_slots(layer, prefix, bias))

    def bn(layer, prefix):
        _check_type(model, layer, keras.layers.BatchNormalization)
        if not (layer.scale and layer.center):
            _refuse(model, f"its batch norm {layer.name!r} has no scale or no offset")
        slots.extend(batch_norm_slots(layer, prefix))

    for layer in model.layers:
        if not layer.weights:
            continue
        name = layer.name
        match = _BLOCK_LAYER.match(name)
        if name == "conv1_conv":
            conv(layer, "conv1")
        elif name == "conv1_bn":
            bn(layer, "bn1")
        elif name == "predictions":
            _check_type(model, layer, keras.layers.Dense)
            slots.extend(dense_slots(layer, "fc"))
        else:
            stage, block, index, kind, se = match.groups()
            prefix = f"layer{int(stage) - 1}.{int(block) - 1}"
            if se:
                conv(layer, f"{prefix}.se.{'fc1' if se == 'reduce' else 'fc2'}", bias=True)
            elif index == "0":
                (conv if kind == "conv" else bn)(layer, f"{prefix}.downsample.{int(kind == 'bn')}")
            else:
                (conv if kind == "conv" else bn)(layer, f"{prefix}.{kind}{index}")
    return slots


def _check_layout(model):
    """Refuses models whose architecture timm's ResNet weights do not fit."""
    names = [layer.name for layer in model.layers]
    preact = [n for n in names if n.endswith("_preact_bn") or n == "post_bn"]
    if preact:
        _refuse(model, f"it is a pre-activation (v2) network (layer {preact[0]!r}), while "
                       "timm's and torchvision's ResNets are post-activation (v1)")
    foreign = [layer.name for layer in model.layers
               if layer.weights and not (layer.name in _STEM_AND_HEAD
                                         or _BLOCK_LAYER.match(layer.name))]
    if foreign:
        _refuse(model, f"its layer {foreign[0]!r} has weights but no counterpart in timm's "
                       "ResNet layout (it is not a residual network of that family)")
    if "conv1_conv" not in names:
        _refuse(model, "it has no 'conv1_conv' stem convolution")
    stem = model.get_layer("conv1_conv")
    _check_type(model, stem, keras.layers.Conv2D)
    if tuple(stem.kernel_size) == (3, 3):
        _refuse(model, "it is a CIFAR network (3x3 'conv1_conv' stem), while timm's ResNets "
                       "have the ImageNet stem (7x7/2 convolution and 3x3/2 max-pool)")
    if tuple(stem.kernel_size) != (7, 7) or tuple(stem.strides) != (2, 2):
        _refuse(model, f"its stem 'conv1_conv' is {stem.kernel_size} with strides "
                       f"{stem.strides}, not the ImageNet stem's 7x7/2")
    padded = [layer.name for layer in model.layers if isinstance(layer, ZeroPadChannels)]
    if padded:
        _refuse(model, f"its shortcuts are zero-padded identities (option A, layer {padded[0]!r}), "
                       "while timm's ResNets project them (shortcut='B')")
    blocks = [n[:-len("_1_conv")] for n in names if _BLOCK_LAYER.match(n) and n.endswith("_1_conv")]
    plain = [b for b in blocks if f"{b}_add" not in names]
    if plain:
        _refuse(model, f"it is a plain network without shortcuts (shortcut='none', block "
                       f"{plain[0]!r})")
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Conv2D):
            continue
        match = _BLOCK_LAYER.match(layer.name)
        if layer.use_bias and not (match and match.group(5)):
            _refuse(model, f"its convolutions have biases (layer {layer.name!r}): the "
                           "keras.applications layout (conv_bias=True), which timm's ResNets "
                           "do not have")
        if match and match.group(4) == "conv":
            _check_stride(model, layer, names, *match.groups()[:3])


def _check_stride(model, layer, names, stage, block, index):
    """Checks a block convolution's stride against timm's placement.

    timm and torchvision downsample in the first block of every stage after
    the first, on the bottleneck's 3x3 convolution (the first 3x3 of a basic
    block) and on the projection shortcut.
    """
    stage, block = int(stage), int(block)
    bottleneck = f"conv{stage}_block{block}_3_conv" in names
    stride = 2 if stage > 2 and block == 1 else 1
    strided = index in ("0", "2" if bottleneck else "1")
    expected = (stride, stride) if strided else (1, 1)
    if tuple(layer.strides) == expected:
        return
    if bottleneck and index == "1":
        _refuse(model, f"its bottlenecks carry the stride on the first 1x1 convolution "
                       f"(layer {layer.name!r}, stride_on='1x1', ResNet v1 as in "
                       "keras.applications), while timm's put it on the 3x3 (stride_on='3x3')")
    _refuse(model, f"layer {layer.name!r} has strides {tuple(layer.strides)} where timm's "
                   f"ResNet has {expected} (timm downsamples in the first block of each stage "
                   "after the first: downsample='first')")


def _check_type(model, layer, cls):
    if not isinstance(layer, cls):
        _refuse(model, f"its layer {layer.name!r} is a {type(layer).__name__}, where timm's "
                       f"ResNet layout has a {cls.__name__}")


def _refuse(model, reason):
    raise ValueError(
        f"Cannot load timm weights into model {model.name!r}: {reason}. {SUPPORTED} "
        f"Received: model={model.name!r}"
    )


