"""Export for TF Serving: parity of the signatures, atomic versions, hostile input,
warmup records, the C++ loader, and the files TF Serving reads."""

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import kres
from kres import data as datasets
from kres import images as kimages
from kres import serving
from kres.cli import main
from kres.serving import saved_model

NAMES = [f"class{i}" for i in range(10)]


@pytest.fixture(scope="module")
def gray_model():
    return kres.build_model("cifar_resnet20", depths=(1, 1, 1), input_shape=(28, 28, 1))


@pytest.fixture(scope="module")
def exported(gray_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("saved_models")
    path = serving.export(gray_model, str(root / "fmnist"), dataset="fashion_mnist",
                          class_names=NAMES)
    return path, tf.saved_model.load(path)


def _normalise(pixels, mean, std):
    return (pixels.astype(np.float32) - np.float32(mean) * 255) / (np.float32(std) * 255)


def test_bytes_pixels_and_predict_agree(gray_model, exported):
    path, loaded = exported
    pixels = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1), np.uint8)
    pngs = [tf.io.encode_png(p).numpy() for p in pixels]
    by_bytes = loaded.signatures["serving_default"](images=tf.constant(pngs))
    by_pixels = loaded.signatures["serving_pixels"](pixels=tf.constant(pixels))
    expected = gray_model.predict(_normalise(pixels, 0.2860, 0.3530), verbose=0)
    np.testing.assert_allclose(by_bytes["probabilities"], expected, atol=1e-5)
    np.testing.assert_allclose(by_pixels["probabilities"], expected, atol=1e-5)
    top = np.argsort(-expected, axis=1)[:, :5]
    np.testing.assert_array_equal(by_bytes["classes"], top)
    np.testing.assert_allclose(by_bytes["scores"], np.take_along_axis(expected, top, 1),
                               atol=1e-5)
    assert [label.decode() for label in by_bytes["labels"].numpy()[0]] == [
        NAMES[i] for i in top[0]]
    assert by_bytes["probabilities"].dtype == tf.float32


def test_rgb_model_center_crops_and_reads_jpeg(tmp_path):
    model = kres.build_model("resnet18", input_shape=(64, 64, 3), classes=3)
    prep = serving.Preprocessing(64, 64, 3, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "center_crop")
    path = serving.export(model, str(tmp_path / "rgb"), preprocessing=prep, top_k=2)
    loaded = tf.saved_model.load(path)
    image = np.random.default_rng(0).integers(0, 256, (80, 120, 3), np.uint8)
    png = tf.io.encode_png(image).numpy()
    by_bytes = loaded.signatures["serving_default"](images=tf.constant([png]))
    by_pixels = loaded.signatures["serving_pixels"](pixels=tf.constant(image[None]))
    np.testing.assert_allclose(by_bytes["probabilities"], by_pixels["probabilities"], atol=1e-6)
    assert by_bytes["classes"].shape == (1, 2)
    jpeg = tf.io.encode_jpeg(image).numpy()
    out = loaded.signatures["serving_default"](images=tf.constant([jpeg, png]))
    assert out["probabilities"].shape == (2, 3)
    # The crop worked out here: the shorter side 80 to 64 / 0.875 = 73.1 pixels, so
    # 73 x 110, and its central 64 x 64 from row 4 and column 23.
    resized = tf.image.resize(image.astype(np.float32), [73, 110]).numpy()
    crop = resized[4:68, 23:87]
    expected = model.predict(((crop - 127.5) / 63.75)[None], verbose=0)
    np.testing.assert_allclose(by_pixels["probabilities"], expected, atol=1e-5)


def test_versions_are_atomic_and_never_overwritten(gray_model, tmp_path, monkeypatch):
    base = str(tmp_path / "m")
    fm = dict(dataset="fashion_mnist")
    assert serving.export(gray_model, base, verify=False, **fm).endswith(os.sep + "1")
    assert serving.export(gray_model, base, verify=False, **fm).endswith(os.sep + "2")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(saved_model, "verify_saved_model", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        serving.export(gray_model, base, **fm)
    assert sorted(os.listdir(base)) == ["1", "2"]  # no 3, no staging left behind
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"Version 2 exists already.*version=2"):
        serving.export(gray_model, base, version=2, **fm)
    config = (tmp_path / "models.config").read_text()
    assert 'name: "m"' in config and 'base_path: "/models/m"' in config


