"""Published ImageNet weights: Keras's files, mapped onto kres models.

keras.applications publishes ImageNet weights for ResNet-50/101/152 (v1 and
v2), VGG-16/19 and DenseNet-121/169/201 as legacy Keras HDF5 files. kres
builds each of these networks in Keras's layout (same layers, same order,
same names) and loads the same files: ``weights="imagenet"`` fetches them
through `keras.utils.get_file`, into the Keras cache
(``~/.keras/models``, or ``$KERAS_HOME/models``), which a machine without
internet can be given by copying the files there.

`preprocess_input` and `decode_predictions` match the weights, as
keras.applications' functions do for its models.
"""

import dataclasses
import os

import numpy as np

from kres import checks

KERAS_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
# keras.applications v1 ResNets: stride on the first 1x1 convolution, biases on
# every convolution, Keras's batch-norm epsilon.
KERAS_RESNET_V1 = {"stride_on": "1x1", "conv_bias": True, "bn_epsilon": 1.001e-5}


@dataclasses.dataclass(frozen=True)
class KerasWeights:
    """Where keras.applications publishes a model's ImageNet weights.

    Attributes:
        folder: the folder under `KERAS_BASE_URL`.
        key: the file-name prefix (``resnet50`` in
            ``resnet50_weights_tf_dim_ordering_tf_kernels.h5``).
        top_hash: MD5 of the file with the classifier.
        notop_hash: MD5 of the file without it.
        mode: the preprocessing the weights were trained with: ``"caffe"``
            (BGR, ImageNet mean subtracted), ``"tf"`` (scaled to [-1, 1]) or
            ``"torch"`` (scaled to [0, 1], ImageNet mean and std).
        layout: the spec fields that give Keras's layout of the network.
    """

    folder: str
    key: str
    top_hash: str
    notop_hash: str
    mode: str
    layout: tuple = ()

    def file_name(self, include_top):
        """The weights file's name (with or without the classifier)."""
        suffix = "" if include_top else "_notop"
        return f"{self.key}_weights_tf_dim_ordering_tf_kernels{suffix}.h5"

    def url(self, include_top):
        """The file's address."""
        return f"{KERAS_BASE_URL}{self.folder}/{self.file_name(include_top)}"


_V1 = tuple(KERAS_RESNET_V1.items())
# File names and MD5 hashes as keras.applications (Keras 3.15) records them.
KERAS_WEIGHTS = {
    "resnet50": KerasWeights("resnet", "resnet50", "2cb95161c43110f7111970584f804107",
                             "4d473c1dd8becc155b73f8504c6f6626", "caffe", _V1),
    "resnet101": KerasWeights("resnet", "resnet101", "f1aeb4b969a6efcfb50fad2f0c20cfc5",
                              "88cf7a10940856eca736dc7b7e228a21", "caffe", _V1),
    "resnet152": KerasWeights("resnet", "resnet152", "100835be76be38e30d865e96f2aaae62",
                              "ee4c566cf9a93f14d82f913c2dc6dd0c", "caffe", _V1),
    "resnet50v2": KerasWeights("resnet", "resnet50v2", "3ef43a0b657b3be2300d5770ece849e0",
                               "fac2f116257151a9d068a22e544a4917", "tf"),
    "resnet101v2": KerasWeights("resnet", "resnet101v2", "6343647c601c52e1368623803854d971",
                                "c0ed64b8031c3730f411d2eb4eea35b5", "tf"),
    "resnet152v2": KerasWeights("resnet", "resnet152v2", "a49b44d1979771252814e80f8ec446f9",
                                "ed17cf2e0169df9d443503ef94b23b33", "tf"),
    "vgg16": KerasWeights("vgg16", "vgg16", "64373286793e3c8b2b4e3219cbf3544b",
                          "6d6bbae143d832006294945121d1f1fc", "caffe"),
    "vgg19": KerasWeights("vgg19", "vgg19", "cbe5617147190e668d6c5d5026f83318",
                          "253f8cb515780f3b799900260a226db6", "caffe"),
    "densenet121": KerasWeights("densenet", "densenet121", "9d60b8095a5708f2dcce2bca79d332c7",
                                "30ee3e1110167f948a6b9946edeeb738", "torch"),
    "densenet169": KerasWeights("densenet", "densenet169", "d699b8f76981ab1b30698df4c175e90b",
                                "b8c4d4c20dd625c148057b9ff1c1176b", "torch"),
    "densenet201": KerasWeights("densenet", "densenet201", "1ceb130c1ea1b78c3bf6114dbdfd8807",
                                "c13680b51ded0fb44dff2d8f86ac8bb1", "torch"),
}
IMAGENET_CLASSES = 1000
CLASS_INDEX_URL = ("https://storage.googleapis.com/download.tensorflow.org/data/"
                   "imagenet_class_index.json")
