"""LiteRT (TFLite) and ONNX exports: outputs against the Keras model on real test
images, int8 accuracy, grouped convolutions in every formulation, `kres predict`
on the files, and what is refused.

Tolerances on the probabilities (the largest difference over the images):
float32 LiteRT and ONNX 1e-4; float16 weights 1e-2; dynamic-range int8
weights 5e-2; full-integer int8 0.15 (and its accuracy within 2 points of
float32's on 2,000 test images; the benchmark measures all 10,000). The
LiteRT interpreter is ai-edge-litert's, ONNX Runtime runs the ONNX files:
both are installed with kres's `edge` extra, which `make test` installs.
"""

import json
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import kres
from kres.cli import main
from kres.models.inference import in_float32
from kres.preprocessing import Preprocessing
from kres.serving import litert_onnx as edge

# Largest difference of a probability from the Keras model's, over the 2,000 images.
# Dynamic-range LiteRT measured 0.050 on 2026-12-06 (the run's model changes with
# the pipeline); a wrong normalisation or channel order moves them by 0.3 and more.
TOLERANCE = {"none": 1e-4, "float16": 1e-2, "dynamic": 0.1, "int8": 0.15}


def _keras_probabilities(model_path, images):
    # Exports serve the float32 network of the trained weights (the run trained in
    # bfloat16 where precision="auto" chose it); the model normalises the pixels itself.
    model = in_float32(keras.saving.load_model(model_path))
    return model.predict(images.astype(np.float32), verbose=0)


def _file_probabilities(folder, images):
    with open(os.path.join(folder, "kres.json")) as f:
        record = json.load(f)
    with open(os.path.join(folder, record["file"]), "rb") as f:
        content = f.read()
    run = edge.run_tflite if record["format"] == "tflite" else edge.run_onnx
    return run(content, images.astype(np.uint8 if record["input"]["dtype"] == "uint8"
                                      else np.float32)), record


@pytest.mark.parametrize("fmt, quantize", [("tflite", "none"), ("tflite", "float16"),
                                           ("tflite", "dynamic"), ("tflite", "int8"),
                                           ("onnx", "none")])
def test_each_format_against_the_keras_model_on_real_test_images(
        moved, reported, test_images, fashion_mnist_dir, tmp_path, capsys, fmt, quantize):
    # The run's model file alone, moved away from its run (tests/test_served.py's doors).
    out = str(tmp_path / "exports")
    assert main(["export", "--model", moved, "--name", "fm", "--out", out, "--format", fmt,
                 "--quantize", quantize, "--data-dir", fashion_mnist_dir,
                 "--calibration-data", "fashion_mnist"]) == 0
    suffix = "" if quantize == "none" else f"-{quantize}"
    folder = os.path.join(out, f"fm-{fmt}{suffix}")
    printed = capsys.readouterr().out
    assert f"wrote {os.path.join(folder, edge.FILES[fmt])}" in printed
    images, labels = test_images
    got, record = _file_probabilities(folder, images)
    expected = _keras_probabilities(moved, images)
    assert record["format"] == fmt and record["quantize"] == quantize
    assert record["bytes"] == os.path.getsize(os.path.join(folder, record["file"]))
    assert record["verification"]["max_abs_difference"] <= TOLERANCE[quantize]
    assert np.abs(got - expected).max() <= TOLERANCE[quantize]
    accuracy, reference = (float(np.mean(p.argmax(axis=1) == labels)) for p in (got, expected))
    assert reference > 0.65  # a trained model (chance: 0.1): the comparison means something
    # 2,000 images against the run's 10,000: within sampling noise of its report.
    assert accuracy == pytest.approx(reported, abs=0.03)
    assert record["class_names"][0] == "T-shirt/top"  # carried by the model file
    if quantize == "int8":
        assert abs(accuracy - reference) <= 0.02
        # A uint8 input is the raw pixel values, and the file is much smaller.
        assert record["input"]["quantization"] == {"scale": 1.0, "zero_point": 0}
        float32 = os.path.getsize(_float32_size_reference(moved, tmp_path))
        assert record["bytes"] * 3 <= float32
    else:
        assert accuracy == pytest.approx(reference, abs=0.002)


def _float32_size_reference(model_path, tmp_path):
    folder = kres.export(model_path, str(tmp_path / "float32"), format="tflite")
    return os.path.join(folder, "model.tflite")


