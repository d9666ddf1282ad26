"""TF Serving's model folders: versions written atomically, signatures, warmup, records.

`export(model, "saved_models/<name>")` writes ``saved_models/<name>/<version>/``
(``saved_model.pb``, ``variables/``, ``assets.extra/``, ``kres.json``) in TF
Serving's layout, atomically: everything is written and checked in a directory
whose name is not an integer (TF Serving ignores those), then renamed into
place. Existing versions are never touched, and ``models.config`` beside the
model folders is rewritten to list them all.

Signatures (tag ``serve``), both returning the same named outputs:

- ``serving_default``: input ``images``, a string tensor of encoded images
  (JPEG, PNG, BMP or GIF bytes; the REST API's ``{"b64": ...}``), decoded,
  resized and normalised inside the graph (`kres.serving.decode`);
- ``serving_pixels``: input ``pixels``, uint8 ``(batch, height, width,
  channels)``, resized and normalised inside the graph.

Outputs: ``probabilities`` (float32, one row per image), ``classes`` (int32
top-k indices), ``scores`` (their probabilities) and ``labels`` (their class
names).
"""

import hashlib
import json
import os
import re
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from kres import checks, runs
from kres.layers import FORMULATIONS, use_formulation
from kres.models.base import in_float32, load_model, preprocessing_layer, with_preprocessing
from kres.models.googlenet import strip_auxiliary
from kres.preprocessing import Preprocessing
from kres.serving import edge
from kres.serving.decode import Server
from kres.serving.verify import verify_saved_model


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


def versions(directory):
    """The integer version directories under `directory`, sorted."""
    if not os.path.isdir(directory):
        return []
    return sorted(int(d) for d in os.listdir(directory)
                  if re.fullmatch(r"[0-9]+", d) and os.path.isdir(os.path.join(directory, d)))