CLASS_INDEX_HASH = "c2c37ea517e94d9795004a39431a14cb"


def published(name):
    """The `KerasWeights` of a registered model.

    Raises:
        ValueError: for a model without published weights, naming those
            that have them.
    """
    if name not in KERAS_WEIGHTS:
        raise ValueError(
            f"No published ImageNet weights for {name!r}; weights='imagenet' is available for "
            f"{', '.join(KERAS_WEIGHTS)}. Pass weights=None, a weights file, or load timm "
            f"weights with kres.load_timm_weights. Received: weights='imagenet' for {name!r}"
        )
    return KERAS_WEIGHTS[name]


def imagenet_overrides(name, overrides, *, include_top, classes):
    """The spec overrides that build `name` in the layout of its Keras weights.

    Args:
        name: a registered model name.
        overrides: the spec fields the caller set.
        include_top: whether the classifier is built.
        classes: the number of classes asked for.

    Returns:
        `overrides` plus the layout fields.

    Raises:
        ValueError: if `name` has no published weights, `classes` is not
            1000 with the classifier, or an override contradicts the layout.
    """
    source = published(name)
    if include_top and classes != IMAGENET_CLASSES:
        raise ValueError(
            "The ImageNet weights' classifier has 1000 classes: use classes=1000, or "
            f"include_top=False for another classifier. Received: classes={classes!r}"
        )
    layout = dict(source.layout)
    for field, value in overrides.items():
        if field in layout and layout[field] != value:
            raise ValueError(
                f"The ImageNet weights of {name!r} need {field}={layout[field]!r} (Keras's "
                f"layout). Received: {field}={value!r}"
            )
    return {**overrides, **layout}


def fetch_keras_weights(name, include_top=True):
    """Path of a model's Keras ImageNet weights file, downloaded if needed.

    Uses `keras.utils.get_file`, so the file lands in (and is taken from)
    the Keras cache, ``$KERAS_HOME/models`` (default ``~/.keras/models``),
    and is checked against its MD5 hash.

    Raises:
        ValueError: for a model without published weights.
        RuntimeError: if the file is not cached and cannot be downloaded,
            saying where to put it.
    """
    import keras

    source = published(name)
    file_name = source.file_name(include_top)
    try:
        return keras.utils.get_file(file_name, source.url(include_top), cache_subdir="models",
                                    file_hash=source.top_hash if include_top
                                    else source.notop_hash)
    except Exception as error:
        cache = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")),
                             "models")
        raise RuntimeError(
            f"Could not get the ImageNet weights of {name!r} ({error}). Without internet, copy "
            f"{file_name} (from {source.url(include_top)}) into {cache}."
        ) from error


def _read_attribute_list(group, name):
    """A string-list attribute of a legacy Keras HDF5 group (possibly split into
    ``name0``, ``name1`` ... when it was too large for one attribute)."""
    if name in group.attrs:
        values = list(group.attrs[name])
    else:
        values, i = [], 0
        while f"{name}{i}" in group.attrs:
            values.extend(group.attrs[f"{name}{i}"])
            i += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def read_keras_h5(path):
    """The weighted layers of a legacy Keras HDF5 weights file, in order.

    Returns:
        A list of ``(layer_name, [(weight_name, array), ...])`` for every
        layer that has weights, in the file's layer order.

    Raises:
        ValueError: if the file is not a legacy Keras weights file.
    """
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"Cannot read an HDF5 file ({error}). Received: weights={path!r}") \
            from error
    with f:
        group = f["model_weights"] if "model_weights" in f else f
        layer_names = _read_attribute_list(group, "layer_names")
        if not layer_names:
            raise ValueError(
                "Not a Keras HDF5 weights file of the keras.applications kind (no layer_names "
                f"attribute); Keras 3 '.weights.h5' files load as they are. Received: "
                f"weights={path!r}"
            )
        layers = []
        for layer_name in layer_names:
            layer_group = group[layer_name]
            weight_names = _read_attribute_list(layer_group, "weight_names")
            if weight_names:
                layers.append((layer_name, [(w, np.asarray(layer_group[w]))
                                            for w in weight_names]))
        return layers