def test_bad_export_targets(gray_model, tmp_path):
    any_size = kres.build_model("cifar_resnet20", input_shape=(None, None, 3))
    fm = dict(dataset="fashion_mnist")
    with pytest.raises(ValueError, match=r"known input size"):
        serving.export(any_size, str(tmp_path / "a"), **fm)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"is a file"):
        serving.export(gray_model, str(tmp_path / "file"), **fm)
    with pytest.raises(ValueError, match=r"version=0"):
        serving.export(gray_model, str(tmp_path / "b"), version=0, **fm)
    with pytest.raises(ValueError, match=r"class_names must name the model's 10 classes"):
        serving.export(gray_model, str(tmp_path / "c"), class_names=["a", "b"], **fm)
    assert not any((tmp_path / d).exists() for d in ("a", "b", "c"))


def test_a_model_without_its_normalisation_is_refused(gray_model, tmp_path):
    # Guessed statistics would serve confidently wrong answers: refused, before any file.
    for fmt in ("saved_model", "tflite", "onnx"):
        with pytest.raises(ValueError, match=r"'cifar_resnet20' does not carry its input "
                           r"normalisation.*preprocessing=kres\.serving\.Preprocessing\(28, "
                           r"28, 1, mean, std\).*--dataset.*Received: preprocessing=None, "
                           r"dataset=None"):
            serving.export(gray_model, str(tmp_path / fmt), format=fmt)
    # A dataset whose statistics kres does not know says nothing either.
    with pytest.raises(ValueError, match=r"Received: preprocessing=None, dataset='photos'"):
        serving.export(gray_model, str(tmp_path / "photos"), dataset="photos")
    assert not any(tmp_path.iterdir())


def test_a_model_carrying_its_normalisation_is_served_with_it(tmp_path):
    from kres.models.inputs import image_input
    from kres.preprocessing import Preprocessing

    prep = Preprocessing(28, 28, 1, (0.25,), (0.5,))
    model = kres.build_model("cifar_resnet20", depths=(1, 1, 1), classes=3,
                             input_tensor=image_input(prep, ["a", "b", "c"]))
    path = serving.export(model, str(tmp_path / "m"))  # nothing said: the model says it
    with open(os.path.join(path, "kres.json")) as f:
        record = json.load(f)
    assert record["preprocessing"] == prep.to_json() and record["class_names"] == ["a", "b", "c"]
    pixels = np.random.default_rng(4).integers(0, 256, (2, 28, 28, 1), np.uint8)
    out = tf.saved_model.load(path).signatures["serving_pixels"](pixels=tf.constant(pixels))
    # The model takes pixels: its first layer normalises them.
    expected = model.predict(pixels.astype(np.float32), verbose=0)
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
    with pytest.raises(ValueError, match=r"normalises its input itself.*preprocessing must be "
                                         r"None or that"):
        serving.export(model, str(tmp_path / "other"),
                       preprocessing=Preprocessing(28, 28, 1, (0.5,), (0.5,)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "models.config"]


def _png_header(width, height):
    """A tiny PNG whose header claims width x height pixels (a decompression bomb)."""
    return (b"\x89PNG\r\n\x1a\n" + b"\0\0\0\rIHDR" + width.to_bytes(4, "big") +
            height.to_bytes(4, "big") + b"\x08\x02\0\0\0" + b"\0" * 64)


@pytest.mark.parametrize("payload", [
    b"", b"definitely not an image", _png_header(12000, 12000), b"\xff\xd8garbage",
])
def test_hostile_inputs_fail_fast(exported, payload):
    _, loaded = exported
    with pytest.raises(tf.errors.InvalidArgumentError):
        loaded.signatures["serving_default"](images=tf.constant([payload]))


BOMB = """
import sys
import numpy as np, tensorflow as tf
served = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
ok = tf.io.encode_png(np.zeros((28, 28, 1), np.uint8)).numpy()
served(images=tf.constant([ok]))  # the graph is loaded and has run once

def status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024

def peak_growth(call):
    # Linux: writing 5 to clear_refs resets the peak resident set (VmHWM) to the current
    # one, so the peak afterwards is this call's, not the process's lifetime peak.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = status("VmRSS:")
    call()
    return status("VmHWM:") - before

def bomb():
    try:
        served(images=tf.constant([open(sys.argv[2], "rb").read()]))
        print("NOT REFUSED")
    except tf.errors.InvalidArgumentError:
        pass

refused = peak_growth(bomb)
# The instrument: what decoding a real PNG of the same 12000 x 12000 pixels does.
decoded = peak_growth(lambda: tf.io.decode_png(open(sys.argv[3], "rb").read(), channels=3))
print(f"GROWTH {refused:.1f} {decoded:.1f}")
"""


def _black_png(path, width, height):
    """A real RGB PNG of zeros, compressed row by row (never whole in memory)."""
    import struct
    import zlib

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    compressor, row, parts = zlib.compressobj(9), b"\0" * (1 + 3 * width), []
    for _ in range(height):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))


