"""LiteRT (TensorFlow Lite) and ONNX files of a model, for phones, boards and other runtimes.

`export_file` writes one folder holding ``model.tflite`` or ``model.onnx`` and
a ``kres.json`` that says exactly what a client does before calling it. The
model's normalisation is inside the file; decoding and resizing are the
client's (neither format has image decoders among its standard operators).
Input: pixels ``[batch, height, width, channels]``, uint8 (0-255) or float32
(the same values); output: ``probabilities``, float32 ``[batch, classes]``.

LiteRT quantization: ``none`` (float32), ``float16`` (weights), ``dynamic``
(int8 weights, float activations) or ``int8`` (full-integer post-training
quantization calibrated on representative images; with a uint8 input, the
raw pixel values are the quantized input: scale 1, zero point 0).

Each file is run before it is published (the LiteRT interpreter, or
TensorFlow's own where `ai-edge-litert` is not installed; ONNX Runtime) and
compared with the Keras model within its format's tolerance, as SavedModels
are checked through TensorFlow's C API. A model a format cannot represent is
refused with a message naming its layers. The ONNX converter and runtime are
the ``edge`` extra: ``pip install 'kres[edge]'``.
"""

import contextlib
import hashlib
import io
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
from kres.models.inference import leaves
from kres.serving.records import library_versions

FORMATS = ("tflite", "onnx")
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
INPUT_TYPES = ("uint8", "float32")
FILES = {"tflite": "model.tflite", "onnx": "model.onnx"}
EXTRA = "pip install 'kres[edge]'"
# Largest difference of the probabilities from the Keras model's, per format.
TOLERANCES = {("tflite", "none"): 1e-4, ("tflite", "float16"): 1e-2,
              ("tflite", "dynamic"): 5e-2, ("tflite", "int8"): 0.15, ("onnx", "none"): 1e-4}
ONNX_OPSET = 17


def _require(module, what):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise RuntimeError(f"{what} needs the {module!r} package, part of kres's 'edge' extra: "
                           f"{EXTRA}") from error