def _sha256_of_files(root):
    digest = hashlib.sha256()
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def export(model, directory, version=None, *, format="saved_model", quantize="none",
           input_type="uint8", calibration_images=None, class_names=None, preprocessing=None,
           dataset=None, top_k=None, max_image_bytes=20 << 20, max_pixels=40_000_000,
           metadata=None, warmup_images=None, grouped_conv="split", verify=True):
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
        model: a Keras model with a known input size, or the path of a
            ``.keras`` file; a file in a `kres.train` run (or search)
            directory brings the run's record (``model.json``: spec;
            ``results.json``: test accuracy) into ``kres.json``.
        directory: for a SavedModel, the model's base path, e.g.
            ``saved_models/resnext50`` (versions go inside it); for a LiteRT or
            ONNX file, the folder to write (it must not exist yet).
        version: a positive integer; default: one more than the highest
            existing version (1 for the first). SavedModels only.
        format: ``"saved_model"`` (TF Serving), ``"tflite"`` (LiteRT) or
            ``"onnx"`` (see `kres.serving.edge`).
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

    Returns:
        The path of the new version directory (SavedModel) or folder.

    Raises:
        ValueError: for a model without a known input size, a model whose
            normalisation is unknown (see above), a `directory` that is a
            file, an existing `version`, a layer the format cannot
            represent, or invalid settings, all before anything is written.
        RuntimeError: for ONNX without the ``edge`` extra installed.

    Example:

    >>> kres.export("runs/demo/best.keras", "saved_models/fashion_mnist_resnet20")  # doctest: +SKIP
    'saved_models/fashion_mnist_resnet20/1'
    """
    if isinstance(model, str | os.PathLike):
        model, described = _from_run(os.fspath(model))
        class_names = class_names or described["class_names"]
        preprocessing = preprocessing or described["preprocessing"]
        dataset = dataset or described["dataset"]
        metadata = {**described["metadata"], **(metadata or {})}
    checks.choice("format", format, ("saved_model", *edge.FORMATS))
    _check_model(model)
    # Auxiliary classifiers (GoogLeNet) are for training only; a model trained in
    # mixed precision is served in float32 (its variables are float32 already).
    model, preprocessing, class_names = served_model(
        in_float32(strip_auxiliary(model)), preprocessing, class_names, dataset)
    directory = os.fspath(directory)
    if format != "saved_model":
        if version is not None:
            raise ValueError(f"version is for TF Serving's SavedModels; a {format} export is "
                             f"one folder. Received: version={version!r}")
        edge.check_file_options(format, quantize, input_type, calibration_images)
        return edge.export_file(model, directory, fmt=format, preprocessing=preprocessing,
                                class_names=class_names, quantize=quantize,
                                input_type=input_type, calibration=calibration_images,
                                metadata={"dataset": dataset, **(metadata or {})},
                                grouped_conv=grouped_conv, verify=verify)
    if quantize != "none":
        raise ValueError("quantize is for LiteRT files (format='tflite'). "
                         f"Received: format='saved_model', quantize={quantize!r}")
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(f"directory is a file, not a folder. Received: directory={directory!r}")
    existing = versions(directory)
    if version is None:
        version = (existing[-1] + 1) if existing else 1
    checks.positive_int("version", version)
    final = os.path.join(directory, str(version))
    if os.path.exists(final):
        raise ValueError(f"Version {version} exists already in {directory}; versions are "
                         f"never overwritten. Received: version={version}")
    classes = model.output_shape[-1]
    top_k = min(5, classes) if top_k is None else top_k
    checks.integer("top_k", top_k, minimum=1, maximum=classes)
    checks.positive_int("max_image_bytes", max_image_bytes)
    checks.positive_int("max_pixels", max_pixels)
    checks.choice("grouped_conv", grouped_conv, FORMULATIONS)
    checks.boolean("verify", verify)

    os.makedirs(directory, exist_ok=True)
    # TF Serving only loads integer directories: build the version beside them.
    staging = tempfile.mkdtemp(prefix=f".staging-{version}-", dir=directory)
    try:
        _write(model, staging, preprocessing, class_names, top_k, max_image_bytes, max_pixels,
               warmup_images, grouped_conv)
        if verify:
            # The reference is computed per group, the form every CPU runs.
            with use_formulation(model, "split"):
                verify_saved_model(staging, model, preprocessing)
        record = {
            "model": model.name, "version": version, "classes": classes,
            "class_names": class_names, "input_shape": list(model.input_shape[1:]),
            "preprocessing": preprocessing.to_json(), "dataset": dataset,
            "signatures": {"serving_default": "images (encoded image bytes)",
                           "serving_pixels": "pixels (uint8)"},
            "outputs": ["probabilities", "classes", "scores", "labels"], "top_k": top_k,
            "limits": {"max_image_bytes": max_image_bytes, "max_pixels": max_pixels},
            "versions": _versions(), **(metadata or {}),
        }
        record["sha256"] = _sha256_of_files(staging)
        with open(os.path.join(staging, "kres.json"), "w") as f:
            json.dump(record, f, indent=2)
        os.rename(staging, final)  # atomic on one file system; fails if `final` exists
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    update_models_config(os.path.dirname(os.path.abspath(directory)))
    return final


def served_model(model, preprocessing=None, class_names=None, dataset=None):
    """``(model, preprocessing, class_names)``: the model that an export serves.

    A model that carries its preprocessing (`kres.layers.InputPreprocessing`)
    is served as it is, with its own class names unless `class_names` are
    given; `preprocessing`, when given, must agree with its own. Any other
    model gets one from `preprocessing`, else from the statistics of
    `dataset` (`kres.datasets.DATASETS`), in front of it
    (`kres.models.base.with_preprocessing`), or is refused.

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
            from kres.datasets import DATASETS  # the statistics of the named datasets

            if dataset in DATASETS:
                preprocessing = DATASETS[dataset].preprocessing(shape)
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
    from kres.datasets import DATASETS

    return ", ".join(sorted(DATASETS))


