"""Classifiers as backbones: their stage outputs, for detectors and segmenters.

`feature_extractor` turns a registered model (built without its classifier)
or a kres classifier (whose layers it then shares) into a Functional model
whose outputs are the network's stage outputs: ``C2`` ... ``C5`` at strides
4, 8, 16 and 32, the inputs of a feature pyramid network.

Stage ``C<k>`` is always the output at stride ``2**k``: the last layer at
that stride, as the family's module declares it (its ``stage_outputs``,
worked out from the spec; see `kres.models.family.Family`). For a model passed
in, the family reads the fields it needs back from the model's layers
(``layout_of``). What the families declare for the default networks:

=========  =======================  ========================  ======================
stage      ResNet v1, ResNeXt, SE   ResNet-V2 (keras layout)  DenseNet-121
=========  =======================  ========================  ======================
C1 (/2)    ``conv1_relu``           ``conv1_conv``            ``conv1_relu``
C2 (/4)    ``conv2_block{n}_out``   ``conv2_block{n-1}_out``  ``conv2_block6_concat``
C3 (/8)    ``conv3_block{n}_out``   ``conv3_block{n-1}_out``  ``conv3_block12_concat``
C4 (/16)   ``conv4_block{n}_out``   ``conv4_block{n-1}_out``  ``conv4_block24_concat``
C5 (/32)   ``conv5_block{n}_out``   ``post_relu``             ``relu``
=========  =======================  ========================  ======================

(``{n}`` is the stage's number of blocks: keras.applications' ResNet-V2
strides the last block of stages 2 to 4, so the last stride-4 output is the
block before it.) VGG: ``C<k>`` is the last convolution of block ``k + 1``
(before its max-pool; ``C0`` is block 1's) and ``C5`` is ``block5_pool``.
GoogLeNet: ``C2`` is the stem's ``conv3`` (``conv3_relu``, or ``conv3_lrn``
in the paper's network), ``C3`` ``inception3b_output``, ``C4``
``inception4e_output``, ``C5`` ``inception5b_output``. CIFAR networks have
strides 1, 2 and 4 only: stages ``C0``, ``C1``, ``C2``. AlexNet is refused
(its family says why).

``docs/backbones.md`` explains these choices and how to feed the extractor
to keras-hub and KerasCV detectors.
"""

import collections
import re

import keras

from kres import checks
from kres.layers import BatchNormalization
from kres.models import registry
from kres.models.inference import leaves
from kres.models.template import one_or_all

DEFAULT_STAGES = ("C2", "C3", "C4", "C5")

Stage = collections.namedtuple("Stage", "layer stride channels")
Stage.__doc__ = """One stage output: its layer's name, stride and channel count."""

_STAGE = re.compile(r"C(\d+)")
_NOT_FROM_MODEL = ("include_top", "pooling")


