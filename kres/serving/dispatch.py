"""`kres.export`: one entry for every format, and `predict` through any export.

`export` takes a Keras model or a ``.keras`` file, makes the model it serves
(`served_model`: its own normalisation, or one it is told; mixed precision
served in float32; auxiliary classifiers dropped) and hands it to the
format's writer: a versioned SavedModel for TF Serving
(`kres.serving.saved_model`), or a LiteRT or ONNX file
(`kres.serving.litert_onnx`). `predict` runs any of them on encoded images.
"""

import os

import keras

from kres import checks, rundir
from kres.models.families.googlenet import strip_auxiliary
from kres.models.inference import in_float32
from kres.models.inputs import label_threshold, preprocessing_layer, with_preprocessing
from kres.models.saving import load_model
from kres.preprocessing import DATASET_STATISTICS, Preprocessing
from kres.serving import litert_onnx
from kres.serving.saved_model import export_saved_model, predict_saved_model


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model or the path of a .keras file. "
                         f"Received: model={model!r}")
    shape = model.input_shape
    if not isinstance(shape, tuple) or len(shape) != 4 or None in shape[1:]:
        raise ValueError(
            "The model needs a known input size (height, width, channels) to be served: "
            f"build it with an input_shape such as (224, 224, 3). Received: a model with "
            f"input shape {shape}"
        )
    if shape[3] not in (1, 3):
        raise ValueError(f"Served models take 1 or 3 channels. Received: input shape {shape}")


def export(model, directory, version=None, *, format="saved_model", quantize="none",
           input_type="uint8", calibration_images=None, class_names=None, preprocessing=None,
           dataset=None, top_k=None, max_image_bytes=20 << 20, max_pixels=40_000_000,
           metadata=None, warmup_images=None, grouped_conv="split", verify=True,
           explain=False):
    """Exports a model as version `version` of a TF Serving model in `directory`.

    The served graph decodes and resizes; the normalisation is the model's
    own. A model kres trained carries it (`kres.layers.InputPreprocessing`:
    statistics, resize mode, class names), wherever its ``.keras`` file was
    moved. Any other model needs it said (`preprocessing`, or a `dataset`
    whose statistics kres knows, or the ``model.json`` of a kres run beside
    its file), and is refused without it: a server that normalises with the
    wrong statistics answers confidently and wrongly, and nothing at serving
    time can tell.

    Args:
        model: a Keras model with a known input size, the path of a
            ``.keras`` file, or a run directory (its ``best.keras``); a file
            in a `kres.train` run (or search) directory brings the run's
            record (``model.json``: spec; ``results.json``: test accuracy)
            into ``kres.json``.
        directory: for a SavedModel, the model's base path, e.g.
            ``saved_models/resnext50`` (versions go inside it); for a LiteRT or
            ONNX file, the folder to write (it must not exist yet).
        version: a positive integer; default: one more than the highest
            existing version (1 for the first). SavedModels only.
        format: ``"saved_model"`` (TF Serving), ``"tflite"`` (LiteRT) or
            ``"onnx"`` (see `kres.serving.litert_onnx`).
        quantize: for LiteRT: ``"none"``, ``"float16"``, ``"dynamic"`` or
            ``"int8"`` (full-integer, calibrated on `calibration_images`).
        input_type: ``"uint8"`` or ``"float32"`` pixels, for LiteRT and ONNX.
        calibration_images: pixels ``[n, height, width, channels]`` (0-255,
            at the model's input size) representative of the training data:
            ``quantize="int8"`` calibrates on them, and a LiteRT or ONNX file
            is checked on them (else on random pixels) before it is written.
        class_names: a name per class (default: the model's own, else the
            run's, else the indices).
        preprocessing: a `kres.preprocessing.Preprocessing`, for a model that
            does not normalise its own input (else it must agree with the
            model's); default: the run's ``model.json``, else the statistics
            of `dataset`.
        dataset: the training dataset's name (for the preprocessing of a
            model without its own, and the record in ``kres.json``).
        top_k: how many classes ``classes``, ``scores`` and ``labels`` give
            (default: 5, or every class for models with fewer). SavedModels
            only, as are the two limits and the warmup images.
        max_image_bytes: the largest encoded image accepted.
        max_pixels: the largest width x height an image header may announce.
        metadata: extra facts for ``kres.json`` (test accuracy, spec, ...).
        warmup_images: encoded images for ``assets.extra/
            tf_serving_warmup_requests`` (default: generated PNGs).
        grouped_conv: how grouped convolutions are traced: ``"split"`` (the
            default, runs on every server), ``"native"`` or ``"auto"`` (see
            `kres.layers.GroupedConv2D`).
        verify: load the written SavedModel back through TensorFlow's C API
            and compare it with the model before publishing it.
        explain: add the ``explain`` signature (SavedModels only): encoded
            images in; the classes, their scores and the top class's Grad-CAM
            heatmap out (`kres.serving.saved_model`). ``True`` explains at the
            deepest stage, ``"C<k>"`` at that stage.

    Returns:
        The path of the new version directory (SavedModel) or folder.

    Raises:
        ValueError: for a model without a known input size, a model whose
            normalisation is unknown (see above), a `directory` that is a
            file, an existing `version`, a layer the format cannot
            represent, or invalid settings, all before anything is written.
        RuntimeError: for ONNX without the ``edge`` extra installed.

    Example:

    ``kres.export("runs/demo/best.keras", "saved_models/fashion_mnist_resnet20")``
    exports a trained run's model. An untrained one, for the example:

    >>> import os, tempfile
    >>> import kres
    >>> folder = tempfile.TemporaryDirectory()
    >>> model = kres.CifarResNet20(input_shape=(28, 28, 1))
    >>> path = kres.export(model, os.path.join(folder.name, "fashion_mnist_resnet20"),
    ...                    dataset="fashion_mnist")
    >>> os.path.basename(path), "kres.json" in os.listdir(path)
    ('1', True)
    >>> folder.cleanup()
    """
    checks.choice("format", format, ("saved_model", *litert_onnx.FORMATS))
    check_explain(format, explain)
    if isinstance(model, str | os.PathLike):
        model, described = _from_run(os.fspath(model))
        class_names = class_names or described["class_names"]
        preprocessing = preprocessing or described["preprocessing"]
        dataset = dataset or described["dataset"]
        metadata = {**described["metadata"], **(metadata or {})}
    _check_model(model)
    # Auxiliary classifiers (GoogLeNet) are for training only; a model trained in
    # mixed precision is served in float32 (its variables are float32 already).
    model, preprocessing, class_names = served_model(
        in_float32(strip_auxiliary(model)), preprocessing, class_names, dataset)
    threshold = label_threshold(model)  # a multi-label model's, in its first layer
    directory = os.fspath(directory)
    if format == "saved_model":
        if quantize != "none":
            raise ValueError("quantize is for LiteRT files (format='tflite'). "
                             f"Received: format='saved_model', quantize={quantize!r}")
        return export_saved_model(
            model, directory, version, preprocessing=preprocessing, class_names=class_names,
            dataset=dataset, top_k=top_k, max_image_bytes=max_image_bytes,
            max_pixels=max_pixels, metadata=metadata, warmup_images=warmup_images,
            grouped_conv=grouped_conv, verify=verify, explain=explain, threshold=threshold)
    if version is not None:
        raise ValueError(f"version is for TF Serving's SavedModels; a {format} export is "
                         f"one folder. Received: version={version!r}")
    litert_onnx.check_file_options(format, quantize, input_type, calibration_images)
    return litert_onnx.export_file(model, directory, fmt=format, preprocessing=preprocessing,
                                   class_names=class_names, quantize=quantize,
                                   input_type=input_type, calibration=calibration_images,
                                   metadata={"dataset": dataset, **(metadata or {}), **(
                                       {"multi_label": True, "threshold": threshold}
                                       if threshold is not None else {})},
                                   grouped_conv=grouped_conv, verify=verify)


