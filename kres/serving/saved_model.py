"""TF Serving's model folders: versions written atomically, signatures, warmup, config.

`export_saved_model` writes ``<directory>/<version>/`` (``saved_model.pb``,
``variables/``, ``assets.extra/``, ``kres.json``) in TF Serving's layout,
atomically: everything is written and checked in a directory whose name is
not an integer (TF Serving ignores those), then renamed into place. Existing
versions are never touched, and ``models.config`` beside the model folders
is rewritten to list them all.

Signatures (tag ``serve``), both returning the same named outputs:

- ``serving_default``: input ``images``, a string tensor of encoded images
  (JPEG, PNG, BMP or GIF bytes; the REST API's ``{"b64": ...}``), decoded
  and resized inside the graph (`kres.serving.signatures`), then normalised
  by the model's own first layer;
- ``serving_pixels``: input ``pixels``, uint8 ``(batch, height, width,
  channels)``, resized inside the graph, normalised by the model;
- ``explain`` (only with ``explain=``): input ``images`` as for
  ``serving_default``; its outputs and ``heatmap``, the top class's Grad-CAM
  (uint8 ``(batch, height, width)`` at the model's input size, 255 where the
  class's evidence is strongest; `kres.explain`'s heatmap times 255).

Outputs: ``probabilities`` (float32, one row per image), ``classes`` (int32
top-k indices), ``scores`` (their probabilities) and ``labels`` (their class
names). A multi-label model's (sigmoid outputs, its threshold recorded in
`kres.layers.InputPreprocessing`) also: ``predicted`` (bool, a column per
class: probability at least the threshold) and ``predicted_labels`` (one
string per image, the predicted classes joined by ``;``).
"""

import json
import os
import re
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from kres import checks
from kres.layers import FORMULATIONS, use_formulation
from kres.serving.records import library_versions, sha256_of_files
from kres.serving.signatures import Server
from kres.serving.verify import verify_saved_model


def export_saved_model(model, directory, version=None, *, preprocessing, class_names,
                       dataset=None, top_k=None, max_image_bytes=20 << 20,
                       max_pixels=40_000_000, metadata=None, warmup_images=None,
                       grouped_conv="split", verify=True, explain=False, threshold=None):
    """Writes version `version` of a TF Serving model in `directory`.

    Called by `kres.export` (``format="saved_model"``), which gives it the
    served model (pixels in, normalised by the model) and what it serves;
    the arguments are `kres.export`'s.

    Returns:
        The path of the new version directory.

    Raises:
        ValueError: for a `directory` that is a file, an existing `version`,
            or invalid settings, before anything is written.
    """
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
    cam = _grad_cam(model, explain)
    explain_stage = cam.stage if cam is not None else None
    os.makedirs(directory, exist_ok=True)
    # TF Serving only loads integer directories: build the version beside them.
    staging = tempfile.mkdtemp(prefix=f".staging-{version}-", dir=directory)
    try:
        _write(model, staging, preprocessing, class_names, top_k, max_image_bytes, max_pixels,
               warmup_images, grouped_conv, cam, threshold)
        if verify:
            # The reference is computed per group, the form every CPU runs.
            with use_formulation(model, "split"):
                verify_saved_model(staging, model, preprocessing, explain_stage=explain_stage,
                                   threshold=threshold)
        signatures = {"serving_default": "images (encoded image bytes)",
                      "serving_pixels": "pixels (uint8)"}
        if explain_stage is not None:
            signatures["explain"] = ("images (encoded image bytes); adds heatmap, the top "
                                     "class's Grad-CAM (uint8)")
        record = {
            "model": model.name, "version": version, "classes": classes,
            "class_names": class_names, "input_shape": list(model.input_shape[1:]),
            "preprocessing": preprocessing.to_json(), "dataset": dataset,
            "signatures": signatures,
            "explain_stage": explain_stage,
            "outputs": ["probabilities", "classes", "scores", "labels"]
            + (["predicted", "predicted_labels"] if threshold is not None else []),
            "top_k": top_k,
            **({"multi_label": True, "threshold": threshold} if threshold is not None else {}),
            "limits": {"max_image_bytes": max_image_bytes, "max_pixels": max_pixels},
            "versions": library_versions(), **(metadata or {}),
        }
        record["sha256"] = sha256_of_files(staging)
        with open(os.path.join(staging, "kres.json"), "w") as f:
            json.dump(record, f, indent=2)
        os.rename(staging, final)  # atomic on one file system; fails if `final` exists
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    update_models_config(os.path.dirname(os.path.abspath(directory)))
    return final


def predict_saved_model(path, images, version=None, signature="serving_default"):
    """A SavedModel's outputs for encoded images, through one of its signatures.

    Args:
        path: the model's base path (``saved_models/<name>``) or a version
            directory.
        images: encoded images (bytes).
        version: the version (default: the highest).
        signature: the signature to call.

    Raises:
        ValueError: for a folder with no version.
    """
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        available = versions(path)
        if not available:
            raise ValueError(f"No exported version (nor a LiteRT or ONNX export) in "
                             f"saved_model. Received: saved_model={path!r}")
        path = os.path.join(path, str(version or available[-1]))
    loaded = tf.saved_model.load(path)
    outputs = loaded.signatures[signature](images=tf.constant(list(images)))
    return {k: v.numpy() for k, v in outputs.items()}


def versions(directory):
    """The integer version directories under `directory`, sorted."""
    if not os.path.isdir(directory):
        return []
    return sorted(int(d) for d in os.listdir(directory)
                  if re.fullmatch(r"[0-9]+", d) and os.path.isdir(os.path.join(directory, d)))


def _grad_cam(model, explain):
    """`explain` checked against the model: ``None`` (no signature) or the
    `kres.models.explain.GradCam` the signature runs (``True``: at the deepest
    stage; its ``stage`` names the one taken)."""
    if explain is False or explain is None:
        return None
    if explain is not True and not isinstance(explain, str):
        checks.fail("explain", explain, "must be False, True (the deepest stage) or a stage "
                                        "name such as 'C4'")
    from kres.models.explain import GradCam

    return GradCam(model, None if explain is True else explain, field="explain")


def _write(model, path, prep, class_names, top_k, max_image_bytes, max_pixels, warmup_images,
           grouped_conv, cam=None, threshold=None):
    server = Server(model, prep, class_names, top_k, max_image_bytes, max_pixels, cam,
                    threshold)
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
        if cam is not None:
            archive.add_endpoint("explain", server.serve_explain, input_signature=[
                tf.TensorSpec([None], tf.string, name="images")])
        archive.write_out(path, verbose=False)
    os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
    write_warmup_requests(os.path.join(path, "assets.extra", "tf_serving_warmup_requests"),
                          warmup_images or _sample_images(prep), model_name=model.name,
                          signatures=("serving_default",) + (
                              ("explain",) if cam is not None else ()))


def _sample_images(prep, count=3):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (count, prep.height, prep.width, prep.channels), np.uint8)
    return [tf.io.encode_png(image).numpy() for image in images]


def write_warmup_requests(path, images, model_name="model", signatures=("serving_default",)):
    """Writes TF Serving warmup records: one PredictRequest per image and signature.

    Args:
        path: the ``assets.extra/tf_serving_warmup_requests`` file.
        images: encoded images (bytes).
        model_name: the model name written in the requests.
        signatures: the signatures (taking ``images``) to warm up.
    """
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    with tf.io.TFRecordWriter(path) as writer:
        for signature, image in ((s, i) for s in signatures for i in images):
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
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