def interpreter(content, threads=None):
    """A LiteRT interpreter of a ``.tflite`` file's bytes (`ai-edge-litert`'s, else TF's)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter  # noqa: N806
    return Interpreter(model_content=content, num_threads=threads)


def run_tflite(content, pixels, threads=None):
    """Probabilities of a ``.tflite`` model on pixels ``[batch, h, w, c]`` (its input dtype)."""
    runner = interpreter(content, threads)
    source = runner.get_input_details()[0]
    runner.resize_tensor_input(source["index"], list(pixels.shape))
    runner.allocate_tensors()
    runner.set_tensor(source["index"], pixels.astype(source["dtype"]))
    runner.invoke()
    return runner.get_tensor(runner.get_output_details()[0]["index"]).astype(np.float32)


def run_onnx(content, pixels, threads=None):
    """Probabilities of an ONNX model on pixels ``[batch, h, w, c]`` (its input dtype)."""
    ort = _require("onnxruntime", "Running an ONNX model")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(content, options, providers=["CPUExecutionProvider"])
    source = session.get_inputs()[0]
    dtype = np.uint8 if source.type == "tensor(uint8)" else np.float32
    return session.run(None, {source.name: pixels.astype(dtype)})[0].astype(np.float32)


def _pixels_function(model, prep, input_dtype):
    """``pixels -> probabilities`` (the model normalises them itself), and its spec."""
    spec = tf.TensorSpec([None, prep.height, prep.width, prep.channels], input_dtype,
                         name="pixels")

    def serve(pixels):
        return tf.cast(model(tf.cast(pixels, tf.float32), training=False), tf.float32)

    return spec, serve


def _layers_named_in(model, text):
    """The model's layers whose names appear as a path component in `text`
    (TensorFlow names an op ``model_1/layer_1/Op``)."""
    names = {layer.name for layer in leaves(model)} - {model.name}
    found = []
    for component in re.findall(r"[A-Za-z0-9_.\-]+", text):
        base = re.sub(r"_\d+$", "", component)
        for name in (component, base):
            if name in names and name not in found:
                found.append(name)
    return found


def _tflite(model, prep, quantize, input_type, calibration):
    """The ``.tflite`` bytes of `model`, and the input's quantization."""
    with tempfile.TemporaryDirectory() as folder:
        # int8 wants a float graph input, which the converter gives a uint8 interface.
        graph_dtype = tf.float32 if quantize == "int8" else tf.as_dtype(input_type)
        spec, serve = _pixels_function(model, prep, graph_dtype)
        archive = keras.export.ExportArchive()  # no track(): keras-team/keras#23553
        archive.add_endpoint("serve", serve, input_signature=[spec])
        with contextlib.redirect_stdout(io.StringIO()):
            archive.write_out(folder, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder, signature_keys=["serve"])
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":
            # One image of 0s and 255s fixes the input range at [0, 255], so that a
            # uint8 input is the raw pixel values (scale 1, zero point 0).
            span = np.zeros((1, *calibration.shape[1:]), np.float32)
            span[:, ::2] = 255.0

            def representative():
                for image in (*calibration, span[0]):
                    yield [image[None].astype(np.float32)]

            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.as_dtype(input_type)
        try:
            content = converter.convert()
        except Exception as error:  # the converter's ConverterError and its kin
            text = str(error)
            layers = _layers_named_in(model, "\n".join(
                line for line in text.splitlines() if "op is neither" in line or "loc(" in line))
            ops = sorted(set(re.findall(r"'tf\.(\w+)' op is neither", text)))
            raise ValueError(
                f"LiteRT cannot represent layer {', '.join(map(repr, layers)) or '(unknown)'} "
                f"of {model.name!r}: its TensorFlow ops {', '.join(ops) or '(see below)'} have "
                f"no LiteRT builtin kernel. Received: model={model.name!r}, "
                f"format='tflite'") from error
    details = interpreter(content).get_input_details()[0]
    scale, zero_point = details["quantization"]
    return content, {"scale": float(scale), "zero_point": int(zero_point)} if scale else None


def _onnx(model, prep, input_type):
    """The ``.onnx`` bytes of `model`."""
    tf2onnx = _require("tf2onnx", "Exporting to ONNX")
    onnx = _require("onnx", "Exporting to ONNX")
    spec, serve = _pixels_function(model, prep, tf.as_dtype(input_type))
    function = tf.function(serve, input_signature=[spec])
    with contextlib.redirect_stdout(io.StringIO()):
        proto, _ = tf2onnx.convert.from_function(function, input_signature=[spec],
                                                 opset=ONNX_OPSET,
                                                 output_path=None)
    unknown = [node for node in proto.graph.node if not onnx.defs.has(node.op_type, node.domain)]
    if unknown:
        layers = _layers_named_in(model, " ".join(node.name for node in unknown))
        raise ValueError(
            f"ONNX cannot represent layer {', '.join(map(repr, layers)) or '(unknown)'} of "
            f"{model.name!r}: tf2onnx has no conversion for its ops "
            f"{', '.join(sorted({n.op_type for n in unknown}))}. Received: "
            f"model={model.name!r}, format='onnx'")
    return proto.SerializeToString()


def check_file_options(fmt, quantize, input_type, calibration):
    """Refuses a combination of options before any work."""
    checks.choice("format", fmt, FORMATS)
    checks.choice("quantize", quantize, QUANTIZATIONS)
    checks.choice("input_type", input_type, INPUT_TYPES)
    if fmt == "onnx" and quantize != "none":
        raise ValueError("quantize is for LiteRT files; ONNX files are written in float32. "
                         f"Received: format='onnx', quantize={quantize!r}")
    if quantize == "int8":
        if calibration is None or not hasattr(calibration, "shape") or len(calibration) < 1:
            raise ValueError(
                "quantize='int8' calibrates on representative images: give calibration_images "
                "(pixels [n, height, width, channels], 0-255; `kres export` takes them from "
                "the run's training data). Received: calibration_images="
                f"{type(calibration).__name__}")


