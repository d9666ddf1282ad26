"""PyTorch state dicts (timm, torchvision) into Keras variables: the format, not the names.

A family that takes timm or torchvision weights maps its layers to the state
dict's tensor names (the ResNet family: `kres.models.families.resnet_timm`),
as a list of `Slot` objects made with `conv_slots`, `batch_norm_slots` and
`dense_slots`; `load_state_dict` then reads the ``.safetensors`` file with
NumPy alone (`kres.weights.safetensors_file.read_safetensors`), turns
PyTorch's layouts into Keras's (a convolution's ``(out, in, kh, kw)`` into
``(kh, kw, in, out)``, a linear layer's ``(out, in)`` into ``(in, out)``),
checks every tensor against its variable and assigns them all or none.
"""

import os
from collections.abc import Mapping

import numpy as np

from kres.weights.safetensors_file import read_safetensors

_BN_TENSORS = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
               ("running_var", "moving_variance"))
_SHOWN = 5  # names listed in a message before "... and N more"


def load_state_dict(model, path, slots, *, classifier_prefix="fc."):
    """Loads a PyTorch state dict into `model` through `slots`, all or nothing.

    Args:
        model: the Keras model the slots' variables belong to.
        path: a ``.safetensors`` file, or the state dict itself as a mapping
            of names to arrays.
        slots: the `Slot` of every variable to fill (see `conv_slots`, ...).
        classifier_prefix: the classifier's tensor-name prefix, whose tensors
            a model built without its classifier ignores.

    Returns:
        `model`, with its weights replaced.

    Raises:
        ValueError: if the file cannot be read, or the state dict does not
            match the slots: a tensor of the wrong shape (naming it, the
            Keras layer, and both shapes), tensors missing or left over
            (naming a few and counting them), or a classifier for another
            number of classes. Nothing is assigned then.
    """
    if isinstance(path, Mapping):
        state = {str(name): np.asarray(value) for name, value in path.items()}
        received = f"path=<state dict of {len(state)} tensors>"
        source = "the state dict"
    else:
        state = read_safetensors(path)
        received = f"path={os.fspath(path)!r}"
        source = f"the state dict {os.fspath(path)!r}"
    include_top = any(slot.tensor.startswith(classifier_prefix) for slot in slots)
    problems, values = [], []
    missing = [slot.tensor for slot in slots if slot.tensor not in state]
    for slot in slots:
        if slot.tensor not in state:
            continue
        array = state[slot.tensor]
        expected = slot.torch_shape()
        if slot.tensor.startswith(classifier_prefix) and array.shape != expected:
            problems.insert(0, _classes_problem(slot, array, state, classifier_prefix))
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
        and not (not include_top and name.startswith(classifier_prefix))
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




class Slot:
    """One Keras variable and the state dict's tensor that fills it.

    Attributes:
        tensor: the tensor's name in the state dict.
        layer: the Keras layer's name.
        name: the variable's name in the layer (``kernel``, ``gamma``, ...).
        variable: the Keras variable.
        kind: ``"conv"``, ``"dense"`` or ``"vector"`` (how PyTorch lays it out).
    """

    def __init__(self, tensor, layer, name, variable, kind):
        self.tensor = tensor
        self.layer = layer
        self.name = name
        self.variable = variable
        self.kind = kind

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


def conv_slots(layer, prefix, bias=False):
    """The slots of a convolution: ``{prefix}.weight`` (and ``{prefix}.bias``)."""
    slots = [Slot(f"{prefix}.weight", layer.name, "kernel", layer.kernel, "conv")]
    if bias:
        slots.append(Slot(f"{prefix}.bias", layer.name, "bias", layer.bias, "vector"))
    return slots


def batch_norm_slots(layer, prefix):
    """The slots of a batch norm: ``{prefix}.weight``, ``.bias``, ``.running_mean``,
    ``.running_var``."""
    return [Slot(f"{prefix}.{torch_name}", layer.name, keras_name, getattr(layer, keras_name),
                 "vector") for torch_name, keras_name in _BN_TENSORS]


def dense_slots(layer, prefix):
    """The slots of a classifier: ``{prefix}.weight`` and ``{prefix}.bias``."""
    return [Slot(f"{prefix}.weight", layer.name, "kernel", layer.kernel, "dense"),
            Slot(f"{prefix}.bias", layer.name, "bias", layer.bias, "vector")]


def _classes_problem(slot, array, state, prefix):
    classes = slot.keras_shape[-1]
    weight_name = f"{prefix}weight"
    weight = state.get(weight_name)
    found = weight.shape[0] if weight is not None and weight.ndim == 2 else None
    features = slot.keras_shape[0] if slot.kind == "dense" else None
    if found is not None and (features is None or weight.shape[1] == features):
        return (f"the classifier {weight_name!r} has {found} outputs, but the model was built "
                f"with classes={classes} (layer {slot.layer!r}); build it with classes={found}, "
                "or with include_top=False to load only the features")
    return (f"tensor {slot.tensor!r} has shape {array.shape}; kres layer {slot.layer!r} expects "
            f"{slot.torch_shape()} for its {slot.name} (Keras shape {slot.keras_shape}, "
            f"classes={classes})")


def _names(names):
    shown = ", ".join(repr(n) for n in names[:_SHOWN])
    return shown + (f", ... ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else "")


def _count(items, noun):
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"