def load_keras_weights(model, path):
    """Loads a keras.applications HDF5 weights file into a kres model.

    The file's weighted layers are matched to the model's in order, as
    keras.applications loads them into its own models; kres builds the
    published architectures with the same layers in the same order, and
    every shape is checked before anything is assigned, so a file from
    another architecture fails without changing the model.

    Args:
        model: a kres model in the layout of the file (for example
            ``kres.ResNet50(stride_on="1x1", conv_bias=True,
            bn_epsilon=1.001e-5)`` for Keras's ResNet-50 file).
        path: the ``.h5`` file.

    Returns:
        `model`, with the file's weights.

    Raises:
        ValueError: naming the first layer (in the file and in the model)
            and the tensor whose shape or count does not match.

    Example:

    >>> model = kres.build_model("vgg16")
    >>> kres.load_keras_weights(model, "vgg16_weights_tf_dim_ordering_tf_kernels.h5")
    """
    path = os.fspath(path)
    stored = read_keras_h5(path)
    targets = [layer for layer in model.layers if layer.weights]
    for i, ((file_layer, arrays), layer) in enumerate(zip(stored, targets)):
        variables = [*layer.trainable_weights, *layer.non_trainable_weights]
        if len(arrays) != len(variables):
            raise ValueError(
                f"The weights file does not match {model.name!r}: its layer {i + 1} "
                f"({file_layer!r}) holds {len(arrays)} tensors, the model's layer {i + 1} "
                f"({layer.name!r}) has {len(variables)}. Received: weights={path!r}"
            )
        for (weight_name, array), variable in zip(arrays, variables):
            if tuple(array.shape) != tuple(variable.shape):
                raise ValueError(
                    f"The weights file does not match {model.name!r}: tensor {weight_name!r} "
                    f"of layer {file_layer!r} has shape {tuple(array.shape)}, the model's layer "
                    f"{layer.name!r} expects {tuple(variable.shape)} for {variable.name!r}. "
                    f"Received: weights={path!r}"
                )
    if len(stored) != len(targets):
        extra = stored[len(targets):] or targets[len(stored):]
        where = "file" if len(stored) > len(targets) else "model"
        first = extra[0][0] if where == "file" else extra[0].name
        raise ValueError(
            f"The weights file does not match {model.name!r}: the file has {len(stored)} "
            f"weighted layers, the model {len(targets)} (the {where} goes on with "
            f"{first!r}; a file with or without the classifier for a model built the other "
            f"way?). Received: weights={path!r}"
        )
    for (_, arrays), layer in zip(stored, targets):
        variables = [*layer.trainable_weights, *layer.non_trainable_weights]
        for (_, array), variable in zip(arrays, variables):
            variable.assign(array)
    return model


def _mode(model):
    """The preprocessing mode of a model given by name or as a Keras model."""
    name = model if isinstance(model, str) else getattr(model, "name", None)
    if name not in KERAS_WEIGHTS:
        raise ValueError(
            f"preprocess_input follows the preprocessing of the published ImageNet weights, "
            f"which exist for {', '.join(KERAS_WEIGHTS)}. Received: model={name!r}"
        )
    return KERAS_WEIGHTS[name].mode


def preprocess_input(x, model):
    """Preprocesses RGB images (0-255) for a model with ImageNet weights.

    The same transformation as keras.applications' `preprocess_input` of the
    matching module: ``"caffe"`` for the v1 ResNets and VGG, ``"tf"`` for
    the v2 ResNets, ``"torch"`` for DenseNet.

    Args:
        x: images, channels last, values 0-255 (NumPy array or tensor).
        model: a registry name (``"resnet50"``) or a model of that name.

    Returns:
        The preprocessed images (float32).

    Raises:
        ValueError: for a model without published weights.

    Example:

    >>> kres.preprocess_input(np.full((1, 2, 2, 3), 255.0), "resnet50v2").max()
    1.0
    """
    import keras

    mode = _mode(model)
    if isinstance(x, np.ndarray):
        x = x.astype("float32", copy=True)
    return keras.applications.imagenet_utils.preprocess_input(x, mode=mode)


def decode_predictions(preds, top=5, class_index=None):
    """The `top` ImageNet classes of each prediction, as keras.applications gives them.

    Args:
        preds: an array of shape ``(batch, 1000)``.
        top: how many classes per image.
        class_index: path of a class-index JSON file in Keras's format
            (``{"0": ["n01440764", "tench"], ...}``); by default Keras's
            file, fetched into the Keras cache.

    Returns:
        One list per image of ``(wordnet_id, class_name, score)`` tuples,
        best first.

    Raises:
        ValueError: if `preds` is not ``(batch, 1000)`` or `top` is not a
            positive integer.

    Example:

    >>> kres.decode_predictions(model.predict(x), top=3)
    """
    import json

    import keras

    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != IMAGENET_CLASSES:
        raise ValueError("decode_predictions expects a batch of ImageNet predictions of shape "
                         f"(samples, 1000). Received: preds.shape={preds.shape}")
    checks.integer("top", top, minimum=1, maximum=IMAGENET_CLASSES)
    if class_index is None:
        class_index = keras.utils.get_file("imagenet_class_index.json", CLASS_INDEX_URL,
                                           cache_subdir="models", file_hash=CLASS_INDEX_HASH)
    with open(class_index) as f:
        index = json.load(f)
    results = []
    for row in preds:
        best = np.argsort(row)[::-1][:top]
        results.append([(*index[str(i)], float(row[i])) for i in best])
    return results
