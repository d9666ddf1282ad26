"""Fine-tuning: a run that starts from pretrained weights.

`load_pretrained` reads the weights a run starts from (``"imagenet"``, a
kres ``.keras`` model, a Keras ``.weights.h5`` file, a keras.applications
``.h5`` file or a timm/torchvision ``.safetensors`` state dict) into the
network they were made for, with the normalisation they expect;
`transfer_weights` copies them, layer by layer and by name, into the run's
network, whose new classifier is sized to the dataset's classes.

The two-phase transfer recipe (`kres.training.recipes.RECIPES["transfer"]`) trains
the new classifier alone first (`freeze_backbone`: every other layer
frozen, batch norm in inference mode with its moving statistics), then the
network, or its last stages (`unfreeze`), at a lower learning rate.
`kres.training.run.train` runs the phases and resumes across their boundary.
"""

import dataclasses
import os

import keras

from kres import checks, rundir
from kres.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

# The layers a fine-tuning run makes new: the classifier.
HEAD = ("predictions",)
WEIGHTS_SUFFIXES = (".keras", ".weights.h5", ".h5", ".safetensors")
# The normalisation each family of published weights was trained with (as
# keras.applications' `preprocess_input` modes name them), on 0-255 RGB input.
MODES = {
    # BGR, the ImageNet mean subtracted, no scaling: Caffe's v1 ResNets and VGG.
    "caffe": dict(mean=(103.939 / 255, 116.779 / 255, 123.68 / 255), std=(1 / 255,),
                  channel_order="bgr"),
    # Scaled to [-1, 1]: the v2 ResNets.
    "tf": dict(mean=(0.5,), std=(0.5,)),
    # [0, 1], minus the ImageNet mean, over its standard deviation: DenseNet,
    # and timm's and torchvision's weights.
    "torch": dict(mean=IMAGENET_MEAN, std=IMAGENET_STD),
}


@dataclasses.dataclass
class Pretrained:
    """Pretrained weights, loaded into the network they were made for.

    Attributes:
        source: ``"imagenet"`` or the file's path.
        model: the network holding the weights (with its own classifier, or
            none).
        normalization: ``(mean, std, channel_order)`` the weights expect, or
            ``None`` when the file does not say (then the dataset's own
            statistics are used).
        mode: where the normalisation comes from: ``"caffe"``, ``"tf"``,
            ``"torch"``, ``"model"`` (a kres model's own
            `kres.layers.InputPreprocessing`), ``"run"`` (the ``model.json``
            of the kres run that saved the model) or ``"unknown"``.
        overrides: the spec fields the run's network needs to take these
            weights (keras.applications' layout for its v1 ResNets).
    """

    source: str
    model: object
    normalization: tuple | None
    mode: str
    overrides: dict

    @property
    def input_shape(self):
        """``(height, width, channels)`` of the weights' network (sizes may be None)."""
        return tuple(self.model.input_shape[1:])

    def preprocessing(self, height, width, resize):
        """The `kres.preprocessing.Preprocessing` of the run's input, or ``None``
        when the weights do not say how they normalise."""
        if self.normalization is None:
            return None
        mean, std, order = self.normalization
        return Preprocessing(height, width, self.input_shape[-1], tuple(mean), tuple(std),
                             resize, order)


def check_weights(weights):
    """`weights` must be ``None``, ``"imagenet"`` or an existing weights file of
    a kind kres reads (by suffix: `WEIGHTS_SUFFIXES`).

    Raises:
        ValueError: naming `weights` and the value received.
    """
    if weights is None or weights == "imagenet":
        return
    if not isinstance(weights, str) or not weights.endswith(WEIGHTS_SUFFIXES):
        checks.fail("weights", weights,
                    "must be 'imagenet' or a .keras, .weights.h5, keras.applications .h5 or "
                    "timm .safetensors file")
    if not os.path.isfile(weights):
        checks.fail("weights", weights, "names no file")


def weights_input(weights):
    """``(height, channels)`` of the input a run starting from `weights` takes unless
    told otherwise: a kres model file's own (read from the file, without loading
    it), RGB for published weights, either for a Keras weights file; ``None``
    where the weights leave it to the data."""
    if not weights or weights.endswith(".weights.h5"):
        return None, None
    if weights.endswith(".keras"):
        from kres.models.saving import saved_input_shape

        shape = saved_input_shape(weights) or (None, None, None)
        return shape[0], shape[-1]
    return None, 3