def export_file(model, directory, *, fmt, preprocessing, class_names, quantize="none",
                input_type="uint8", calibration=None, metadata=None, grouped_conv="split",
                verify=True, sample=None):
    """Writes `directory` with the LiteRT or ONNX file of `model` and its ``kres.json``.

    Called by `kres.export` (``format="tflite"`` or ``"onnx"``), which checks
    the model and settings first.

    Args:
        model: a Keras model with a known input size.
        directory: the folder to write (it must not exist).
        fmt: ``"tflite"`` or ``"onnx"``.
        preprocessing: the `kres.preprocessing.Preprocessing` of the model.
        class_names: a name per class.
        quantize: one of `QUANTIZATIONS` (LiteRT only).
        input_type: ``"uint8"`` or ``"float32"`` pixels.
        calibration: pixels ``[n, h, w, c]`` (0-255) for int8 calibration.
        metadata: extra facts for ``kres.json``.
        grouped_conv: how grouped convolutions are traced (``"split"``).
        verify: compare the file's outputs with the model's before writing.
        sample: pixels to verify on (default: the calibration images, else
            random ones).

    Returns:
        The folder's path.
    """
    check_file_options(fmt, quantize, input_type, calibration)
    checks.choice("grouped_conv", grouped_conv, FORMULATIONS)
    if os.path.exists(directory):
        raise ValueError(f"directory exists already; exports are never overwritten. "
                         f"Received: directory={directory!r}")
    with use_formulation(model, grouped_conv):
        if fmt == "tflite":
            content, quantization = _tflite(model, preprocessing, quantize, input_type,
                                            calibration)
        else:
            content, quantization = _onnx(model, preprocessing, input_type), None
    check = None
    if verify:
        # The reference is computed per group, the form every CPU runs.
        with use_formulation(model, "split"):
            check = _verify(model, content, fmt, quantize, input_type, preprocessing,
                            calibration, sample)
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".staging-", dir=parent)
    try:
        with open(os.path.join(staging, FILES[fmt]), "wb") as f:
            f.write(content)
        record = _record(model, fmt, quantize, input_type, quantization, preprocessing,
                         class_names, content, check, metadata)
        with open(os.path.join(staging, "kres.json"), "w") as f:
            json.dump(record, f, indent=2)
        os.rename(staging, directory)  # atomic; fails if the folder appeared meanwhile
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def _verify(model, content, fmt, quantize, input_type, prep, calibration, sample):
    if sample is None:
        sample = calibration[:32] if calibration is not None else np.random.default_rng(1).integers(
            0, 256, (8, prep.height, prep.width, prep.channels))
    pixels = np.asarray(sample, np.float32)
    if input_type == "uint8":  # what a client can feed: whole values
        pixels = np.clip(np.round(pixels), 0, 255)
    expected = model.predict(pixels, verbose=0)
    run = run_tflite if fmt == "tflite" else run_onnx
    got = run(content, pixels)
    difference = float(np.max(np.abs(got - expected)))
    agreement = float(np.mean(got.argmax(axis=1) == expected.argmax(axis=1)))
    tolerance = TOLERANCES[fmt, quantize]
    if not difference <= tolerance:
        raise ValueError(f"The {fmt} file ({quantize}) disagrees with the model: largest "
                         f"difference of the probabilities {difference:.3g} > {tolerance} on "
                         f"{len(pixels)} images (top-1 agreement {agreement:.1%}).")
    return {"images": len(pixels), "max_abs_difference": difference, "tolerance": tolerance,
            "top1_agreement": agreement}


