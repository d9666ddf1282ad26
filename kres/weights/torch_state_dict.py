"""Weights of timm and torchvision ResNets, loaded into kres models.

timm (``timm.create_model("resnet50")``) and torchvision publish their
ResNet-family weights as PyTorch state dicts, usually as ``.safetensors``
files. `kres.weights.safetensors_file.read_safetensors` reads such a file
with NumPy alone (no PyTorch, no ``safetensors`` package) and
`load_timm_weights` maps the state dict onto a
kres model built in the same architecture, layer by layer, by name::

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

import os
import re
from collections.abc import Mapping

import keras
import numpy as np

from kres.layers import ZeroPadChannels
from kres.weights.safetensors_file import read_safetensors

SUPPORTED = (
    "load_timm_weights supports the post-activation ImageNet networks kres builds in its "
    "default layout: ResNet v1/v1.5 (resnet18 ... resnet152), ResNeXt, Wide ResNet and "
    "SE-ResNet(Xt), with the stride on the 3x3 convolution and no convolution biases."
)

_BLOCK_LAYER = re.compile(r"^conv(\d+)_block(\d+)_(?:(\d)_(conv|bn)|se_(reduce|expand))$")
_BN_TENSORS = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
               ("running_var", "moving_variance"))
_STEM_AND_HEAD = ("conv1_conv", "conv1_bn", "predictions")
_SHOWN = 5  # names listed in a message before "... and N more"


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

    >>> model = kres.build_model("resnet50", classifier_activation=None)  # doctest: +SKIP
    >>> load_timm_weights(model, "resnet50.a1_in1k.safetensors")  # doctest: +SKIP
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model built by kres. Received: model={model!r}")
    _check_layout(model)
    if isinstance(path, Mapping):
        state = {str(name): np.asarray(value) for name, value in path.items()}
        received = f"path=<state dict of {len(state)} tensors>"
        source = "the state dict"
    else:
        state = read_safetensors(path)
        received = f"path={os.fspath(path)!r}"
        source = f"the state dict {os.fspath(path)!r}"
    slots = _weight_slots(model)
    include_top = any(slot.tensor.startswith("fc.") for slot in slots)

    problems, values = [], []
    missing = [slot.tensor for slot in slots if slot.tensor not in state]
    for slot in slots:
        if slot.tensor not in state:
            continue
        array = state[slot.tensor]
        expected = slot.torch_shape()
        if slot.layer == "predictions" and array.shape != expected:
            problems.insert(0, _classes_problem(slot, array, state))
            continue
        if array.shape != expected:
            problems.append(
                f"tensor {slot.tensor!r} has shape {array.shape}; kres layer {slot.layer!r} "
                f"expects {expected} for its {slot.name} (Keras shape {slot.keras_shape})"
            )
            continue
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            problems.append(f"tensor {slot.tensor!r} has dtype {array.dtype}; kres layer "
                            f"{slot.layer!r} needs numbers for its {slot.name}")
            continue
        values.append((slot.variable, slot.to_keras(array)))
    # A wrong class count is reported once, not again for fc.bias.
    problems = list(dict.fromkeys(problems))
    expected_names = {slot.tensor for slot in slots}
    unexpected = sorted(
        name for name in state
        if name not in expected_names and not name.endswith(".num_batches_tracked")
        and not (not include_top and name.startswith("fc."))
    )
    if missing:
        problems.append(f"{_count(missing, 'tensor')} that the model needs "
                        f"{'is' if len(missing) == 1 else 'are'} missing: {_names(missing)}")
    if unexpected:
        problems.append(f"{_count(unexpected, 'tensor')} "
                        f"{'has' if len(unexpected) == 1 else 'have'} no kres counterpart in "
                        f"{model.name!r}: {_names(unexpected)}")
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise ValueError(
            f"Cannot load {source} into model {model.name!r} "
            f"({_count(problems, 'problem')}; nothing was loaded):\n{listing}\n"
            f"Received: {received}"
        )
    for variable, value in values:
        variable.assign(value)
    return model


class _Slot:
    """One kres variable and the timm tensor that fills it."""

    def __init__(self, tensor, layer, name, variable, kind):
        self.tensor = tensor  # timm name
        self.layer = layer  # kres layer name
        self.name = name  # kernel, bias, gamma, ...
        self.variable = variable
        self.kind = kind  # "conv", "dense" or "vector"

    @property
    def keras_shape(self):
        return tuple(self.variable.shape)

    def torch_shape(self):
        s = self.keras_shape
        if self.kind == "conv":
            return (s[3], s[2], s[0], s[1])
        if self.kind == "dense":
            return (s[1], s[0])
        return s

    def to_keras(self, array):
        if self.kind == "conv":
            array = array.transpose(2, 3, 1, 0)
        elif self.kind == "dense":
            array = array.T
        return np.ascontiguousarray(array, dtype=self.variable.dtype)


def _weight_slots(model):
    """The timm tensor of every kres variable, found from the layer names.

    Runs after `_check_layout`, which leaves only layers of known names.
    """
    slots = []

    def conv(layer, prefix, bias=False):
        _check_type(model, layer, keras.layers.Conv2D)
        slots.append(_Slot(f"{prefix}.weight", layer.name, "kernel", layer.kernel, "conv"))
        if bias:
            slots.append(_Slot(f"{prefix}.bias", layer.name, "bias", layer.bias, "vector"))

    def bn(layer, prefix):
        _check_type(model, layer, keras.layers.BatchNormalization)
        if not (layer.scale and layer.center):
            _refuse(model, f"its batch norm {layer.name!r} has no scale or no offset")
        for torch_name, keras_name in _BN_TENSORS:
            slots.append(_Slot(f"{prefix}.{torch_name}", layer.name, keras_name,
                               getattr(layer, keras_name), "vector"))

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
            slots.append(_Slot("fc.weight", name, "kernel", layer.kernel, "dense"))
            slots.append(_Slot("fc.bias", name, "bias", layer.bias, "vector"))
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


def _classes_problem(slot, array, state):
    classes = slot.keras_shape[-1]
    weight = state.get("fc.weight")
    found = weight.shape[0] if weight is not None and weight.ndim == 2 else None
    features = slot.keras_shape[0] if slot.kind == "dense" else None
    if found is not None and (features is None or weight.shape[1] == features):
        return (f"the classifier 'fc.weight' has {found} outputs, but the model was built "
                f"with classes={classes} (layer 'predictions'); build it with classes={found}, "
                "or with include_top=False to load only the features")
    return (f"tensor {slot.tensor!r} has shape {array.shape}; kres layer 'predictions' expects "
            f"{slot.torch_shape()} for its {slot.name} (Keras shape {slot.keras_shape}, "
            f"classes={classes})")


def _names(names):
    shown = ", ".join(repr(n) for n in names[:_SHOWN])
    return shown + (f", ... ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else "")


def _count(items, noun):
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"