def _from_run(model_path):
    """The model in a ``.keras`` file and what its run directory says about it.

    ``model.json`` (written by `kres.train` and `kres.tune`) gives the spec,
    preprocessing, class names and dataset; ``results.json`` the test
    accuracy; ``config.json`` the training configuration. Runs from before
    ``model.json`` give the dataset (hence the preprocessing) and class names.
    A model that carries its own preprocessing takes nothing from a folder
    whose ``model.json`` describes another model (a file moved into it).
    """
    if not os.path.isfile(model_path):
        raise ValueError(f"No model file at model_path. Received: model_path={model_path!r}")
    run = os.path.dirname(os.path.abspath(model_path))
    described, config, results = (runs.read_json(os.path.join(run, name)) for name in
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
        arrays, as the SavedModel's signature returns them.

    Example:

    >>> kres.serving.predict("saved_models/fashion_mnist_resnet20",
    ...                      [open("shoe.png", "rb").read()])["labels"]  # doctest: +SKIP
    """
    path = os.fspath(saved_model)
    if edge.is_file_export(path):
        return edge.predict_file(path, images)
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        available = versions(path)
        if not available:
            raise ValueError(f"No exported version (nor a LiteRT or ONNX export) in "
                             f"saved_model. Received: saved_model={saved_model!r}")
        path = os.path.join(path, str(version or available[-1]))
    loaded = tf.saved_model.load(path)
    outputs = loaded.signatures[signature](images=tf.constant(list(images)))
    return {k: v.numpy() for k, v in outputs.items()}


def _versions():
    from kres.version import __version__

    return {"kres": __version__, "keras": keras.__version__, "tensorflow": tf.__version__}


def _write(model, path, prep, class_names, top_k, max_image_bytes, max_pixels, warmup_images,
           grouped_conv):
    server = Server(model, prep, class_names, top_k, max_image_bytes, max_pixels)
    # The endpoints track the variables they use. track(model) would store every
    # variable a second time (Keras 3.15, keras-team/keras#23553: 2x the size on
    # disk and in a server's memory).
    archive = keras.export.ExportArchive()
    # Per-group convolutions by default: a graph holding TensorFlow's native
    # grouped op fails on CPUs without oneDNN (kres.layers.GroupedConv2D).
    with use_formulation(model, grouped_conv):
        archive.add_endpoint("serving_default", server.serve_images,
                             input_signature=[tf.TensorSpec([None], tf.string, name="images")])
        archive.add_endpoint("serving_pixels", server.serve_pixels, input_signature=[
            tf.TensorSpec([None, None, None, prep.channels], tf.uint8, name="pixels")])
        archive.write_out(path, verbose=False)
    os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
    write_warmup_requests(os.path.join(path, "assets.extra", "tf_serving_warmup_requests"),
                          warmup_images or _sample_images(prep), model_name=model.name)


def _sample_images(prep, count=3):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (count, prep.height, prep.width, prep.channels), np.uint8)
    return [tf.io.encode_png(image).numpy() for image in images]


def write_warmup_requests(path, images, model_name="model"):
    """Writes TF Serving warmup records: one PredictRequest per image.

    Args:
        path: the ``assets.extra/tf_serving_warmup_requests`` file.
        images: encoded images (bytes).
        model_name: the model name written in the requests.
    """
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    with tf.io.TFRecordWriter(path) as writer:
        for image in images:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name,
                                               signature_name="serving_default"))
            request.inputs["images"].CopyFrom(tf.make_tensor_proto([image]))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def read_warmup_requests(path):
    """The encoded images of a warmup file, one list per request."""
    from tensorflow_serving.apis import prediction_log_pb2

    requests = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        requests.append(list(tf.make_ndarray(log.predict_log.request.inputs["images"])))
    return requests


def update_models_config(root):
    """Rewrites ``<root>/models.config`` with one entry per exported model.

    Each folder of `root` holding at least one integer version is a model; the
    file is TF Serving's ``--model_config_file`` format, with base paths
    under ``/models`` as in the ``tensorflow/serving`` Docker image.
    """
    entries = []
    for name in sorted(os.listdir(root)):
        if versions(os.path.join(root, name)):
            entries.append(f'  config {{\n    name: "{name}"\n    base_path: "/models/{name}"\n'
                           f'    model_platform: "tensorflow"\n  }}\n')
    text = "model_config_list {\n" + "".join(entries) + "}\n"
    tmp = os.path.join(root, ".models.config.tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, os.path.join(root, "models.config"))
