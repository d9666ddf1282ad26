"""The served model is the trained model: a `.keras` file moved alone, through every door.

A run's ``best.keras`` is copied alone to another folder (no ``model.json``,
``results.json`` or ``config.json`` beside it) and used as a user's script
uses it. Each door then classifies the first 2,000 real Fashion-MNIST test
images (as PNG bytes where the door takes files): its answers must be the
Keras model's own (the float32 network the exports serve), and its accuracy
near the test accuracy the run reported on all 10,000. The run trained in
bfloat16 wherever `precision="auto"` chose it, as `make demo` does.

Before the model carried its normalisation, this is where it broke: a loaded
model exported with ImageNet statistics, served 54% against the 66% its run
reported.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import kres
from kres.cli import main
from kres.models.inference import in_float32
from kres.models.inputs import preprocessing_layer

FASHION_MNIST = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot"]


@pytest.fixture(scope="module")
def pngs(test_images):
    return [tf.io.encode_png(image).numpy() for image in test_images[0]]


@pytest.fixture(scope="module")
def reference(moved, test_images):
    """The Keras model's probabilities on the pixels, as the exports compute them."""
    model = keras.saving.load_model(moved)
    return in_float32(model).predict(test_images[0].astype(np.float32), verbose=0)


def _saved_model_door(door, moved, out):
    if door == "kres.export(model)":
        return kres.export(keras.saving.load_model(moved), out)
    if door == "kres.export(path)":
        return kres.export(moved, out)
    root, name = os.path.split(out)
    assert main(["export", "--model", moved, "--name", name, "--out", root]) == 0
    return os.path.join(out, "1")


# The LiteRT and ONNX doors: test_edge.py exports the same moved file to every format
# and checks each on the same images, against the same reported accuracy.
@pytest.mark.parametrize("door", ["kres.export(model)", "kres.export(path)", "kres export"])
def test_every_saved_model_door_serves_what_was_trained(door, moved, reported, reference, pngs,
                                                        test_images, tmp_path):
    assert not os.path.exists(os.path.join(os.path.dirname(moved), "model.json"))
    path = _saved_model_door(door, moved, str(tmp_path / "fm"))
    served = kres.serving.predict(path, pngs)  # decoded, resized and normalised as served
    labels = test_images[1]
    accuracy = float(np.mean(served["probabilities"].argmax(axis=1) == labels))
    expected = float(np.mean(reference.argmax(axis=1) == labels))
    agreement = float(np.mean(served["probabilities"].argmax(axis=1) == reference.argmax(axis=1)))
    assert expected > 0.65  # a trained model (chance: 0.1), so the comparison means something
    assert agreement >= 0.995, (door, agreement)
    assert accuracy == pytest.approx(expected, abs=0.005), door
    # 2,000 images against the run's 10,000: within sampling noise of the report.
    assert accuracy == pytest.approx(reported, abs=0.03), (door, accuracy, reported)
    # The class names travel inside the model file too.
    assert [label.decode() for label in served["labels"][:3, 0]] == [
        FASHION_MNIST[c] for c in served["probabilities"][:3].argmax(axis=1)]


def test_evaluate_and_predict_doors(moved, reported, reference, test_images, fashion_mnist_dir,
                                    tmp_path, capsys):
    # kres evaluate on the moved file scores the whole test set as the run did.
    assert main(["evaluate", moved, "--dataset", "fashion_mnist",
                 "--data-dir", fashion_mnist_dir]) == 0
    printed = capsys.readouterr().out.split()
    assert float(printed[printed.index("accuracy") + 1]) == pytest.approx(reported, abs=2e-4)
    # kres predict through an export (as make demo runs it): the first 8 test images.
    out = str(tmp_path / "saved")
    assert main(["export", "--model", moved, "--name", "fm", "--out", out]) == 0
    assert main(["predict", "--saved-model", os.path.join(out, "fm"), "--from-dataset",
                 "fashion_mnist", "--data-dir", fashion_mnist_dir, "--count", "8"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    right = int((reference[:8].argmax(axis=1) == test_images[1][:8]).sum())
    assert last == f"{right} of 8 dataset images right through the export"


SCRIPT = """
import os, sys
import kres, keras  # in this order: kres's layers register when Keras loads
import numpy as np
model = keras.saving.load_model(sys.argv[1])
path = kres.export(model, os.path.join(os.getcwd(), "served"))
pixels = np.load(sys.argv[2])
served = kres.serving.predict(path, [open(p, "rb").read() for p in sys.argv[3:]])
print("AGREE", np.abs(served["probabilities"] - model.predict(pixels, verbose=0)).max())
print("LABELS", [label.decode() for label in served["labels"][:, 0]])
"""


def test_a_script_in_another_folder_loads_and_exports_the_file(moved, test_images, tmp_path):
    images = test_images[0][:4]
    files = []
    for i, image in enumerate(images):
        files.append(str(tmp_path / f"{i}.png"))
        with open(files[-1], "wb") as f:
            f.write(tf.io.encode_png(image).numpy())
    np.save(tmp_path / "pixels.npy", images.astype(np.float32))
    done = subprocess.run([sys.executable, "-c", SCRIPT, moved, str(tmp_path / "pixels.npy"),
                           *files], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines()
                 if line.startswith(("AGREE", "LABELS")))
    # bfloat16 against float32: the trained model's own mixed-precision predictions.
    assert float(lines["AGREE"]) < 0.05
    assert all(label in FASHION_MNIST for label in eval(lines["LABELS"]))


def test_the_model_file_carries_what_a_server_needs(moved):
    model = kres.load_model(moved)
    layer = preprocessing_layer(model)
    assert model.layers[1] is layer and layer.name == "preprocessing"
    prep = layer.preprocessing(28, 28, 1)
    assert (prep.mean, prep.std, prep.resize) == ((0.286,), (0.353,), "resize")
    assert layer.class_names == FASHION_MNIST
    # It takes pixels: what the pipeline fed it in training, and what a server sends.
    assert model.input_shape == (None, 28, 28, 1) and layer.compute_dtype == "float32"