def test_decompression_bomb_costs_no_memory(exported, tmp_path):
    # In a fresh process, whose peak memory is the server's own: the header of a
    # 12000 x 12000 PNG (a 412 MiB decode) is refused before anything is allocated,
    # while decoding a real PNG of that size raises the same measurement by ~412 MiB.
    path, _ = exported
    bomb, real = tmp_path / "bomb.png", tmp_path / "real.png"
    bomb.write_bytes(_png_header(12000, 12000))
    _black_png(real, 12000, 12000)
    done = subprocess.run([sys.executable, "-c", BOMB, path, str(bomb), str(real)],
                          capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "NOT REFUSED" not in done.stdout
    refused, decoded = (float(v) for v in done.stdout.split("GROWTH")[1].split())
    assert decoded > 300  # the measurement sees an allocation of that size
    assert refused < 10


def test_byte_limit(gray_model, tmp_path):
    path = serving.export(gray_model, str(tmp_path / "small"), max_image_bytes=100,
                          verify=False, dataset="fashion_mnist")
    loaded = tf.saved_model.load(path)
    big = tf.io.encode_png(np.random.default_rng(0).integers(0, 256, (28, 28, 1),
                                                             np.uint8)).numpy()
    assert len(big) > 100
    with pytest.raises(tf.errors.InvalidArgumentError, match="larger than 100 bytes"):
        loaded.signatures["serving_default"](images=tf.constant([big]))


def test_animated_gif_gives_its_first_frame(exported):
    _, loaded = exported
    frames = np.random.default_rng(0).integers(0, 256, (5, 28, 28, 3), np.uint8)
    buffer = io.BytesIO()
    images = [Image.fromarray(f) for f in frames]
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:])
    gif = buffer.getvalue()
    assert tf.io.decode_gif(gif).shape[0] == 5
    cut = kimages.gif_first_frame(tf.constant(gif))
    assert tf.io.decode_gif(cut).shape[0] == 1
    np.testing.assert_array_equal(tf.io.decode_gif(cut)[0], tf.io.decode_gif(gif)[0])
    out = loaded.signatures["serving_default"](images=tf.constant([gif]))
    first = tf.image.rgb_to_grayscale(tf.io.decode_gif(gif)[0])
    ref = loaded.signatures["serving_pixels"](pixels=tf.cast(first, tf.uint8)[None])
    np.testing.assert_allclose(out["probabilities"], ref["probabilities"], atol=1e-6)


def test_warmup_records_replay(exported):
    path, loaded = exported
    requests = serving.read_warmup_requests(
        os.path.join(path, "assets.extra", "tf_serving_warmup_requests"))
    assert len(requests) == 3
    for images in requests:
        out = loaded.signatures["serving_default"](images=tf.constant(images))
        assert out["probabilities"].shape == (1, 10)


def test_c_api_loads_and_runs_like_the_model(gray_model, exported):
    path, _ = exported
    pixels = np.random.default_rng(5).integers(0, 256, (3, 28, 28, 1), np.uint8)
    out = serving.c_api_run(path, "serving_pixels", {"pixels": pixels})
    expected = gray_model.predict(_normalise(pixels, 0.2860, 0.3530), verbose=0)
    assert np.abs(out["probabilities"] - expected).max() < 1e-5
    np.testing.assert_array_equal(out["classes"], np.argsort(-expected, axis=1)[:, :5])