def feature_extractor(model_or_name, stages=DEFAULT_STAGES, *, freeze_batch_norm=False,
                      **kwargs):
    """A Functional model whose outputs are a network's stage outputs.

    The outputs are a dict keyed by the stage names asked for (``{"C2":
    ..., "C5": ...}``); ``C<k>`` is at stride ``2**k`` (its height is the
    input's divided by ``2**k``, rounded up where the network pads, down
    after unpadded pooling: see ``docs/backbones.md``). Each output passes
    through a weightless ``Identity`` layer named after its stage, so
    ``extractor.get_layer("C3")`` and Keras's output names are the stage
    names. The model also carries, as keras-hub's backbones do,
    ``pyramid_outputs`` (``{"P2": tensor, ...}``, the same tensors keyed by
    level) and, as KerasCV's do, ``pyramid_level_inputs`` (``{"P2": "C2",
    ...}``, level to layer name). Neither attribute survives saving to a
    ``.keras`` file: rebuild it from the loaded model's layers.

    The outputs keep the dtype the layers compute in (``float16`` or
    ``bfloat16`` under a mixed policy); nothing is cast.

    Args:
        model_or_name: a registry name (see `kres.list_models`), built here
            without its classifier, for inputs of any size unless
            `input_shape` says otherwise; or a kres model (a classifier, with
            or without its top), whose layers the extractor then uses: the
            two share their weights, so training one trains the other. Do
            not nest both in one model: it would save but not load (Keras
            rebuilds nested models apart); for class scores beside features,
            make one model of the classifier's graph, ``keras.Model(
            classifier.input, {"classes": classifier.output,
            **extractor.output})`` (docs/backbones.md, "Saving").
        stages: the stage names to output, ``"C0"`` ... ``"C5"`` (one name
            or a sequence); by default ``("C2", "C3", "C4", "C5")``.
            `stage_layers` lists what a model has.
        freeze_batch_norm: freeze every batch norm layer of the extractor
            for good (`freeze_batch_norms`): it normalises with its moving
            statistics in training too, and its scale, offset and statistics
            never change, even after ``backbone.trainable = True`` (as
            detectors fine-tune pretrained backbones at small batch sizes);
            saved with the model. With a model passed in, this changes the
            layers it shares with the extractor, so the classifier's batch
            norms are frozen too.
        **kwargs: with a name only: arguments of `kres.build_model`:
            ``weights`` (``"imagenet"``, a timm ``.safetensors`` file or any
            weights file kres reads), ``input_shape`` (default ``(None,
            None, 3)``), ``input_tensor``, ``dtype``, ``name`` and spec
            fields (``depths=(2, 2, 2, 2)``, ...).

    Returns:
        A Functional `keras.Model` with dict outputs, named
        ``"{model name}_backbone"``.

    Raises:
        ValueError: for a model or name of no family with stage outputs
            (AlexNet, a model that is not kres's), `stages` that are not
            stage names or that the network does not have (a CIFAR network
            has only ``C0``, ``C1``, ``C2``), keyword arguments with a model
            passed in or ones that make no sense for an extractor
            (`include_top`, `pooling`), and whatever `kres.build_model`
            refuses. With a name, these are raised before the model is built.

    Example:

    With ``weights="imagenet"`` (a download) the backbone is pretrained; here
    its weights are random:

    >>> import numpy as np
    >>> import kres
    >>> backbone = kres.feature_extractor("resnet50", weights=None, freeze_batch_norm=True)
    >>> features = backbone(np.zeros((1, 256, 320, 3), "float32"))
    >>> {k: tuple(v.shape) for k, v in features.items()}  # doctest: +NORMALIZE_WHITESPACE
    {'C2': (1, 64, 80, 256), 'C3': (1, 32, 40, 512), 'C4': (1, 16, 20, 1024),
     'C5': (1, 8, 10, 2048)}
    """
    stages = _check_stages(stages)
    checks.boolean("freeze_batch_norm", freeze_batch_norm)
    if isinstance(model_or_name, str):
        model = _build(model_or_name, stages, kwargs)
    elif isinstance(model_or_name, keras.Model):
        if kwargs:
            raise ValueError(
                "Keyword arguments build a model from a registry name; a model passed in is "
                f"used as it is. Received: model_or_name={model_or_name.name!r} with "
                f"{', '.join(f'{k}={v!r}' for k, v in kwargs.items())}")
        model = model_or_name
    else:
        raise ValueError(
            "model_or_name must be a registry name (see kres.list_models()) or a kres "
            f"keras.Model. Received: model_or_name={model_or_name!r}")
    table = stage_layers(model)
    _check_available(stages, table, model.name)
    outputs = {}
    for stage in stages:
        layer = model.get_layer(table[stage].layer)
        # The layer's own dtype policy, so that a mixed-precision output is not cast;
        # by name: a policy object is no config value, and the model would not save.
        outputs[stage] = keras.layers.Identity(name=stage, dtype=layer.dtype_policy.name)(
            layer.output)
    # One input alone, also for a model made from a list of one (Keras warns at each call).
    extractor = keras.Model(one_or_all(model.inputs), outputs, name=f"{model.name}_backbone")
    extractor.pyramid_outputs = {f"P{stage[1:]}": tensor for stage, tensor in outputs.items()}
    extractor.pyramid_level_inputs = {f"P{stage[1:]}": stage for stage in stages}
    if freeze_batch_norm:
        freeze_batch_norms(extractor)
    return extractor


def freeze_batch_norms(model):
    """Freezes every batch norm layer of `model` for good (`kres.layers.BatchNormalization`'s
    `frozen`): moving statistics in training too, nothing updated, whatever
    ``trainable`` is set to later; saved with the model.

    Returns:
        The number of layers frozen.

    Raises:
        ValueError: for a batch norm layer that is Keras's own (a model that
            is not kres's), which `trainable = True` would unfreeze again.
    """
    norms = [layer for layer in leaves(model)
             if isinstance(layer, keras.layers.BatchNormalization)]
    foreign = [layer.name for layer in norms if not isinstance(layer, BatchNormalization)]
    if foreign:
        raise ValueError(
            f"freeze_batch_norm freezes kres's batch norm for good; {model.name!r} has Keras's "
            f"own ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}), which "
            f"the next `trainable = True` would unfreeze. Build the model with kres.")
    for layer in norms:
        layer.frozen = True
    return len(norms)