def check_explain(format, explain, flags=False):
    """Refuses `explain` for a format that cannot carry a signature (LiteRT, ONNX).

    Args:
        format: the export's format.
        explain: `export`'s `explain`.
        flags: name the command line's flags (``--format``, ``--explain``)
            rather than `export`'s arguments.
    """
    if format != "saved_model" and explain not in (False, None):
        names = ("--format", "--explain") if flags else ("format", "explain")
        raise ValueError(f"{names[1]} is a signature of TF Serving's SavedModels "
                         f"({names[0]} saved_model); a {format} file cannot carry it. "
                         f"Received: {names[0]}={format!r}, {names[1]}={explain!r}")


def served_model(model, preprocessing=None, class_names=None, dataset=None):
    """``(model, preprocessing, class_names)``: the model that an export serves.

    A model that carries its preprocessing (`kres.layers.InputPreprocessing`)
    is served as it is, with its own class names unless `class_names` are
    given; `preprocessing`, when given, must agree with its own. Any other
    model gets one from `preprocessing`, else from the statistics of
    `dataset` (`kres.data.catalog.DATASETS`), in front of it
    (`kres.models.inputs.with_preprocessing`), or is refused.

    Returns:
        The model taking pixels (0-255) at its input size, its
        `kres.preprocessing.Preprocessing` and a name per class.

    Raises:
        ValueError: for a model whose normalisation is unknown or disagrees
            with `preprocessing`, or class names that do not fit its classes.
    """
    shape = tuple(model.input_shape[1:])
    if preprocessing is not None and not isinstance(preprocessing, Preprocessing):
        checks.fail("preprocessing", preprocessing, "must be a kres.preprocessing.Preprocessing")
    carried = preprocessing_layer(model)
    if carried is not None:
        own = carried.preprocessing(*shape)
        if preprocessing is not None and preprocessing != own:
            raise ValueError(
                f"The model normalises its input itself ({own}); preprocessing must be None or "
                f"that. Received: preprocessing={preprocessing!r}")
        preprocessing, class_names = own, class_names or carried.class_names
    else:
        if preprocessing is None and dataset is not None:
            preprocessing = Preprocessing.for_dataset(dataset, shape)
        if preprocessing is None:
            raise ValueError(
                f"The model {model.name!r} does not carry its input normalisation (a model "
                "kres trains does), and serving it with guessed statistics would answer "
                "wrongly without a sign: give preprocessing=kres.serving.Preprocessing("
                f"{shape[0]}, {shape[1]}, {shape[2]}, mean, std) with the mean and standard "
                f"deviation (0-1) it was trained with, or dataset= one of {_dataset_names()} "
                f"(kres export: --dataset). Received: preprocessing=None, dataset={dataset!r}")
        model = with_preprocessing(model, preprocessing)
    classes = model.output_shape[-1]
    class_names = [str(c) for c in (class_names or range(classes))]
    if len(class_names) != classes:
        raise ValueError(f"class_names must name the model's {classes} classes. "
                         f"Received: {len(class_names)} names")
    return model, preprocessing, class_names