def test_missing_variables_are_refused(gray_model, exported, tmp_path):
    path, _ = exported
    broken = tmp_path / "1"
    shutil.copytree(path, broken)
    shutil.rmtree(broken / "variables")
    prep = datasets.get_dataset_spec("fashion_mnist").preprocessing(gray_model.input_shape[1:])
    with pytest.raises(ValueError, match="has no variables"):
        serving.verify_saved_model(str(broken), gray_model, prep)
    # The C++ loader alone accepts the directory: loading succeeds, and only
    # the first request fails, so loading is no proof of a complete version.
    pixels = np.zeros((1, 28, 28, 1), np.uint8)
    with pytest.raises(RuntimeError, match=r"TF_SessionRun\(serving_pixels\).*variable"):
        serving.c_api_run(str(broken), "serving_pixels", {"pixels": pixels})


def _saved_ops(path):
    graph = tf.saved_model.load(path).signatures["serving_pixels"].graph.as_graph_def()
    return {node.op for f in graph.library.function for node in f.node_def}


@pytest.mark.parametrize("formulation", ["native", "split"])
def test_resnext_export_is_split_unless_asked(tmp_path, monkeypatch, formulation):
    # The model is traced in another formulation first, and the environment asks
    # for native: the export's own argument still decides, and the layers keep theirs.
    model = kres.build_model("resnext29_32x4d", depths=(1, 1, 1), classes=10)
    model.predict_on_batch(np.zeros((1, 32, 32, 3), np.float32))
    monkeypatch.setenv("KRES_GROUPED_CONV", "native")
    default = serving.export(model, str(tmp_path / "default"), dataset="cifar10")
    monkeypatch.delenv("KRES_GROUPED_CONV")
    # Not run here: a native graph runs only where oneDNN does (the layer's probe).
    asked = serving.export(model, str(tmp_path / "asked"), dataset="cifar10",
                           grouped_conv=formulation, verify=False)
    assert "Split" in _saved_ops(default)
    assert ("Split" in _saved_ops(asked)) == (formulation == "split")
    grouped = [la for la in model.layers if isinstance(la, kres.layers.GroupedConv2D)]
    assert grouped and {la.formulation for la in grouped} == {"auto"}


def test_resnext_export_runs_on_a_cpu_server_without_onednn(tmp_path):
    # A CPU whose TensorFlow has no oneDNN: its graph optimiser fuses a native
    # grouped convolution into a kernel that refuses groups; the export must run.
    model = kres.build_model("resnext29_32x4d", depths=(1, 1, 1), classes=10)
    path = serving.export(model, str(tmp_path / "resnext"), dataset="cifar10")
    pixels = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), np.uint8)
    np.save(tmp_path / "pixels.npy", pixels)
    with tf.device("/CPU:0"):
        here = tf.saved_model.load(path).signatures["serving_pixels"](
            pixels=tf.constant(pixels))["probabilities"].numpy()
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        "from tensorflow.python.util import _pywrap_util_port\n"
        "assert not _pywrap_util_port.IsMklEnabled()\n"
        "f = tf.saved_model.load(sys.argv[1]).signatures['serving_pixels']\n"
        "out = f(pixels=tf.constant(np.load(sys.argv[2])))['probabilities'].numpy()\n"
        "np.save(sys.argv[3], out)\n")
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", script, path, str(tmp_path / "pixels.npy"),
                           str(tmp_path / "there.npy")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    there = np.load(tmp_path / "there.npy")
    assert there.shape == (2, 10)
    np.testing.assert_allclose(there, here, atol=1e-5)