def stage_layers(model):
    """The stage outputs a kres model has: stage name -> `Stage`.

    Args:
        model: a kres model of a family with stage outputs.

    Returns:
        A dict from ``"C<k>"`` (in order) to ``Stage(layer, stride,
        channels)``: the name of the layer whose output is that stage, its
        stride ``2**k`` and its number of channels.

    Raises:
        ValueError: for a model of no family with stage outputs (AlexNet, a
            model that is not kres's).

    Example:

    >>> import kres
    >>> from kres.models.backbones import stage_layers
    >>> stage_layers(kres.build_model("resnet18"))["C5"]
    Stage(layer='conv5_block2_out', stride=32, channels=512)
    """
    family = _family(model)
    present = {layer.name for layer in model.layers}
    return {stage: Stage(layer, 2 ** int(stage[1:]), model.get_layer(layer).output.shape[-1])
            for stage, layer in family.stage_outputs(family.layout_of(model)).items()
            if layer in present}


def _build(name, stages, kwargs):
    """The model of a registry name without its classifier, after every check
    that needs no model."""
    entry = registry.lookup(name)
    family = registry.FAMILIES[entry.family]
    if family.stage_outputs is None:
        _refuse(family, f"model_or_name={name!r}")
    for key in _NOT_FROM_MODEL:
        if key in kwargs:
            raise ValueError(
                f"{key} is not an argument of feature_extractor: the extractor is built "
                f"without the classifier and outputs the stage feature maps. "
                f"Received: {key}={kwargs[key]!r}")
    overrides = {k: v for k, v in kwargs.items() if k not in registry.BUILD_ARGS}
    if isinstance(kwargs.get("weights"), str) and kwargs["weights"] == "imagenet":
        # Published weights and their layout, checked before anything is fetched.
        overrides = registry.published_weights(name).overrides(
            name, overrides, include_top=False, classes=entry.spec.default_classes)
    spec = registry.resolve_spec(name, **overrides)
    _check_available(stages, family.stage_outputs(spec), name)
    if "input_shape" not in kwargs and "input_tensor" not in kwargs:
        kwargs = {**kwargs, "input_shape": (None, None, 3)}
    return registry.build_model(name, include_top=False, **kwargs)


def _check_stages(stages):
    """`stages` as a tuple of distinct stage names in level order."""
    if isinstance(stages, str):
        stages = (stages,)
    try:
        names = tuple(stages)
    except TypeError:
        names = None
    if (not names or not all(isinstance(s, str) and _STAGE.fullmatch(s) for s in names)
            or len(set(names)) != len(names)):
        raise ValueError(
            "stages must be one or more distinct stage names 'C<k>' (the output at stride "
            "2**k), such as ('C2', 'C3', 'C4', 'C5'). Received: "
            f"stages={stages!r}")
    return tuple(sorted(names, key=lambda s: int(s[1:])))


def _check_available(stages, table, model_name):
    missing = [s for s in stages if s not in table]
    if missing:
        deepest = max(int(s[1:]) for s in table)
        note = (f" (it downsamples by {2 ** deepest} at most)"
                if any(int(s[1:]) > deepest for s in missing) else "")
        raise ValueError(
            f"stages must be stages that {model_name!r} has: {', '.join(table)}{note}; "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not among them "
            f"(C<k> is the output at stride 2**k). Received: stages={stages!r}")


def _family(model):
    """The family of a model with stage outputs, from the layer name its family declares."""
    names = [layer.name for layer in model.layers]
    # Families with stage outputs first: a refused family's signature is only asked last.
    for family in sorted(registry.FAMILIES.values(), key=lambda f: f.stage_outputs is None):
        if any(re.fullmatch(family.signature, n) for n in names):
            if family.stage_outputs is None:
                _refuse(family, f"model_or_name={model.name!r}")
            return family
    raise ValueError(
        "model_or_name must be a kres model of a family with stage outputs "
        f"({_supported()}); {model.name!r} has none of their layer names. "
        f"Received: model_or_name={model.name!r}")


def _refuse(family, received):
    raise ValueError(
        f"feature_extractor does not support {family.name}: {family.no_stages}. "
        f"It supports {_supported()}. Received: {received}")


def _supported():
    return "; ".join(f"{family.name}: {family.description}"
                     for family in registry.FAMILIES.values() if family.stage_outputs)
