"""kres on Keras's JAX backend where TensorFlow is not installed: `make test` runs
this file in .venv-jax (requirements-jax.txt), the real thing; in the main
environment, where TensorFlow is installed, it is skipped.

Training with the recipes' toolkit (augmentation, AdamW with accumulation, the
weight average, backups), a crash and its resume, `kres evaluate`, a
`kres tune` search with two trials side by side (``--parallel``), an image
folder (decoded by Pillow and simplejpeg), the pipeline's order and crop
draws, and the refusals of what needs TensorFlow, each naming what is missing.
"""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from kres.backends import has_tensorflow

if os.environ.get("KRES_EXPECT_NO_TENSORFLOW") and has_tensorflow():  # make test sets it
    raise RuntimeError("KRES_EXPECT_NO_TENSORFLOW is set, but TensorFlow is installed in this "
                       f"environment ({sys.executable}): these tests would prove nothing")
pytestmark = pytest.mark.skipif(
    has_tensorflow(), reason="TensorFlow is installed here; make test runs this file in "
                             "the TensorFlow-free .venv-jax")

TINY = {"depths": (1, 1, 1)}


def _arrays(n=96):
    from kres.data import sources

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)
    y = (x.mean(axis=(1, 2, 3)) > 127).astype(int)
    return sources.from_arrays(x, y, x[:32], y[:32], num_classes=2, val_size=32)


def test_the_backend_is_jax_and_tensorflow_is_missing():
    import keras

    assert keras.backend.backend() == "jax"
    with pytest.raises(ModuleNotFoundError):
        import tensorflow  # noqa: F401


def test_a_run_resumed_after_a_crash_ends_as_an_uninterrupted_run(tmp_path):
    import keras

    from kres import training
    from kres.data.batches import Examples

    class Crash(Exception):
        pass

    class CrashAt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_begin(self, batch, logs=None):
            if (self.epoch, batch) == (2, 1):
                raise Crash()

    assert isinstance(_arrays().train, Examples)
    config = training.TrainConfig(
        "cifar_resnet20", "arrays", model_overrides=TINY, seed=3,
        recipe_overrides={"epochs": 3, "batch_size": 16, "augment": "crop_flip",
                          "optimizer": "adamw", "learning_rate": 3e-3, "weight_decay": 0.05,
                          "accumulation_steps": 2, "ema": True, "ema_decay": 0.9,
                          "mixup_alpha": 0.2})
    whole, crashed = tmp_path / "whole", tmp_path / "crashed"
    results = training.train(config, run_dir=str(whole), data=_arrays(), verbose=0)
    with pytest.raises(Crash):
        training.train(config, run_dir=str(crashed), data=_arrays(), verbose=0,
                       callbacks=[CrashAt()])
    training.train(config, run_dir=str(crashed), data=_arrays(), verbose=0)

    def rows(run):
        with open(run / "history.csv") as f:
            return [{k: float(v) for k, v in r.items()
                     if k not in ("epoch_time", "images_per_second")}
                    for r in csv.DictReader(f)]

    assert [r["epoch"] for r in rows(crashed)] == [0, 1, 2]
    for resumed, uninterrupted in zip(rows(crashed), rows(whole)):
        assert resumed == pytest.approx(uninterrupted, rel=1e-5)
    assert 0 <= results["test_accuracy"] <= 1
    assert not (whole / "tensorboard").exists()  # Keras's writer is TensorFlow's