def _record(model, fmt, quantize, input_type, quantization, prep, class_names, content, check,
            metadata):
    h, w, c = prep.height, prep.width, prep.channels
    if prep.resize == "center_crop":
        resize = (f"resize the shorter side to {round(min(h, w) / 0.875)} pixels (bilinear), "
                  f"then take the central {h}x{w}")
    else:
        resize = f"resize to {h}x{w} (bilinear)"
    values = "uint8 values 0-255" if input_type == "uint8" else "float32 values 0-255"
    return {
        "model": model.name, "format": fmt, "file": FILES[fmt], "quantize": quantize,
        "bytes": len(content), "sha256": hashlib.sha256(content).hexdigest(),
        "input": {"name": "pixels", "dtype": input_type, "shape": [None, h, w, c],
                  **({"quantization": quantization} if quantization else {})},
        "output": {"name": "probabilities", "dtype": "float32",
                   "shape": [None, model.output_shape[-1]]},
        "client": (f"Decode the image to {c} channel{'s' if c > 1 else ''} "
                   f"({'RGB' if c == 3 else 'grayscale'}), {resize}, and feed its pixels as "
                   f"{values}, NHWC. The model subtracts the mean and divides by the standard "
                   f"deviation below itself; the output is the softmax over the classes."),
        "preprocessing": prep.to_json(), "class_names": list(class_names),
        "classes": model.output_shape[-1], **({"verification": check} if check else {}),
        **({"onnx_opset": ONNX_OPSET} if fmt == "onnx" else {}),
        "versions": library_versions(), **(metadata or {}),
    }


def is_file_export(path):
    """Whether `path` is a LiteRT or ONNX export (its folder, or the model file in it)."""
    folder = os.path.dirname(path) if os.path.isfile(path) else path
    return os.path.isfile(os.path.join(folder, "kres.json")) and any(
        os.path.isfile(os.path.join(folder, name)) for name in FILES.values())


def predict_file(path, images, top_k=None, threads=None):
    """A LiteRT or ONNX export's answers for encoded images, preprocessed as its ``kres.json`` says.

    The images are decoded with the same limits as the SavedModel's
    (`kres.images.decode`), resized as in training's evaluation,
    rounded to whole values for a uint8 input, then run by the LiteRT
    interpreter or ONNX Runtime.

    Returns:
        ``probabilities``, ``classes``, ``scores`` and ``labels`` (top-k, as
        the SavedModel's signatures give them); for a multi-label model (a
        ``threshold`` in ``kres.json``), ``predicted`` and ``predicted_labels``
        as well.
    """
    from kres.images import decode_checked
    from kres.preprocessing import Preprocessing, eval_resize

    folder = os.path.dirname(path) if os.path.isfile(path) else path
    with open(os.path.join(folder, "kres.json")) as f:
        record = json.load(f)
    with open(os.path.join(folder, record["file"]), "rb") as f:
        content = f.read()
    prep = Preprocessing.from_json(record["preprocessing"])
    pixels = np.stack([
        eval_resize(tf.cast(decode_checked(tf.constant(image), prep.channels, 20 << 20, 40_000_000),
                            tf.float32), prep.height, prep.width,
                    prep.resize == "center_crop").numpy() for image in images])
    if record["input"]["dtype"] == "uint8":
        pixels = np.clip(np.round(pixels), 0, 255)
    run = run_tflite if record["format"] == "tflite" else run_onnx
    probabilities = run(content, pixels, threads)
    k = top_k or min(5, probabilities.shape[1])
    classes = np.argsort(-probabilities, axis=1, kind="stable")[:, :k].astype(np.int32)
    names = np.array([name.encode() for name in record["class_names"]], dtype=object)
    outputs = {"probabilities": probabilities, "classes": classes,
               "scores": np.take_along_axis(probabilities, classes, axis=1),
               "labels": names[classes]}
    if record.get("threshold") is not None:
        predicted = probabilities >= record["threshold"]
        outputs["predicted"] = predicted
        outputs["predicted_labels"] = np.array(
            [b";".join(names[row]) for row in predicted], dtype=object)
    return outputs