def load_pretrained(weights, name, *, input_shape, overrides=None):
    """The network `weights` were made for, with them loaded.

    Args:
        weights: ``"imagenet"`` (keras.applications' published file, through
            the Keras cache), a ``.keras`` model (a kres run's
            ``best.keras``, which carries its normalisation), a
            Keras ``.weights.h5`` file (of the same network; its classifier
            may have any size), a keras.applications ``.h5`` file (with or
            without its classifier) or a timm/torchvision ``.safetensors``
            state dict.
        name: the run's registry name (the architecture of all but a
            ``.keras`` source).
        input_shape: the run's input ``(height, width, channels)``, or
            ``None`` entries for the weights' own.
        overrides: spec fields of the run's network.

    Returns:
        A `Pretrained`.

    Raises:
        ValueError: for an unknown kind of file, or a file that does not fit
            the architecture (naming the first tensor that does not).
        RuntimeError: when the ImageNet weights are not cached and cannot be
            downloaded.
    """
    from kres.models.registry import build_model, published_weights

    check_weights(weights)
    overrides = dict(overrides or {})
    shape = tuple(input_shape)
    if weights.endswith(".keras"):
        return _from_keras_file(weights, name)
    include_top, classes, mode, overrides = _network_of(weights, name, overrides)
    model = build_model(name, weights=weights, include_top=include_top, classes=classes,
                        input_shape=shape, **overrides)
    if weights == "imagenet":  # the run's network takes the weights' layout too
        overrides = published_weights(name).overrides(name, overrides, include_top=False,
                                                      classes=None)
    return Pretrained(weights, model, _normalization(mode), mode, overrides)


def _network_of(weights, name, overrides):
    """``(include_top, classes, mode, overrides)`` of the network that holds `weights`:
    with the file's classifier where it has one, in the layout of Keras's
    published files where they are theirs; `mode` is their normalisation."""
    from kres.models.registry import published_weights
    from kres.weights.keras_applications import read_keras_h5

    published = published_weights().get(name)
    mode = published.mode if published else "unknown"
    if weights == "imagenet":
        return False, None, mode, overrides
    if weights.endswith(".safetensors"):
        return False, None, "torch", overrides
    if weights.endswith(".weights.h5"):
        classes = _stored_classes(weights)
        return classes is not None, classes or 1, "unknown", overrides
    # keras.applications' legacy HDF5: with its classifier when the last layer is one.
    layers = read_keras_h5(weights)
    include_top = bool(layers) and layers[-1][0] == "predictions"
    if published:
        overrides = published.overrides(name, overrides, include_top=include_top,
                                        classes=published.classes)
    return (include_top, layers[-1][1][0][1].shape[-1] if include_top else None, mode,
            overrides)


def _normalization(mode):
    if mode not in MODES:
        return None
    m = MODES[mode]
    return (m["mean"], m["std"], m.get("channel_order", "rgb"))


def _from_keras_file(path, name):
    """A kres ``.keras`` model and its normalisation: its own
    (`kres.layers.InputPreprocessing`), else the ``model.json`` beside it (runs
    of kres before 0.2)."""
    from kres.models.inputs import preprocessing_layer
    from kres.models.saving import load_model

    model = load_model(path)
    if model.name != name:
        raise ValueError(
            f"The model in the weights file is {model.name!r}, the run's is {name!r}: give "
            f"--model {model.name} (or weights of {name}). Received: weights={path!r}")
    carried = preprocessing_layer(model)
    if carried is not None:
        return Pretrained(path, model, (carried.mean, carried.std, carried.channel_order),
                          "model", {})
    described = rundir.read_json(os.path.join(os.path.dirname(os.path.abspath(path)),
                                            "model.json"))
    prep = described.get("preprocessing")
    if not prep:
        return Pretrained(path, model, None, "unknown", {})
    return Pretrained(path, model, (tuple(prep["mean"]), tuple(prep["std"]),
                                    prep.get("channel_order", "rgb")), "run", {})


def _stored_classes(path):
    """The classifier's size in a Keras 3 ``.weights.h5`` file (``None``: no classifier)."""
    import h5py

    with h5py.File(path, "r") as f:
        layers = f.get("layers")
        kernel = None if layers is None else layers.get("predictions/vars/0")
        return None if kernel is None else int(kernel.shape[-1])