def test_train_evaluate_and_tune_from_the_command_line(tmp_path):
    """Fashion-MNIST from Debian's IDX files, through the `kres` command."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    kres = [sys.executable, "-m", "kres.cli"]
    run = tmp_path / "run"
    done = subprocess.run([*kres, "train", "--model", "cifar_resnet20", "--set", "depths=1,1,1",
                           "--dataset", "fashion_mnist", "--subset", "512", "--val-size", "256",
                           "--epochs", "1", "--out", str(run)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "float32 (auto: JAX on a CPU" in done.stdout
    with open(run / "results.json") as f:
        trained = json.load(f)
    done = subprocess.run([*kres, "evaluate", str(run), "--dataset", "fashion_mnist",
                           "--report", "--out", str(tmp_path / "evaluated")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(tmp_path / "evaluated" / "report.json") as f:
        evaluated = json.load(f)
    assert not trained["test_flip"]  # the run's test accuracy is the single view's
    assert evaluated["examples"] == 10_000
    assert evaluated["accuracy"] == pytest.approx(trained["test_accuracy"], abs=1e-6)
    assert trained["precision"] == "float32" and trained["train_examples"] == 512
    # Two trials side by side, as on a machine with two GPUs (a chief and a worker each).
    search = tmp_path / "search"
    done = subprocess.run([*kres, "tune", "--space", "cifar-resnet", "--depths", "8,14",
                           "--dataset", "fashion_mnist", "--tuner", "random", "--max-trials", "2",
                           "--max-epochs", "1", "--subset", "256", "--val-size", "128",
                           "--out", str(search), "--parallel", "2"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 workers, sharing this machine" in done.stdout and "best trial" in done.stdout
    assert (search / "best.keras").is_file()
    with open(search / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["depths"] for r in rows) == ["14", "8"]
    assert all(r["status"] == "COMPLETED" for r in rows)
    # Each worker ran a trial (keras-tuner writes tunerN.json as its trial ends).
    assert sorted(f for f in os.listdir(search / "project") if f.startswith("tuner")) == [
        "tuner0.json", "tuner1.json"]
    assert sorted(os.listdir(search / "workers")) == ["tuner0.log", "tuner1.log"]


@pytest.mark.parametrize("argv, missing", [
    (["export", "--model", "{model}", "--name", "x"], "kres export"),
    (["train", "--model", "cifar_resnet20", "--dataset", "cifar10"], "Dataset 'cifar10'"),
    (["tune", "--space", "cifar-resnet", "--dataset", "mnist"], "Dataset 'mnist'"),
])
def test_what_needs_tensorflow_says_so_before_any_work(tmp_path, capsys, argv, missing,
                                                       monkeypatch):
    from kres.cli import main

    (tmp_path / "a").mkdir()
    model = tmp_path / "m.keras"
    model.write_bytes(b"")
    argv = [a.format(model=model, folder=tmp_path) for a in argv]
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--out", str(tmp_path / "out")] if argv[0] != "export" else argv) == 2
    error = capsys.readouterr().err
    assert missing in error and "needs TensorFlow" in error and "pip install tensorflow" in error
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("backend, says", [
    ("torch", "kres runs on Keras's tensorflow and jax backends, not 'torch'"),
    ("tensorflow", "Keras's tensorflow backend needs the tensorflow package"),
])
def test_a_backend_kres_cannot_run_on_is_refused_by_name(tmp_path, backend, says):
    done = subprocess.run([sys.executable, "-m", "kres.cli", "train", "--model", "cifar_resnet20",
                           "--dataset", "fashion_mnist", "--out", str(tmp_path / "run")],
                          env={**os.environ, "KERAS_BACKEND": backend}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and says in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "run").exists()


def test_keras_without_its_default_backend_says_which_to_set(tmp_path):
    # KERAS_BACKEND unset and no keras.json: Keras's default is TensorFlow, missing here.
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["KERAS_HOME"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-c", "import kres; kres.CifarResNet20()"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert ("ModuleNotFoundError: Keras's tensorflow backend needs the tensorflow package, "
            "which is not installed here (Keras's choice with KERAS_BACKEND unset): pip install "
            "tensorflow, or set KERAS_BACKEND=jax (installed here)") in done.stderr, done.stderr
    # Set then, in the same process: Keras imports, with kres's layers registered.
    script = ("import os, kres\ntry:\n    kres.CifarResNet20()\nexcept ModuleNotFoundError:\n"
              "    os.environ['KERAS_BACKEND'] = 'jax'\nimport keras\n"
              "print(keras.backend.backend(), 'kres>GroupedConv2D' in "
              "keras.saving.get_custom_objects())")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.split() == ["jax", "True"], done.stderr[-2000:]


def test_batches_made_in_threads_at_once_are_the_batches_made_in_turn():
    # A PyDataset's workers make batches at once; the augmentation layers' draws
    # are keyed by swapping each layer's generator, which the threads take in turn.
    from concurrent.futures import ThreadPoolExecutor

    from kres.data.batches import Examples, batches
    from kres.data.catalog import DatasetSpec

    spec = DatasetSpec(None, 28, 1, 10, (0.5,), (0.25,), augment="crop_flip")
    rng = np.random.default_rng(0)
    data = Examples(rng.integers(0, 255, (256, 28, 28, 1), dtype=np.uint8),
                    np.arange(256) % 10)
    for settings in ({"augment": "crop_flip"},
                     {"augment": "crop", "auto_augment": "randaugment", "mixup_alpha": 0.2}):
        train = batches(data, spec, training=True, batch_size=16, image_size=32, channels=1,
                        num_classes=10, seed=0, **settings)
        in_turn = [train[i] for i in range(16)]
        with ThreadPoolExecutor(4) as pool:
            at_once = list(pool.map(train.__getitem__, range(16)))
        for (x, y), (tx, ty) in zip(in_turn, at_once, strict=True):
            np.testing.assert_array_equal(tx, x)
            np.testing.assert_array_equal(ty, y)


def test_the_training_order_is_the_seeded_permutation():
    """The tf.data pipeline shuffles in the same order (tests/test_backends.py)."""
    from kres.data.batches import Examples, batches
    from kres.data.catalog import DatasetSpec
    from kres.data.keyed_draws import epoch_order

    x = np.arange(40, dtype=np.uint8).reshape(40, 1, 1, 1).repeat(4, 1).repeat(4, 2)
    spec = DatasetSpec(None, 4, 1, 40, (0.5,), (0.25,), augment="none")
    ds = batches(Examples(x, np.arange(40)), spec, training=True, batch_size=8, image_size=4,
                 channels=1, num_classes=40, seed=5, first_epoch=1)
    seen = np.concatenate([np.argmax(ds[i][1], axis=-1) for i in range(10)])
    assert seen[:40].tolist() == epoch_order(5, 1, 40).tolist()
    assert seen[40:].tolist() == epoch_order(5, 2, 40).tolist()
    # A permutation of its own per epoch and per seed, not the stored order.
    orders = [epoch_order(5, 1, 40), epoch_order(5, 2, 40), epoch_order(6, 1, 40)]
    assert all(sorted(o.tolist()) == list(range(40)) for o in orders)
    assert all(o.tolist() != list(range(40)) for o in orders)
    assert len({tuple(o.tolist()) for o in orders}) == 3
    assert ds[0][0][:, 0, 0, 0].tolist() == epoch_order(5, 1, 40)[:8].tolist()


DATA_PARALLEL = r"""
import json, sys
import numpy as np
import keras
from kres import training
from kres.data import sources

