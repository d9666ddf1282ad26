"""Training: recipes and schedules, a real short run, resume after a kill, NaN,
early stopping, and the errors raised before any training starts."""

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

import kres
from kres import data as datasets
from kres import training
from kres.data import pipeline as augment
from kres.models.inference import in_float32
from kres.training import optimizers, recipes

TINY = {"depths": (1, 1, 1)}  # a CIFAR ResNet-8: the same code, fast


def _lr(schedule, step):
    return float(schedule(step))


def test_step_schedules_at_their_boundaries():
    he = optimizers.learning_rate_schedule(recipes.RECIPES["he2015-cifar"], steps_per_epoch=100)
    total = 164 * 100
    assert _lr(he, 0) == pytest.approx(0.1)
    assert _lr(he, total // 2) == pytest.approx(0.1)
    assert _lr(he, total // 2 + 1) == pytest.approx(0.01)
    assert _lr(he, int(total * 0.75) + 1) == pytest.approx(0.001)
    wrn = optimizers.learning_rate_schedule(recipes.RECIPES["wrn-cifar"], steps_per_epoch=10)
    assert [_lr(wrn, e * 10 + 1) for e in (59, 60, 120, 160)] == pytest.approx(
        [0.1, 0.02, 0.004, 0.0008])
    imagenet = recipes.resolve_recipe("imagenet-step", batch_size=512)
    step = optimizers.learning_rate_schedule(imagenet, steps_per_epoch=10)
    assert [_lr(step, e * 10 + 1) for e in (0, 30, 60)] == pytest.approx([0.2, 0.02, 0.002])


def test_cosine_schedule_warms_up_then_decays():
    recipe = recipes.resolve_recipe("imagenet-cosine", batch_size=256, epochs=20)
    schedule = optimizers.learning_rate_schedule(recipe, steps_per_epoch=10)
    assert _lr(schedule, 0) == pytest.approx(0.0)
    assert _lr(schedule, 25) == pytest.approx(0.05)
    assert _lr(schedule, 50) == pytest.approx(0.1)
    assert _lr(schedule, 125) == pytest.approx(0.05, rel=1e-3)  # halfway down the cosine
    assert _lr(schedule, 200) == pytest.approx(0.0, abs=1e-6)


def test_coupled_weight_decay():
    model = kres.build_model("cifar_resnet20", **TINY)
    n_all = optimizers.apply_weight_decay(model, 1e-4, decay_all=True)
    assert n_all == len(model.trainable_weights)
    expected = 1e-4 / 2 * sum(float(np.sum(w.numpy() ** 2)) for w in model.trainable_weights)
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-5)
    fresh = kres.build_model("cifar_resnet20", **TINY)
    n_kernels = optimizers.apply_weight_decay(fresh, 1e-4, decay_all=False)
    assert n_kernels == sum(len(w.shape) > 1 for w in fresh.trainable_weights) < n_all
    # Decay is a training setting, not part of the saved architecture.
    assert "L2" not in json.dumps(fresh.get_config())


def test_short_run_on_real_fashion_mnist_learns(trained, fashion_mnist_dir):
    # The shared run (conftest.py): kres.train of a one-block ResNet on 4,000 images.
    run = Path(trained).parent
    with open(run / "results.json") as f:
        results = json.load(f)
    with open(run / "config.json") as f:
        config = training.TrainConfig(**json.load(f))
    assert (config.subset, config.model_overrides, config.recipe_overrides["epochs"]) == \
        (4000, {"depths": [1, 1, 1]}, 2)
    assert results["test_accuracy"] > 0.6  # chance is 0.1
    assert results["epochs_run"] == 2 and len(results["epoch_times"]) == 2
    assert results["params"] == kres.count_params(kres.build_model(
        "cifar_resnet20", classes=10, input_shape=(28, 28, 1), **TINY))
    # Images per second: the median over the epochs of 4,000 images / the epoch's time.
    assert results["train_images_per_second"] == pytest.approx(
        float(np.median([4000 / t for t in results["epoch_times"]])), rel=1e-6)
    assert sorted(os.listdir(run)) == ["best.keras", "config.json", "confusion.png",
                                       "curves.png", "history.csv", "mistakes.png",
                                       "model.json", "report.json", "results.json",
                                       "tensorboard", "trained.json"]
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert float(rows[1]["learning_rate"]) == pytest.approx(0.001)  # /10 twice by the end
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    best = keras.saving.load_model(run / "best.keras", safe_mode=True)
    assert best.input_shape == (None, 28, 28, 1)
    # (`kres evaluate` of best.keras gives the run's test accuracy: test_cli.py.)
    # flip=True: each image's and its mirror image's probabilities averaged, on
    # the run's 1,000 validation images (the last of the training split).
    import tensorflow_datasets as tfds

    val = tfds.load("fashion_mnist", split="train[59000:]", data_dir=fashion_mnist_dir,
                    as_supervised=True)
    images, labels = (np.stack(a) for a in zip(*tfds.as_numpy(val)))
    x = images.astype("float32")  # pixels: the model normalises them itself
    both = best.predict(x, verbose=0) + best.predict(x[:, :, ::-1], verbose=0)
    flipped = training.evaluate(str(run / "best.keras"), "fashion_mnist", split="val",
                                data_dir=fashion_mnist_dir, flip=True)
    assert flipped["accuracy"] == pytest.approx(np.mean(both.argmax(1) == labels), abs=1e-4)
    with pytest.raises(ValueError, match="has finished already"):
        training.train(config, run_dir=str(run), verbose=0)


def test_flip_averaged_is_the_mean_over_the_mirror_and_saves(tmp_path):
    model = kres.build_model("cifar_resnet20", classes=3, input_shape=(8, 8, 1), **TINY)
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 1)).astype("float32")
    averaged = kres.flip_averaged(model)
    expected = (model(x).numpy() + model(x[:, :, ::-1]).numpy()) / 2
    np.testing.assert_allclose(averaged(x).numpy(), expected, atol=1e-6)
    assert not np.allclose(expected, model(x).numpy(), atol=1e-3)  # the mirror counts
    averaged.save(tmp_path / "averaged.keras")
    np.testing.assert_allclose(kres.load_model(tmp_path / "averaged.keras")(x).numpy(),
                               expected, atol=1e-6)
    # Exports serve a mixed-precision model's float32 network, the nested one too.
    mixed = kres.build_model("cifar_resnet20", classes=3, input_shape=(8, 8, 1),
                             dtype="mixed_bfloat16", **TINY)
    served = in_float32(kres.flip_averaged(mixed))
    nested = [layer for layer in served.layers if isinstance(layer, keras.Model)]
    assert len(nested) == 1 and {layer.compute_dtype for layer in nested[0].layers} == \
        {"float32"}
    np.testing.assert_allclose(served(x).numpy(), kres.flip_averaged(mixed)(x).numpy(),
                               atol=0.02)
    with pytest.raises(ValueError, match=r"model must take one image batch.*input_shape"):
        kres.flip_averaged(keras.Sequential([keras.Input((5,)), keras.layers.Dense(2)]))


