"""Published ImageNet weights: Keras's files, mapped onto kres models.

keras.applications publishes ImageNet weights for ResNet-50/101/152 (v1 and
v2), VGG-16/19 and DenseNet-121/169/201 as legacy Keras HDF5 files. kres
builds each of these networks in Keras's layout (same layers, same order,
same names) and loads the same files: ``weights="imagenet"`` fetches them
through `keras.utils.get_file`, into the Keras cache
(``~/.keras/models``, or ``$KERAS_HOME/models``), which a machine without
internet can be given by copying the files there.

Each family declares its published weights as `PublishedWeights` objects
(address, hash, preprocessing, layout, accuracy); this module holds the object
and the file format: `read_keras_h5`, `load_keras_weights`, and
`decode_predictions` for the 1000 ImageNet classes.
"""

import dataclasses
import os

import numpy as np

from kres import checks

KERAS_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclasses.dataclass(frozen=True)
class PublishedWeights:
    """One model's published ImageNet weights: where they are, how to check them, what
    they expect and how well they do (torchvision's ``WeightsEnum`` entries carry the
    same).

    A family module declares its published weights as these objects (see
    `kres.models.family.Family`); `kres.models.registry.published_weights`
    lists them.

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
        top1: ImageNet validation top-1 accuracy (%) as keras.io's
            applications table gives it (not measured by kres).
        top5: the same table's top-5 accuracy (%).
        classes: classes of the classifier (1000).
        size: the input height and width they were trained at.
        dataset: what they were trained on.
    """

    folder: str
    key: str
    top_hash: str
    notop_hash: str
    mode: str
    layout: tuple = ()
    top1: float = None
    top5: float = None
    classes: int = 1000
    size: int = 224
    dataset: str = "ImageNet-1k (ILSVRC 2012)"

    def file_name(self, include_top):
        """The weights file's name (with or without the classifier)."""
        suffix = "" if include_top else "_notop"
        return f"{self.key}_weights_tf_dim_ordering_tf_kernels{suffix}.h5"

    def url(self, include_top):
        """The file's address."""
        return f"{KERAS_BASE_URL}{self.folder}/{self.file_name(include_top)}"

    def file_hash(self, include_top):
        """The file's MD5 hash."""
        return self.top_hash if include_top else self.notop_hash

    def fetch(self, include_top=True):
        """Path of the weights file, downloaded if needed.

        Uses `keras.utils.get_file`, so the file lands in (and is taken
        from) the Keras cache, ``$KERAS_HOME/models`` (default
        ``~/.keras/models``), and is checked against its MD5 hash.

        Raises:
            RuntimeError: if the file is not cached and cannot be
                downloaded, saying where to put it.
        """
        import keras

        file_name = self.file_name(include_top)
        try:
            return keras.utils.get_file(file_name, self.url(include_top), cache_subdir="models",
                                        file_hash=self.file_hash(include_top))
        except Exception as error:
            cache = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")),
                                 "models")
            raise RuntimeError(
                f"Could not get the ImageNet weights file {file_name} ({error}). Without "
                f"internet, copy {file_name} (from {self.url(include_top)}) into {cache}."
            ) from error

    def preprocess(self, x):
        """RGB images (0-255, channels last) normalised as these weights expect:
        keras.applications' `preprocess_input` of their mode (float32)."""
        import keras

        if isinstance(x, np.ndarray):
            x = x.astype("float32", copy=True)
        return keras.applications.imagenet_utils.preprocess_input(x, mode=self.mode)

    def overrides(self, name, overrides, *, include_top, classes):
        """The spec overrides that build `name` in the layout of these weights.

        Args:
            name: the registered model's name, for messages.
            overrides: the spec fields the caller set.
            include_top: whether the classifier is built.
            classes: the number of classes asked for.

        Returns:
            `overrides` plus the layout fields.

        Raises:
            ValueError: if `classes` is not theirs with the classifier, or an
                override contradicts the layout.
        """
        if include_top and classes != self.classes:
            raise ValueError(
                f"The ImageNet weights' classifier has {self.classes} classes: use "
                f"classes={self.classes}, or include_top=False for another classifier. "
                f"Received: classes={classes!r}"
            )
        layout = dict(self.layout)
        for field, value in overrides.items():
            if field in layout and layout[field] != value:
                raise ValueError(
                    f"The ImageNet weights of {name!r} need {field}={layout[field]!r} (Keras's "
                    f"layout). Received: {field}={value!r}"
                )
        return {**overrides, **layout}


IMAGENET_CLASSES = 1000
CLASS_INDEX_URL = ("https://storage.googleapis.com/download.tensorflow.org/data/"
                   "imagenet_class_index.json")
CLASS_INDEX_HASH = "c2c37ea517e94d9795004a39431a14cb"


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

    It needs keras.applications' VGG-16 file (528 MB), downloaded into the
    Keras cache by `PublishedWeights.fetch`, so it is skipped as a test:

    >>> import kres  # doctest: +SKIP
    >>> path = kres.published_weights("vgg16").fetch()  # doctest: +SKIP
    >>> model = kres.load_keras_weights(kres.build_model("vgg16"), path)  # doctest: +SKIP
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

    ``kres.decode_predictions(model.predict(images), top=3)`` names the
    classes with Keras's class index (downloaded once). With a class index of
    one's own:

    >>> import json, os, tempfile
    >>> import numpy as np
    >>> import kres
    >>> folder = tempfile.TemporaryDirectory()
    >>> index = os.path.join(folder.name, "index.json")
    >>> with open(index, "w") as f:
    ...     json.dump({str(i): [f"n{i:08d}", f"class {i}"] for i in range(1000)}, f)
    >>> preds = np.zeros((1, 1000))
    >>> preds[0, 7], preds[0, 3] = 0.75, 0.25
    >>> kres.decode_predictions(preds, top=2, class_index=index)
    [[('n00000007', 'class 7', 0.75), ('n00000003', 'class 3', 0.25)]]
    >>> folder.cleanup()
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