rng = np.random.default_rng(0)
x = rng.integers(0, 256, (96, 8, 8, 1), dtype=np.uint8)
y = (x.mean(axis=(1, 2, 3)) > 127).astype(int)
data = sources.from_arrays(x, y, x[:32], y[:32], num_classes=2, val_size=32)
results = training.train("cifar_resnet20", "arrays", data=data, run_dir=sys.argv[1],
                         model_overrides={"depths": (1, 1, 1)}, strategy="mirrored",
                         recipe_overrides={"epochs": 2, "batch_size": 16}, verbose=0)
distribution = keras.distribution.distribution()
model = keras.saving.load_model(sys.argv[1] + "/best.keras")
print(json.dumps({"distribution": type(distribution).__name__,
                  "devices": len(distribution.device_mesh.devices.flatten()),
                  "accuracy": results["test_accuracy"]}))
"""


def test_strategy_mirrored_is_kerass_data_parallel_over_the_devices(tmp_path):
    """Two CPU devices stand in for two GPUs (XLA's host platform device count)."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    done = subprocess.run([sys.executable, "-c", DATA_PARALLEL, str(tmp_path / "run")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["distribution"] == "DataParallel" and out["devices"] == 2
    assert 0 <= out["accuracy"] <= 1


def test_an_image_folder_trains_and_evaluates_on_its_split(tmp_path, capsys):
    """A folder of JPEGs and PNGs of many sizes, one of them corrupt: refused by
    name, then skipped; `kres evaluate` scores the run's test split as the run did."""
    from PIL import Image

    from kres.cli import main

    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"

    def write(start, count):
        for c, name in enumerate(("dark", "light")):
            (folder / name).mkdir(parents=True, exist_ok=True)
            for i in range(start, start + count):
                size = (int(rng.integers(12, 40)), int(rng.integers(12, 40)))
                pixels = rng.integers(0, 128, (*size, 3)) + 127 * c
                Image.fromarray(pixels.astype(np.uint8)).save(
                    folder / name / f"{i}.{'jpg' if i % 2 else 'png'}")

    write(0, 12)
    (folder / "dark" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(40))
    run = tmp_path / "run"
    args = ["train", "--model", "cifar_resnet20", "--set", "depths=1,1,1", "--dataset",
            str(folder), "--image-size", "16", "--epochs", "1", "--batch-size", "4",
            "--out", str(run), "--quiet"]
    assert main(args) == 2
    assert "dark/broken.jpg" in capsys.readouterr().err and not run.exists()
    assert main([*args, "--skip-bad-images"]) == 0
    from kres.data.splits import read_splits

    splits = read_splits(str(run / "splits.json"))
    with open(run / "results.json") as f:
        results = json.load(f)
    assert sum(len(items) for items in splits.values()) == 24  # the broken file left out
    assert results["train_examples"] == len(splits["train"])
    write(12, 12)  # images added since: a split made now would differ from the run's
    assert main(["evaluate", str(run / "best.keras"), "--dataset", str(folder), "--report",
                 "--out", str(tmp_path / "report")]) == 0
    printed = dict(zip(*[iter(capsys.readouterr().out.split())] * 2))
    assert float(printed["accuracy"]) == pytest.approx(results["test_accuracy"], abs=1e-6)
    with open(tmp_path / "report" / "report.json") as f:
        assert json.load(f)["examples"] == len(splits["test"])


def test_the_crop_draws_of_a_batch_are_the_layers_own_image_by_image():
    """The ImageNet crop's boxes and flips, drawn for a whole batch in one compiled
    call, are what the layers draw called image by image with the same keys."""
    import keras

    from kres.data import augment as layers
    from kres.data.batches import _crop_draws, _crop_flip
    from kres.data.keyed_draws import fold_in, keyed

    crop = (layers.RandomResizedCrop(24, 24), layers.RandomFlip())
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (int(rng.integers(10, 60)), int(rng.integers(10, 60)), 3))
              .astype(np.float32) for _ in range(8)]  # each size compiles the layers here
    keys = np.stack([np.array([77, j], np.int64) for j in range(8)])
    boxes, flips = _crop_draws(crop)(np.array([i.shape[:2] for i in images]), keys)
    assert 0 < flips.sum() < 8 and len({tuple(b) for b in boxes}) == 8
    for image, key, box, flipped in zip(images, keys, boxes, flips):
        expected = keras.ops.convert_to_numpy(
            keyed(crop[1], keyed(crop[0], image, key), fold_in(key, 1)))
        # JAX's resize and NumPy's (TensorFlow's arithmetic) differ in float rounding.
        np.testing.assert_allclose(_crop_flip(image, box, flipped, 24), expected, atol=1e-3)