def test_recipe_test_flip_scores_the_test_set_both_ways(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (96, 8, 8, 1), dtype=np.uint8)
    labels = (images[:, :, :4].mean(axis=(1, 2, 3)) > 127).astype(int)  # not mirror-symmetric
    flipping = datasets.from_arrays(images, labels, images[:32], labels[:32], num_classes=2,
                                    val_size=32, augment="crop_flip")
    results = kres.train("cifar_resnet20", "arrays", run_dir=str(tmp_path / "run"),
                         data=flipping, model_overrides=TINY, epochs=1, batch_size=32,
                         test_flip=True, verbose=0)
    best = kres.load_model(tmp_path / "run" / "best.keras")
    test = augment.pipeline(flipping.test, flipping.spec, training=False, cache=False,
                            image_size=8, channels=1, num_classes=2, batch_size=32)
    x, y = (np.concatenate(a) for a in zip(*((x.numpy(), y.numpy()) for x, y in test)))
    single, mirror = best.predict(x, verbose=0), best.predict(x[:, :, ::-1], verbose=0)
    assert results["test_flip"] is True
    assert results["test_accuracy_single_view"] == pytest.approx(
        np.mean(single.argmax(1) == y.argmax(1)))
    assert results["test_accuracy"] == pytest.approx(
        np.mean((single + mirror).argmax(1) == y.argmax(1)))
    # A network never shown a mirror image: refused before training.
    with pytest.raises(ValueError, match=r"augmentation \('none'\).*test_flip=True"):
        kres.train("cifar_resnet20", "arrays", run_dir=str(tmp_path / "other"), data=_arrays(),
                   model_overrides=TINY, epochs=1, batch_size=32, test_flip=True, verbose=0)
    assert not (tmp_path / "other").exists()
    # fast-cpu's own test_flip is off for such data, and its results say so.
    plain = kres.train("cifar_resnet20", "arrays", run_dir=str(tmp_path / "plain"),
                       data=_arrays(), model_overrides=TINY, recipe="fast-cpu", epochs=3,
                       batch_size=32, verbose=0)
    assert recipes.RECIPES["fast-cpu"].test_flip and plain["test_flip"] is False
    assert "test_accuracy_single_view" not in plain