def test_predict_runs_a_litert_file_as_its_record_says(trained, test_images, tmp_path,
                                                        capsys):
    folder = kres.export(trained, str(tmp_path / "fm"), format="tflite", quantize="dynamic")
    images, _ = test_images
    pngs = []
    for i in range(3):
        path = tmp_path / f"{i}.png"
        path.write_bytes(tf.io.encode_png(images[i]).numpy())
        pngs.append(str(path))
    assert main(["predict", "--export", folder, *pngs]) == 0
    lines = capsys.readouterr().out.splitlines()
    got, record = _file_probabilities(folder, images[:3])
    for line, probabilities, path in zip(lines, got, pngs):
        top = np.argsort(-probabilities)[:3]
        expected = ", ".join(f"{record['class_names'][c]} {probabilities[c]:.3f}" for c in top)
        assert line == f"{path}: {expected}"


@pytest.mark.parametrize("formulation", ["split", "native"])
def test_resnext_exports_in_every_grouped_convolution_formulation(tmp_path, formulation):
    model = kres.build_model("resnext29_32x4d", depths=(1, 1, 1), classes=10,
                             input_shape=(32, 32, 3))
    pixels = np.random.default_rng(3).integers(0, 256, (4, 32, 32, 3))
    x = (pixels - np.array([0.485, 0.456, 0.406]) * 255) / (np.array([0.229, 0.224, 0.225]) * 255)
    expected = model.predict(x.astype(np.float32), verbose=0)
    for fmt in ("tflite", "onnx"):
        folder = kres.export(model, str(tmp_path / fmt), format=fmt, grouped_conv=formulation,
                             preprocessing=Preprocessing.imagenet((32, 32, 3)))
        got, _ = _file_probabilities(folder, pixels)
        np.testing.assert_allclose(got, expected, atol=1e-4)


def _odd_model(op, name):
    class Odd(keras.layers.Layer):
        def call(self, x):
            return op(x)

    image = keras.Input((8, 8, 1))
    return keras.Model(image, keras.layers.Dense(2)(keras.layers.Flatten()(
        Odd(name=name)(image))), name="odd")


def test_a_layer_a_format_cannot_represent_is_named(tmp_path):
    # LiteRT has no kernel for a matrix determinant; tf2onnx no conversion for lgamma.
    determinant = _odd_model(lambda x: tf.linalg.det(tf.reshape(x[:, :4, :4, 0],
                                                                [-1, 4, 4]))[:, None],
                             "determinant")
    with pytest.raises(ValueError, match=r"LiteRT cannot represent layer 'determinant'.*"
                                         r"MatrixDeterminant"):
        kres.export(determinant, str(tmp_path / "a"), format="tflite", dataset="mnist")
    gamma = _odd_model(lambda x: tf.math.lgamma(x + 2.0), "log_gamma")
    with pytest.raises(ValueError, match=r"ONNX cannot represent layer 'log_gamma'.*Lgamma"):
        kres.export(gamma, str(tmp_path / "b"), format="onnx", dataset="mnist")
    assert not any(p.name.startswith(("a", "b")) for p in tmp_path.iterdir())


def test_bad_options_are_refused_before_any_work(trained, tmp_path):
    model = kres.load_model(trained)
    cases = [
        (dict(format="onnx", quantize="int8"), r"quantize is for LiteRT files.*format='onnx'"),
        (dict(format="tflite", quantize="int8"), r"calibrates on representative images"),
        (dict(format="tflite", version=2), r"version is for TF Serving.*version=2"),
        (dict(format="saved_model", quantize="float16"), r"quantize is for LiteRT"),
        (dict(format="coreml"), r"format must be one of.*format='coreml'"),
        (dict(format="tflite", input_type="int16"), r"input_type='int16'"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            kres.export(model, str(tmp_path / "x"), **kwargs)
    (tmp_path / "there").mkdir()
    with pytest.raises(ValueError, match=r"never overwritten"):
        kres.export(model, str(tmp_path / "there"), format="onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["there"]


def test_a_missing_extra_is_named(trained, tmp_path, monkeypatch):
    # tf2onnx is installed here: a None in sys.modules makes Python refuse to import
    # it, as on a machine without the extra.
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    with pytest.raises(RuntimeError, match=r"'tf2onnx'.*pip install 'kres\[edge\]'"):
        kres.export(trained, str(tmp_path / "x"), format="onnx")