def _dataset_names():
    return ", ".join(sorted(DATASET_STATISTICS))


def _from_run(model_path):
    """The model in a ``.keras`` file and what its run directory says about it.

    ``model.json`` (written by `kres.train` and `kres.tune`) gives the spec,
    preprocessing, class names and dataset; ``results.json`` the test
    accuracy; ``config.json`` the training configuration. Runs from before
    ``model.json`` give the dataset (hence the preprocessing) and class names.
    A model that carries its own preprocessing takes nothing from a folder
    whose ``model.json`` describes another model (a file moved into it).
    """
    model_path = checks.model_file("model_path", model_path)
    run = os.path.dirname(os.path.abspath(model_path))
    described, config, results = (rundir.read_json(os.path.join(run, name)) for name in
                                  ("model.json", "config.json", "results.json"))
    model = load_model(model_path)
    carried = preprocessing_layer(model)
    if carried is not None and not _describes(described, model, carried):
        described, config, results = {}, {}, {}
    dataset = described.get("dataset") or config.get("dataset")
    preprocessing = None if carried else described.get("preprocessing")
    metadata = {"training": {"run": run, "dataset": dataset, "config": config or None,
                             "test_accuracy": results.get("test_accuracy")}}
    if described.get("spec"):
        metadata["spec"] = described["spec"]
    return model, {
        "class_names": described.get("class_names") or results.get("class_names"),
        "preprocessing": Preprocessing.from_json(preprocessing) if preprocessing else None,
        "dataset": dataset, "metadata": metadata}


def _describes(described, model, carried):
    """Whether a run's ``model.json`` describes `model`, which carries `carried`."""
    prep = described.get("preprocessing") or {}
    return (described.get("model") == model.name
            and described.get("class_names") == carried.class_names
            and tuple(prep.get("mean", ())) == carried.mean
            and tuple(prep.get("std", ())) == carried.std)


def predict(saved_model, images, version=None, signature="serving_default"):
    """Runs an export on encoded images: a SavedModel, a LiteRT file or an ONNX file.

    Args:
        saved_model: a SavedModel's base path (``saved_models/<name>``) or
            version directory; or a LiteRT/ONNX export's folder (or its
            ``model.tflite`` / ``model.onnx``), whose ``kres.json`` says how
            to decode and resize the images for it.
        images: encoded images (bytes).
        version: a SavedModel version number (default: the highest).
        signature: the SavedModel signature to call.

    Returns:
        ``probabilities``, ``classes``, ``scores`` and ``labels`` as NumPy
        arrays, as the SavedModel's signature returns them (and ``heatmap``
        from ``signature="explain"``; a multi-label model's ``predicted`` and
        ``predicted_labels`` too).

    Example:

    ``kres.serving.predict("saved_models/fashion_mnist_resnet20",
    [open("shoe.png", "rb").read()])`` classifies a photo with an export of
    `kres.export`. With an untrained model and a black image, for the example:

    >>> import os, tempfile
    >>> import numpy as np
    >>> import tensorflow as tf
    >>> import kres
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = kres.export(kres.CifarResNet20(input_shape=(28, 28, 1)),
    ...                    os.path.join(folder.name, "m"), dataset="fashion_mnist")
    >>> black = tf.io.encode_png(np.zeros((28, 28, 1), "uint8")).numpy()
    >>> result = kres.serving.predict(path, [black])
    >>> {name: array.shape for name, array in sorted(result.items())}
    {'classes': (1, 5), 'labels': (1, 5), 'probabilities': (1, 10), 'scores': (1, 5)}
    >>> folder.cleanup()
    """
    path = os.fspath(saved_model)
    if litert_onnx.is_file_export(path):
        return litert_onnx.predict_file(path, images)
    return predict_saved_model(path, images, version, signature)