def transfer_weights(source, target, *, skip=HEAD):
    """Copies the weights of `source` into `target`, layer by layer, by name.

    Every layer of `target` that has weights, except those in `skip` (the
    new classifier), takes the weights of the `source` layer of the same
    name. Everything is checked before anything is assigned: a failure
    leaves `target` as it was.

    Args:
        source: a model with the pretrained weights.
        target: the run's model (same architecture, its own classifier).
        skip: names of the `target` layers to leave as initialised.

    Returns:
        The number of layers copied.

    Raises:
        ValueError: listing the layers missing from `source` or whose
            weights differ in shape (at most five, then a count).

    Example:

    >>> import kres
    >>> from kres.training.finetune import transfer_weights
    >>> source = kres.build_model("resnet18", classes=1000)
    >>> target = kres.build_model("resnet18", classes=5)
    >>> transfer_weights(source, target)  # every layer with weights but the classifier
    40
    """
    by_name = {layer.name: layer for layer in source.layers}
    pairs, problems = [], []
    for layer in target.layers:
        if not layer.weights or layer.name in skip:
            continue
        other = by_name.get(layer.name)
        if other is None:
            problems.append(f"{layer.name!r} is not in the weights' network")
            continue
        mine = [tuple(v.shape) for v in layer.weights]
        theirs = [tuple(v.shape) for v in other.weights]
        if mine != theirs:
            problems.append(f"{layer.name!r} has weights of shapes {mine}, the weights' "
                            f"network {theirs}")
            continue
        pairs.append((layer, other))
    if problems:
        shown = "; ".join(problems[:5])
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise ValueError(
            f"The pretrained weights do not fit {target.name!r} (another architecture, or "
            f"spec overrides the weights' network did not have?): {shown}{more}.")
    for layer, other in pairs:
        for variable, value in zip(layer.weights, other.weights):
            variable.assign(value)
    return len(pairs)


def freeze_backbone(model, *, head=HEAD):
    """Freezes every layer of `model` but the classifier (`head`).

    A frozen batch-norm layer runs in inference mode (its moving
    statistics, which stay as they are), as Keras's BatchNormalization does
    when not trainable. The change takes effect when the model is next
    compiled.

    Returns:
        The number of layers left trainable.
    """
    trainable = 0
    for layer in model.layers:
        layer.trainable = layer.name in head
        trainable += layer.trainable
    return trainable


def unfreeze(model, stages=(), *, head=HEAD):
    """Makes `stages` of `model` (layer-name prefixes; all layers if empty) and
    the classifier trainable again, the other layers frozen.

    A prefix matches a layer named after it (``conv5`` matches
    ``conv5_block1_1_conv``, not ``conv50``...). Takes effect at the next
    compile.

    Returns:
        The number of trainable layers.

    Raises:
        ValueError: for a prefix that matches no layer, listing the model's
            stage prefixes.
    """
    def matches(name, stage):
        return name == stage or name.startswith(f"{stage}_")

    names = [layer.name for layer in model.layers]
    unknown = [s for s in stages if not any(matches(n, s) for n in names)]
    if unknown:
        prefixes = sorted({n.split("_")[0] for n in names if "_" in n})
        raise ValueError(
            f"unfreeze names layers {model.name!r} does not have. Its layer-name prefixes: "
            f"{', '.join(prefixes)}. Received: unfreeze={tuple(stages)!r}")
    count = 0
    for layer in model.layers:
        layer.trainable = (not stages or layer.name in head
                           or any(matches(layer.name, s) for s in stages))
        count += layer.trainable
    return count


def save_weights_array(model, path):
    """Writes `model`'s weights (no optimizer state) to an ``.npz`` file, atomically."""
    rundir.save_arrays(path, model.get_weights())


def load_weights_array(model, path):
    """Sets `model`'s weights from a `save_weights_array` file."""
    model.set_weights(rundir.load_arrays(path))


class SaveWeightsAt(keras.callbacks.Callback):
    """Saves the model's weights (`save_weights_array`) at the end of epoch
    `epoch` (counted from 1): the frozen phase's last."""

    def __init__(self, path, epoch):
        super().__init__()
        self.path, self.epoch = path, epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            save_weights_array(self.model, self.path)