def test_kres_json_and_saved_model_cli(exported):
    path, _ = exported
    with open(os.path.join(path, "kres.json")) as f:
        record = json.load(f)
    assert record["class_names"] == NAMES and record["input_shape"] == [28, 28, 1]
    assert record["dataset"] == "fashion_mnist" and record["versions"]["kres"] == kres.__version__
    digest = hashlib.sha256()
    for folder, _, files in sorted(os.walk(path)):
        for name in sorted(files):
            if name == "kres.json" and folder == path:
                continue
            file = os.path.join(folder, name)
            digest.update(os.path.relpath(file, path).encode())
            digest.update(open(file, "rb").read())
    assert record["sha256"] == digest.hexdigest()
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    show = subprocess.run([cli, "show", "--dir", path, "--all"], capture_output=True, text=True)
    assert show.returncode == 0, show.stderr[-1000:]
    assert "serving_default" in show.stdout and "serving_pixels" in show.stdout
    scan = subprocess.run([cli, "scan", "--dir", path], capture_output=True, text=True)
    assert scan.returncode == 0, scan.stderr[-1000:]


def test_export_and_predict_commands(tmp_path, capsys):
    model = kres.build_model("cifar_resnet20", depths=(1, 1, 1), input_shape=(28, 28, 1))
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "best.keras")
    (run / "results.json").write_text(json.dumps({"class_names": NAMES, "test_accuracy": 0.5}))
    (run / "config.json").write_text(json.dumps({"dataset": "fashion_mnist"}))
    out = str(tmp_path / "saved_models")
    assert main(["export", "--model", str(run / "best.keras"), "--name", "fm", "--out", out]) == 0
    assert "verified through the C API" in capsys.readouterr().out
    with open(os.path.join(out, "fm", "1", "kres.json")) as f:
        assert json.load(f)["training"]["test_accuracy"] == 0.5
    image = tmp_path / "x.png"
    image.write_bytes(tf.io.encode_png(np.zeros((28, 28, 1), np.uint8)).numpy())
    assert main(["predict", "--saved-model", os.path.join(out, "fm"), str(image)]) == 0
    printed = capsys.readouterr().out.strip()
    served = tf.saved_model.load(os.path.join(out, "fm", "1")).signatures["serving_default"]
    answer = served(images=tf.constant([image.read_bytes()]))
    expected = ", ".join(f"{label.decode()} {score:.3f}" for label, score in
                         zip(answer["labels"][0].numpy()[:3], answer["scores"][0].numpy()[:3]))
    assert printed == f"{image}: {expected}"
    # --version, --no-verify, --grouped-conv: version 7 written as asked, no C-API check;
    # the run directory given where its model belongs.
    assert main(["export", "--model", str(run), "--name", "fm", "--out", out,
                 "--version", "7", "--no-verify", "--grouped-conv", "native"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {os.path.join(out, 'fm', '7')};" in printed and "C API" not in printed
    assert serving.versions(os.path.join(out, "fm")) == [1, 7]
    assert main(["export", "--model", str(tmp_path / "none.keras"), "--name", "x"]) == 2
    assert "No model file" in capsys.readouterr().err
    # A run directory without its model yet: named as an unfinished run.
    (run / "best.keras").rename(run / "kept.keras")
    assert main(["export", "--model", str(run), "--name", "x", "--out", out]) == 2
    assert "holds no best.keras yet" in capsys.readouterr().err
    (run / "kept.keras").rename(run / "best.keras")
    assert keras.saving.load_model(run / "best.keras").name == model.name


KILL_SCRIPT = """
import os, sys
import kres
from kres.serving import saved_model
model = kres.build_model("cifar_resnet20", depths=(1, 1, 1), input_shape=(28, 28, 1))
saved_model.verify_saved_model = lambda *args, **kwargs: os._exit(9)  # killed while verifying
kres.export(model, sys.argv[1], dataset="fashion_mnist")
"""


def test_a_killed_export_leaves_no_version(tmp_path):
    base = tmp_path / "m"
    done = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(base)], capture_output=True,
                          text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 9, done.stderr[-1000:]
    assert serving.versions(str(base)) == []
    left = os.listdir(base)
    assert len(left) == 1 and left[0].startswith(".staging-1-")  # ignored by TF Serving


def test_auxiliary_classifiers_are_not_exported(tmp_path):
    model = kres.build_model("googlenet_bn", aux_classifiers=True, classes=4,
                             input_shape=(96, 96, 3))
    from kres.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

    path = serving.export(model, str(tmp_path / "googlenet"),
                          preprocessing=Preprocessing.imagenet((96, 96, 3)))
    loaded = tf.saved_model.load(path)
    pixels = np.random.default_rng(1).integers(0, 256, (2, 96, 96, 3), np.uint8)
    out = loaded.signatures["serving_pixels"](pixels=tf.constant(pixels))
    assert out["probabilities"].shape == (2, 4)
    # What the one-output inference network gives on the same preprocessed input.
    images = _normalise(pixels, IMAGENET_MEAN, IMAGENET_STD)
    expected = kres.strip_auxiliary(model).predict(images, verbose=0)
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)


