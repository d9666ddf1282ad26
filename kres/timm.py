"""Weights of timm and torchvision ResNets, loaded into kres models.

timm (``timm.create_model("resnet50")``) and torchvision publish their
ResNet-family weights as PyTorch state dicts, usually as ``.safetensors``
files. `read_safetensors` reads such a file with NumPy alone (no PyTorch, no
``safetensors`` package) and `load_timm_weights` maps the state dict onto a
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

import json
import math
import os
import re
from collections.abc import Mapping

import keras
import numpy as np

from kres.layers import ZeroPadChannels

# safetensors dtype name -> NumPy dtype of the stored bytes (little-endian).
# BF16 is read as raw 16-bit words and widened to float32.
SAFETENSORS_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}

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


def read_safetensors(path):
    """Reads a ``.safetensors`` file into NumPy arrays, without PyTorch.

    The format: an 8-byte little-endian header length, a JSON header mapping
    each tensor name to its ``dtype``, ``shape`` and ``data_offsets`` (begin
    and end, relative to the data buffer that follows the header), optionally
    a ``__metadata__`` entry, and the raw little-endian data buffer. Supported
    dtypes: F64, F32, F16, BF16 (returned as float32, which holds every
    bfloat16 exactly), I64, I32, I16, I8, U8 and BOOL.

    Args:
        path: path of the ``.safetensors`` file.

    Returns:
        A dict mapping each tensor's name to a NumPy array of its shape (the
        ``__metadata__`` entry is left out).

    Raises:
        ValueError: if the file cannot be read, is too short, has a header
            that is not a JSON object, or describes a tensor with an
            unsupported dtype, an invalid shape, or data offsets outside the
            data buffer or inconsistent with its shape and dtype. The message
            names the file and, where one is at fault, the tensor.

    Example:

    >>> tensors = read_safetensors("resnet50.a1_in1k.safetensors")  # doctest: +SKIP
    >>> tensors["fc.weight"].shape  # doctest: +SKIP
    (1000, 2048)
    """
    try:
        path = os.fspath(path)
    except TypeError:
        raise ValueError(
            f"path must be the path of a .safetensors file. Received: path={path!r}"
        ) from None
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 8:
                raise ValueError(
                    f"The file is too short to be a safetensors file: {size} bytes, while the "
                    f"header length alone takes 8. Received: path={path!r}"
                )
            header_len = int.from_bytes(f.read(8), "little")
            if header_len > size - 8:
                raise ValueError(
                    f"The safetensors file is truncated or not a safetensors file: it announces "
                    f"a {header_len}-byte header, but only {size - 8} bytes follow. "
                    f"Received: path={path!r}"
                )
            raw_header = f.read(header_len)
            buffer = np.fromfile(f, dtype=np.uint8)
    except OSError as error:
        raise ValueError(
            f"Cannot read the safetensors file: {error.strerror or error}. Received: path={path!r}"
        ) from error
    try:
        header = json.loads(raw_header.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"The header of the safetensors file is not valid JSON ({error}); the file is "
            f"corrupted or not a safetensors file. Received: path={path!r}"
        ) from error
    if not isinstance(header, dict):
        raise ValueError(
            "The header of the safetensors file must be a JSON object, not "
            f"{type(header).__name__}. Received: path={path!r}"
        )
    return {name: _decode_tensor(name, info, buffer, path)
            for name, info in header.items() if name != "__metadata__"}


def _decode_tensor(name, info, buffer, path):
    """One tensor of a safetensors file, validated against its header entry."""

    def invalid(problem, received):
        return ValueError(
            f"Tensor {name!r} of the safetensors file {path!r} {problem}. "
            f"Received: {received} in path={path!r}"
        )

    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
        raise invalid("needs a header entry with 'dtype', 'shape' and 'data_offsets'",
                      f"{name}={info!r}")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if dtype not in SAFETENSORS_DTYPES:
        raise invalid(f"has an unsupported dtype (supported: {', '.join(SAFETENSORS_DTYPES)})",
                      f"dtype={dtype!r}")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise invalid("needs a shape that is a list of non-negative integers",
                      f"shape={shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(_is_int(o) for o in offsets)):
        raise invalid("needs data_offsets [begin, end], two integers",
                      f"data_offsets={offsets!r}")
    begin, end = offsets
    if not 0 <= begin <= end <= buffer.size:
        raise invalid(f"has data offsets outside the {buffer.size}-byte data buffer (the file "
                      "may be truncated)", f"data_offsets={offsets}")
    stored = SAFETENSORS_DTYPES[dtype]
    expected = math.prod(shape) * stored.itemsize
    if end - begin != expected:
        raise invalid(f"spans {end - begin} bytes, but shape {shape} of {dtype} takes "
                      f"{expected}", f"data_offsets={offsets}")
    array = buffer[begin:end].view(stored).reshape(shape)
    if dtype == "BF16":
        # A bfloat16 is the high half of a float32.
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array.astype(stored.newbyteorder("="), copy=True)


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
            file cannot be read (see `read_safetensors`); or if the state dict
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


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)