RESUME_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import numpy as np, keras
    from kres import training
    from kres import data as datasets

    run_dir, kill_at = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (160, 8, 8, 1), dtype=np.uint8)
    y = (x.mean(axis=(1, 2, 3)) > 127).astype(int)
    arrays = datasets.from_arrays(x, y, x[:32], y[:32], num_classes=2, val_size=32)
    config = training.TrainConfig("cifar_resnet20", "arrays",
                                  model_overrides={"depths": [1, 1, 1]},
                                  recipe_overrides={"epochs": 4, "batch_size": 32})

    class Probe(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            state = {"epoch": epoch, "iterations": int(self.model.optimizer.iterations)}
            with open(os.path.join(run_dir, f"probe-{epoch}.json"), "w") as f:
                json.dump(state, f)
            np.savez(os.path.join(run_dir, f"weights-{epoch}.npz"), *self.model.get_weights())
            if epoch == kill_at:
                os._exit(3)  # a crash: no callback, no cleanup

    training.train(config, run_dir=run_dir, data=arrays, callbacks=[Probe()], verbose=0)
""")


def _run(script, *args):
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=600)


# The default suite resumes a SIGKILLed run through the command line
# (test_commands.py); this one also checks the restored weights and iteration count.
@pytest.mark.slow
def test_killed_run_resumes_where_it_was(tmp_path):
    run = tmp_path / "run"
    first = _run(RESUME_SCRIPT, str(run), "2")
    assert first.returncode == 3, first.stderr[-2000:]
    with open(run / "backup" / "training_metadata.json") as f:
        assert json.load(f)["epoch"] == 2
    killed_state = np.load(run / "weights-2.npz")

    second = _run(RESUME_SCRIPT, str(run), "-1")
    assert second.returncode == 0, second.stderr[-2000:]
    with open(run / "probe-2.json") as f:
        resumed = json.load(f)
    steps_per_epoch = 128 // 32
    assert resumed == {"epoch": 2, "iterations": 2 * steps_per_epoch}
    restored = np.load(run / "weights-2.npz")  # rewritten by the resumed process
    for key in killed_state:
        np.testing.assert_array_equal(restored[key], killed_state[key])
    with open(run / "history.csv") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["0", "1", "2", "3"]
    with open(run / "results.json") as f:
        assert json.load(f)["epochs_run"] == 4
    assert not (run / "backup").exists()  # a finished run leaves no backup


def _arrays(n=96):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)
    y = (x.mean(axis=(1, 2, 3)) > 127).astype(int)
    return datasets.from_arrays(x, y, x[:32], y[:32], num_classes=2, val_size=32)


class _PoisonAt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            kernel = self.model.get_layer("predictions").kernel
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))


def test_nan_stops_with_an_error_and_keeps_the_last_good_backup(tmp_path):
    config = training.TrainConfig("cifar_resnet20", "arrays", model_overrides=TINY,
                                  recipe_overrides={"epochs": 4, "batch_size": 32})
    with pytest.raises(RuntimeError, match="NaN or Inf"):
        training.train(config, run_dir=str(tmp_path), data=_arrays(), callbacks=[_PoisonAt(2)],
                       verbose=0)
    with open(tmp_path / "backup" / "training_metadata.json") as f:
        assert json.load(f)["epoch"] == 2
    with h5py.File(tmp_path / "backup" / "latest.weights.h5") as f:
        arrays = []
        f.visititems(lambda _, o: arrays.append(o[()]) if isinstance(o, h5py.Dataset) else None)
    assert arrays and all(np.all(np.isfinite(a)) for a in arrays)


class _Crash(Exception):
    pass


class _CrashAt(keras.callbacks.Callback):
    """Raises at the start of batch `batch` of epoch `epoch`: a crash mid-epoch."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise _Crash(f"crashed at {self.at}")


def test_a_run_resumed_after_a_crash_ends_as_an_uninterrupted_run(tmp_path):
    """The resumed epochs see the batches (order and augmentation) of an
    uninterrupted run, and take the optimizer's state and the weight average
    up where they were: the histories and the final weights agree. Before the
    pipelines were keyed by epoch, the resumed epoch 2 saw epoch 0's order;
    before the average's update count was read after the restore, a run
    resumed mid-accumulation averaged once too often.

    AdamW with gradient accumulation and the weight average (``--ema``):
    validation scores the average (``val_*``) beside the raw weights
    (``raw_val_*``), ``best.keras`` holds the average of its epoch, and the raw
    weights the run ended with are scored on the test set."""
    config = training.TrainConfig(
        "cifar_resnet20", "arrays", model_overrides=TINY, seed=3,
        recipe_overrides={"epochs": 4, "batch_size": 16, "augment": "crop_flip",
                          "optimizer": "adamw", "learning_rate": 3e-3, "weight_decay": 0.05,
                          "accumulation_steps": 2, "ema": True, "ema_decay": 0.9})
    whole, crashed = tmp_path / "whole", tmp_path / "crashed"
    results = training.train(config, run_dir=str(whole), data=_arrays(), verbose=0)
    with pytest.raises(_Crash):
        training.train(config, run_dir=str(crashed), data=_arrays(), verbose=0,
                       callbacks=[_CrashAt(2, 1)])
    assert sorted(p.name for p in (crashed / "backup").glob("average-*")) == [
        "average-1.npz", "average-2.npz"]  # the average of each backup kept
    before = (crashed / "history.csv").read_text()
    training.train(config, run_dir=str(crashed), data=_arrays(), verbose=0)

    def rows(run):
        with open(run / "history.csv") as f:
            return [{k: v for k, v in r.items() if k not in ("epoch_time", "images_per_second")}
                    for r in csv.DictReader(f)]

    assert (crashed / "history.csv").read_text().startswith(before)  # epochs 0-1 kept
    assert [r["epoch"] for r in rows(crashed)] == ["0", "1", "2", "3"]
    for resumed, uninterrupted in zip(rows(crashed), rows(whole)):
        for key, value in resumed.items():
            assert float(value) == pytest.approx(float(uninterrupted[key]), rel=1e-5), key
    a = kres.load_model(str(crashed / "best.keras")).get_weights()
    best = kres.load_model(str(whole / "best.keras"))
    assert max(float(np.max(np.abs(x - y))) for x, y in zip(a, best.get_weights())) < 1e-5
    _check_the_average(config, whole, results, best)


def test_a_run_killed_during_its_test_resumes_with_the_test_alone(tmp_path, monkeypatch):
    """Keras deletes the backup as the fit ends; a kill during the test after
    it used to leave a run that resumed from epoch 0. The fit's end is marked
    (``trained.json``) first, with the raw weights of the average's run."""
    from kres.training import run as krun

    config = training.TrainConfig("cifar_resnet20", "arrays", model_overrides=TINY, seed=0,
                                  recipe_overrides={"epochs": 2, "batch_size": 32,
                                                    "ema": True})
    real = krun.scores

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(krun, "scores", killed)
    with pytest.raises(KeyboardInterrupt):
        training.train(config, run_dir=str(tmp_path), data=_arrays(), verbose=0)
    assert not (tmp_path / "backup").exists() and not (tmp_path / "results.json").exists()
    assert (tmp_path / "trained.json").is_file() and (tmp_path / "last-raw.npz").is_file()
    history = (tmp_path / "history.csv").read_text()

    class Epochs(keras.callbacks.Callback):
        begun = []

        def on_epoch_begin(self, epoch, logs=None):
            self.begun.append(epoch)

    monkeypatch.setattr(krun, "scores", real)
    results = training.train(config, run_dir=str(tmp_path), data=_arrays(), verbose=0,
                             callbacks=[Epochs()])
    assert Epochs.begun == []  # nothing trained again
    assert (tmp_path / "history.csv").read_text() == history
    assert results["epochs_run"] == 2 and "test_accuracy_raw" in results


def _check_the_average(config, run, results, best):
    """What a run with the weight average leaves: both validation scores, the
    average in best.keras, the raw weights scored on the test set."""
    from kres.training.fit import pipelines

    with open(run / "history.csv") as f:
        history = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    assert any(r["val_loss"] != r["raw_val_loss"] for r in history)
    assert results["best_raw_val_accuracy"] == max(r["raw_val_accuracy"] for r in history)
    raw = kres.load_model(str(run / "best.keras"))
    raw.set_weights(kres.rundir.load_arrays(str(run / "last-raw.npz")))
    images, labels = next(iter(_arrays().test.batch(1000)))
    predicted = raw.predict(images.numpy().astype("float32"), verbose=0).argmax(axis=1)
    assert results["test_accuracy_raw"] == pytest.approx(np.mean(predicted == labels.numpy()))
    # The checkpoint is the average: it scores the validation loss logged for its epoch.
    logged = max(history, key=lambda r: r["val_accuracy"])
    recipe = recipes.resolve_recipe("he2015-cifar", **config.recipe_overrides)
    _, val_ds = pipelines(_arrays(), recipe, 8, 1)
    best.compile(loss="categorical_crossentropy")
    assert best.evaluate(val_ds, verbose=0, return_dict=True)["loss"] == pytest.approx(
        logged["val_loss"], rel=1e-5)


def test_the_epoch_a_backup_resumes_at_is_the_one_keras_restores(tmp_path):
    """`kres.rundir.backup_epoch` (the epoch the training pipeline starts at) decides
    as Keras's BackupAndRestore: its latest copy, or the one before where the latest
    weights file does not open (a kill while it was written)."""
    from kres import rundir as runs

    backup = tmp_path / "backup"
    assert runs.backup_epoch(str(backup)) == 0
    backup.mkdir()
    (backup / "training_metadata.json").write_text('{"epoch": 3}')
    (backup / "training_metadata.json.bkp").write_text('{"epoch": 2}')
    with h5py.File(backup / "latest.weights.h5", "w") as f:
        f["w"] = np.zeros(3)
    (backup / "latest.weights.h5.bkp").write_bytes((backup / "latest.weights.h5").read_bytes())
    assert runs.backup_epoch(str(backup)) == 3
    whole = (backup / "latest.weights.h5").read_bytes()
    (backup / "latest.weights.h5").write_bytes(whole[: len(whole) // 3])  # truncated
    assert runs.backup_epoch(str(backup)) == 2


def test_early_stopping_stops_when_validation_stalls(tmp_path):
    # A learning rate too small to change anything and frozen batch-norm
    # statistics (momentum 1): validation accuracy never improves after the
    # first epoch, so patience 1 stops after the second.
    config = training.TrainConfig("cifar_resnet20", "arrays",
                                  model_overrides={**TINY, "bn_momentum": 1.0},
                                  recipe_overrides={"epochs": 10, "batch_size": 32,
                                                    "learning_rate": 1e-12, "patience": 1})
    results = training.train(config, run_dir=str(tmp_path), data=_arrays(), verbose=0)
    assert results["epochs_run"] == 2
    with open(tmp_path / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[1]["val_accuracy"]) <= float(rows[0]["val_accuracy"])  # no improvement
    assert results["best_val_accuracy"] == pytest.approx(float(rows[0]["val_accuracy"]))


@pytest.mark.parametrize("kwargs, message", [
    ({"dataset": "fashion-mnist"}, r"Did you mean 'fashion_mnist'"),
    ({"model": "resnet21"}, r"Did you mean 'resnet18'|Did you mean 'resnet34'|resnet21"),
    ({"recipe": "he2015"}, r"Did you mean 'he2015-cifar'"),
    ({"recipe_overrides": {"epoch": 3}}, r"Unknown recipe field.*epoch=3"),
    ({"model": "resnet50"}, r"image_size is too small for resnet50.*image_size=28"),
    ({"subset": 100}, r"batch_size is larger than the 100 training examples.*batch_size=128"),
    ({"strategy": "multi-worker"}, r"needs the cluster in TF_CONFIG"),
    ({"precision": "fp8"}, r"precision='fp8'"),
    ({"model_overrides": {"cardinality": 4}}, r"bottleneck blocks.*cardinality=4"),
    ({"model_overrides": {"cardinalty": 4}}, r"Did you mean 'cardinality'"),
])
def test_bad_configs_fail_before_training(kwargs, message, fashion_mnist_dir, tmp_path):
    # Most fail when the config is made, the others when training starts: before any work.
    with pytest.raises(ValueError, match=message):
        config = training.TrainConfig(**{"model": "cifar_resnet20", "dataset": "fashion_mnist",
                                         "data_dir": fashion_mnist_dir, **kwargs})
        training.train(config, run_dir=str(tmp_path / "run"), verbose=0)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("fields, message", [
    ({"epochs": True}, r"epochs must be a positive integer. Received: epochs=True"),
    ({"epochs": 0}, r"Received: epochs=0"),
    ({"momentum": -3}, r"momentum must be a number in \[0, 1\). Received: momentum=-3"),
    ({"learning_rate": "0.1"}, r"learning_rate must be a number > 0. Received: "
                               r"learning_rate='0.1'"),
    ({"milestones": (0.75, 0.5)}, r"increasing.*Received: milestones=\(0.75, 0.5\)"),
    ({"label_smoothing": 1.0}, r"Received: label_smoothing=1.0"),
    ({"warmup_epochs": 200}, r"Received: warmup_epochs=200"),
    ({"augment": "flip"}, r"augment must be one of.*Received: augment='flip'"),
    ({"nesterov": 1}, r"nesterov must be True or False. Received: nesterov=1"),
    ({"patience": -1}, r"Received: patience=-1"),
    ({"batch_size": 64.0}, r"Received: batch_size=64.0"),
])
def test_recipes_check_every_field_when_made(fields, message):
    with pytest.raises(ValueError, match=message):
        recipes.Recipe(**fields)
    with pytest.raises(ValueError, match=message):
        recipes.resolve_recipe("he2015-cifar", **fields)


@pytest.mark.parametrize("fields, message", [
    ({"image_size": 0}, r"Received: image_size=0"),
    ({"channels": 2}, r"Received: channels=2"),
    ({"subset": True}, r"Received: subset=True"),
    ({"seed": -1}, r"Received: seed=-1"),
    ({"jit_compile": "yes"}, r"Received: jit_compile='yes'"),
    ({"strategy": "tpu"}, r"Received: strategy='tpu'"),
    ({"recipe_overrides": {"epochs": "3"}}, r"Received: epochs='3'"),
    ({"recipe_overrides": ["epochs"]}, r"Received: recipe_overrides=\['epochs'\]"),
])
def test_train_configs_check_every_field_when_made(fields, message):
    with pytest.raises(ValueError, match=message):
        training.TrainConfig("cifar_resnet20", "fashion_mnist", **fields)


def test_kres_train_takes_settings_and_leaves_the_dtype_policy_alone(tmp_path):
    before = keras.config.dtype_policy().name
    results = kres.train("cifar_resnet20", "arrays", run_dir=str(tmp_path / "run"),
                         data=_arrays(), model_overrides=TINY, epochs=1, batch_size=32,
                         precision="mixed_bfloat16", verbose=0)
    assert results["precision"] == "mixed_bfloat16" and results["epochs_run"] == 1
    # The run's model was mixed; nothing built afterwards is.
    best = kres.load_model(tmp_path / "run" / "best.keras")
    assert best.get_layer("conv1_conv").dtype_policy.name == "mixed_bfloat16"
    assert best.get_layer("predictions").dtype_policy.name == "float32"
    assert keras.config.dtype_policy().name == before == "float32"
    later = kres.build_model("cifar_resnet20", **TINY)
    assert {layer.dtype_policy.name for layer in later.layers} == {"float32"}
    assert later.get_layer("conv1_conv").compute_dtype == "float32"
    with open(tmp_path / "run" / "model.json") as f:
        described = json.load(f)
    assert described["spec"]["depths"] == [1, 1, 1] and described["class_names"] == ["0", "1"]
    assert described["preprocessing"]["height"] == 8
    with pytest.raises(ValueError, match=r"Did you mean 'epochs'.*Received: epoch=1"):
        kres.train("cifar_resnet20", "arrays", data=_arrays(), epoch=1)


def test_resume_refuses_another_config(tmp_path):
    config = training.TrainConfig("cifar_resnet20", "arrays", model_overrides=TINY,
                                  recipe_overrides={"epochs": 1, "batch_size": 32})
    (tmp_path / "config.json").write_text(json.dumps(config.to_json()))
    other = training.TrainConfig("cifar_resnet20", "arrays", model_overrides=TINY,
                                 recipe_overrides={"epochs": 1, "batch_size": 16})
    with pytest.raises(ValueError, match=r"another configuration \(differs in recipe_overrides"):
        training.train(other, run_dir=str(tmp_path), data=_arrays(), verbose=0)


def test_imagenet_cosine_recipe_in_a_real_run(tmp_path):
    # Bag of Tricks: linear warmup for 5 epochs, then a cosine to 0; the learning rate
    # scales with batch / 256. 64 training images at batch 32: 2 steps an epoch.
    results = kres.train("cifar_resnet20", "arrays", run_dir=str(tmp_path / "run"),
                         data=_arrays(), model_overrides=TINY, recipe="imagenet-cosine",
                         epochs=8, batch_size=32, verbose=0)
    assert results["epochs_run"] == 8
    with open(tmp_path / "run" / "history.csv") as f:
        logged = [float(r["learning_rate"]) for r in csv.DictReader(f)]
    peak, warmup, total = 0.1 * 32 / 256, 10, 16
    expected = [peak * t / warmup if t <= warmup else
                peak * 0.5 * (1 + np.cos(np.pi * (t - warmup) / (total - warmup)))
                for t in range(2, 17, 2)]
    np.testing.assert_allclose(logged, expected, rtol=1e-5, atol=1e-8)


def test_imagenet_cosine_recipe_zero_init_decay_and_label_smoothing():
    config = training.TrainConfig("resnet18", "arrays", recipe="imagenet-cosine")
    recipe = recipes.resolve_recipe("imagenet-cosine")
    overrides = recipes.spec_overrides(recipe, config.model, config.model_overrides)
    assert overrides == {"zero_init_last": True}
    model = kres.build_model("resnet18", input_shape=(64, 64, 3), classes=10, **overrides)
    norms = [la for la in model.layers if isinstance(la, keras.layers.BatchNormalization)]
    last = {la.name for la in norms if la.name.endswith("_2_bn")}  # each basic block's last
    assert len(last) == 8
    for layer in norms:
        assert np.all(layer.gamma.numpy() == (0.0 if layer.name in last else 1.0)), layer.name
    recipes.compile_model(model, recipe, steps_per_epoch=10, num_classes=10)
    kernels = {w.path for w in model.trainable_weights if len(w.shape) > 1}
    decayed = {w.path: w.regularizer for w in model.trainable_weights
               if w.regularizer is not None}
    assert set(decayed) == kernels  # no decay on batch norm and biases (Bag of Tricks)
    assert {float(r.l2) for r in decayed.values()} == {1e-4 / 2}
    assert model.loss.label_smoothing == pytest.approx(0.1)


def test_training_prints_a_line_per_epoch_outside_a_terminal(tmp_path, capsys):
    # In a log file or CI (standard output is no terminal, as under capsys), "auto" is
    # one line per epoch: Keras's bar would redraw itself with \r and \b at every step.
    from kres.training.fit import fit, progress

    data = _arrays()
    model = kres.build_model("cifar_resnet20", classes=2, input_shape=(8, 8, 1), **TINY)
    recipe = recipes.resolve_recipe("he2015-cifar", epochs=2, batch_size=8)
    recipes.compile_model(model, recipe, 8, 2)
    train, val = (augment.pipeline(ds, data.spec, training=False, batch_size=8, image_size=8,
                                   channels=1, num_classes=2) for ds in (data.train, data.val))
    fit(model, str(tmp_path / "run"), lambda epoch: train.repeat(), val, recipe=recipe,
        train_examples=64)
    printed = capsys.readouterr().out
    assert "\r" not in printed and "\b" not in printed
    assert printed.count("Epoch ") == 2 and len(printed.splitlines()) <= 6

    class Terminal:
        def isatty(self):
            return True

    assert progress("auto", Terminal()) == 1 and progress(0, Terminal()) == 0


@pytest.mark.slow  # 25 s: room in CI
def test_evaluate_normalises_a_model_that_does_not_itself(tmp_path, fashion_mnist_dir):
    # A model without its own normalisation (built by hand, or saved by kres 0.1): the
    # model.json beside it says how its inputs were normalised, else the dataset does.
    import tensorflow_datasets as tfds

    from kres import rundir as runs
    from kres.preprocessing import Preprocessing

    model = kres.build_model("cifar_resnet20", classes=10, input_shape=(28, 28, 1), **TINY)
    test = tfds.load("fashion_mnist", split="test", data_dir=fashion_mnist_dir,
                     as_supervised=True)
    images, labels = (np.stack(a) for a in zip(*tfds.as_numpy(test)))
    for folder, (mean, std) in (("described", (0.25, 0.5)), ("bare", (0.2860, 0.3530))):
        path = tmp_path / folder / "best.keras"
        path.parent.mkdir()
        model.save(path)
        if folder == "described":
            runs.write_model_description(
                str(path.parent), model="cifar_resnet20", spec=kres.get_spec("cifar_resnet20"),
                preprocessing=Preprocessing(28, 28, 1, (mean,), (std,)),
                class_names=[str(i) for i in range(10)], dataset="fashion_mnist")
        scores = training.evaluate(str(path), "fashion_mnist", data_dir=fashion_mnist_dir)
        x = (images.astype("float32") - np.float32(mean * 255)) / np.float32(std * 255)
        loss = keras.losses.categorical_crossentropy(
            keras.ops.one_hot(labels, 10), model.predict(x, verbose=0))
        assert scores["loss"] == pytest.approx(float(np.mean(loss)), rel=1e-4), folder


def test_a_run_killed_while_writing_its_first_backup_starts_again(tmp_path, capsys):
    """The first backup has no copy to fall back on: a kill while its weights are
    written left a file that does not open, on which Keras stopped the resume
    ("bad object header version number", found by killing `kres train`). The
    torn backup is removed and the run starts again from its first epoch."""
    config = training.TrainConfig("cifar_resnet20", "arrays", model_overrides=TINY, seed=0,
                                  recipe_overrides={"epochs": 2, "batch_size": 32})

    class Killed(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):  # before the backup callback, which is last
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.train(config, run_dir=str(tmp_path), data=_arrays(), verbose=0,
                       callbacks=[Killed()])
    assert (tmp_path / "history.csv").read_text().count("\n") == 2  # epoch 0's row
    torn = tmp_path / "backup" / "latest.weights.h5"
    torn.parent.mkdir(exist_ok=True)
    torn.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(200))  # a header and nothing after it
    results = training.train(config, run_dir=str(tmp_path), data=_arrays(), verbose=0)
    assert "the first backup in" in capsys.readouterr().err
    assert results["epochs_run"] == 2
    rows = (tmp_path / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "1"]