SERVING_ALONE = """
import sys, kres
from kres.serving import export, predict
model = kres.build_model("cifar_resnet20", depths=(1, 1, 1), input_shape=(28, 28, 1))
model.save(sys.argv[1] + "/best.keras")
prep = kres.serving.Preprocessing(28, 28, 1, (0.5,), (0.25,))
path = kres.export(model, sys.argv[1] + "/saved/m", preprocessing=prep)
image = open(sys.argv[2], "rb").read()
assert predict(sys.argv[1] + "/saved/m", [image])["probabilities"].shape == (1, 10)
loaded = [m for m in ("tensorflow_datasets", "kres.data.sources", "kres.data.pipeline",
                      "kres.training.run", "kres.training.recipes", "kres.training.fit",
                      "kres.tuning.run", "keras_tuner") if m in sys.modules]
print("LOADED", loaded)
"""


def test_serving_needs_no_training_code_nor_tfds(tmp_path):
    image = tmp_path / "x.png"
    image.write_bytes(tf.io.encode_png(np.zeros((28, 28, 1), np.uint8)).numpy())
    done = subprocess.run([sys.executable, "-c", SERVING_ALONE, str(tmp_path), str(image)],
                          capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LOADED []" in done.stdout


def test_export_of_a_run_uses_its_description(tmp_path):
    # What kres train writes beside best.keras: the preprocessing and names travel.
    from kres import rundir as runs
    from kres.preprocessing import Preprocessing

    model = kres.build_model("cifar_resnet20", depths=(1, 1, 1), input_shape=(28, 28, 1),
                             classes=3)
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "best.keras")
    prep = Preprocessing(28, 28, 1, (0.25,), (0.5,))
    runs.write_model_description(str(run), model="cifar_resnet20",
                                 spec=kres.get_spec("cifar_resnet20"), preprocessing=prep,
                                 class_names=["a", "b", "c"], dataset="shapes")
    path = kres.export(str(run / "best.keras"), str(tmp_path / "saved" / "shapes"))
    with open(os.path.join(path, "kres.json")) as f:
        record = json.load(f)
    assert record["preprocessing"] == prep.to_json() and record["class_names"] == ["a", "b", "c"]
    assert record["spec"]["name"] == "cifar_resnet20" and record["dataset"] == "shapes"
    pixels = np.random.default_rng(2).integers(0, 256, (2, 28, 28, 1), np.uint8)
    out = tf.saved_model.load(path).signatures["serving_pixels"](pixels=tf.constant(pixels))
    expected = model.predict(_normalise(pixels, 0.25, 0.5), verbose=0)
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
    with pytest.raises(ValueError, match=r"preprocessing must give the model's input shape"):
        kres.export(model, str(tmp_path / "bad"), preprocessing=Preprocessing(32, 32, 1,
                                                                              (0.5,), (0.5,)))
    with pytest.raises(ValueError, match=r"grouped_conv must be one of.*grouped_conv='fast'"):
        kres.export(model, str(tmp_path / "bad"), grouped_conv="fast", dataset="mnist")
    assert not (tmp_path / "bad").exists()


def test_a_saved_model_stores_each_weight_once(gray_model, exported):
    # keras-team/keras#23553: ExportArchive.track(model) stores every variable twice.
    path, _ = exported
    stored = sum(int(np.prod(shape)) for name, shape in
                 tf.train.list_variables(os.path.join(path, "variables", "variables"))
                 if name != "_CHECKPOINTABLE_OBJECT_GRAPH")
    assert stored == sum(int(np.prod(w.shape)) for w in gray_model.weights)
