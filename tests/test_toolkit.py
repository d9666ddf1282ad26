"""The training toolkit: Keras's optimizers from the recipes (decoupled weight decay,
clipping, gradient accumulation), the weight average of the whole model state (its
resume: tests/test_train.py's resume test), and distillation."""

import csv
import dataclasses
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

import kres
from kres import data as kdata
from kres import rundir, training
from kres.models.inference import in_float32
from kres.training import optimizers, recipes
from kres.training.ema import WeightAverage
from tests.test_train import TINY, _arrays


def _small_model():
    """Dense, batch norm, dense: kernels, biases, BN scales and moving statistics."""
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3)(inputs)
    x = keras.layers.BatchNormalization()(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


def _recipe(**fields):
    return dataclasses.replace(recipes.RECIPES["fast-cpu"], epochs=2, batch_size=8,
                               warmup_epochs=0, **fields)


def _xy(n=32):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, keras.utils.to_categorical((x[:, 0] > 0).astype(int), 2)


SETTINGS = {"sgd": dict(learning_rate=0.1), "adamw": dict(learning_rate=1e-2, weight_decay=0.05),
            "lamb": dict(learning_rate=1e-2, weight_decay=0.05),
            "lion": dict(learning_rate=1e-3, weight_decay=0.5)}


@pytest.mark.parametrize("name", list(optimizers.OPTIMIZERS))
def test_each_optimizer_trains_from_its_recipe_and_resumes_with_its_state(name, tmp_path):
    """Two steps, the state saved (as the backup saves it), two more: a model built
    and compiled afresh from the saved state takes the same two steps."""
    x, y = _xy()
    recipe = _recipe(optimizer=name, **SETTINGS[name])
    keras.utils.set_random_seed(0)
    model = _small_model()
    recipes.compile_model(model, recipe, steps_per_epoch=4, num_classes=2)
    assert type(model.optimizer).__name__ == optimizers.OPTIMIZERS[name]
    start = model.get_weights()
    model.fit(x[:16], y[:16], batch_size=8, shuffle=False, verbose=0)
    model.save_weights(tmp_path / "state.weights.h5")
    model.fit(x[16:], y[16:], batch_size=8, shuffle=False, verbose=0)

    again = _small_model()
    recipes.compile_model(again, recipe, steps_per_epoch=4, num_classes=2)
    again.load_weights(tmp_path / "state.weights.h5")
    assert int(again.optimizer.iterations) == 2
    again.fit(x[16:], y[16:], batch_size=8, shuffle=False, verbose=0)
    for a, b in zip(again.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert any(np.abs(a - s).max() > 1e-4 for a, s in zip(model.get_weights(), start))


@pytest.mark.parametrize("name", ["adamw", "lamb", "lion"])
@pytest.mark.parametrize("decay_all", [False, True])
def test_decoupled_weight_decay_shrinks_the_decayed_variables_alone(name, decay_all):
    """With zero gradients these optimizers' steps are zero: what moves is the
    decay, ``w * (1 - lr * wd)``, on the kernels only unless `decay_all`; no
    coupled L2 regularizer is added on top."""
    model = _small_model()
    recipe = _recipe(optimizer=name, learning_rate=0.1, weight_decay=0.5, decay_all=decay_all)
    optimizer = optimizers.make_optimizer(recipe, model, steps_per_epoch=4)
    variables = model.trainable_variables
    optimizer.build(variables)
    for v in variables:
        v.assign(np.full(v.shape, 2.0, "float32"))
    optimizer.apply([keras.ops.zeros(v.shape) for v in variables], variables)
    for v in variables:
        decayed = decay_all or len(v.shape) > 1
        np.testing.assert_allclose(v.numpy(), 2.0 * (0.95 if decayed else 1.0), rtol=1e-6,
                                   err_msg=v.path)
        assert v.regularizer is None


def test_sgd_keeps_the_papers_coupled_decay():
    model = _small_model()
    optimizers.make_optimizer(_recipe(optimizer="sgd", weight_decay=1e-3, decay_all=False), model,
                           steps_per_epoch=4)
    assert [v.regularizer is not None for v in model.trainable_variables] == [
        len(v.shape) > 1 for v in model.trainable_variables]


def test_accumulation_updates_once_per_n_batches_and_clipping_bounds_the_step():
    """Two batches per update: the first batch moves no weight, the second does,
    by at most `clip_norm` (plain SGD at learning rate 1, so the step is the
    clipped gradient). The weight average is updated once per update, not per batch."""
    x, y = _xy(16)
    model = _small_model()
    recipe = _recipe(optimizer="sgd", learning_rate=1.0, momentum=0.0, nesterov=False,
                     weight_decay=0.0, schedule="constant", accumulation_steps=2,
                     clip_norm=1e-3, label_smoothing=0.0)
    recipes.compile_model(model, recipe, steps_per_epoch=2, num_classes=2)
    average = WeightAverage(model, decay=0.9)
    first, _ = average.callbacks(None, "unused", first_epoch=0)
    start = [v.numpy() for v in model.trainable_variables]
    model.fit(x[:8], y[:8], batch_size=8, verbose=0, callbacks=[first])
    assert all(np.array_equal(v.numpy(), s) for v, s in zip(model.trainable_variables, start))
    model.fit(x[8:], y[8:], batch_size=8, verbose=0, callbacks=[first])
    step = np.sqrt(sum(np.sum((v.numpy() - s) ** 2)
                       for v, s in zip(model.trainable_variables, start)))
    assert 0 < step <= 1e-3 * (1 + 1e-5)
    assert int(average.updates.numpy()) == 1


def test_the_average_covers_batch_norm_statistics_with_timms_warmup():
    """Five known states averaged in, against the hand computation: the first
    update copies, the t-th (from 0) has decay ``min(0.9, 1 - (1 + t) ** -0.75)``;
    the BN moving mean and variance are averaged as the weights are."""
    model = _small_model()
    average = WeightAverage(model, decay=0.9)
    paths = [v.path for v in average.variables]
    assert len(paths) == len(model.weights)
    assert any("moving_mean" in p for p in paths) and any("moving_variance" in p for p in paths)
    rng = np.random.default_rng(1)
    expected = None
    for t in range(5):
        values = [rng.normal(size=v.shape).astype("float32") for v in model.weights]
        model.set_weights(values)
        average.update()
        decay = 0.0 if t == 0 else min(0.9, 1 - (1 + t) ** -0.75)
        expected = values if expected is None else [
            decay * e + (1 - decay) * v for e, v in zip(expected, values)]
    for got, want, path in zip(average.averages, expected, paths):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6, err_msg=path)
    raw = model.get_weights()
    average.swap_in()
    for w, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(w, want, rtol=1e-5, atol=1e-6)
    average.swap_out()
    assert all(np.array_equal(w, r) for w, r in zip(model.get_weights(), raw))


def test_a_runs_curves_show_the_raw_weights_beside_the_average(tmp_path):
    """The curves of a run with a weight average draw its raw weights' validation
    too; a schedule whose logged rates are all zero draws without a warning."""
    row = {"loss": "1", "accuracy": "0.5", "val_loss": "0.9", "val_accuracy": "0.6"}
    raw = {"raw_val_loss": "1.2", "raw_val_accuracy": "0.4"}
    history = [{"epoch": str(i), "learning_rate": "0", **row, **raw} for i in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        labels = rundir.plot_history(history, tmp_path / "average.png")
    assert labels == ["train (running mean)", "validation, weight average",
                      "validation, raw weights"]
    plain = [{"epoch": "0", "learning_rate": "0.1", **row, "raw_val_loss": ""}]
    assert rundir.plot_history(plain, tmp_path / "plain.png") == [
        "train (running mean)", "validation"]
    assert (tmp_path / "average.png").stat().st_size > 10_000


@pytest.mark.parametrize("field, value, message", [
    ("optimizer", "adam", "optimizer must be one of"),
    ("ema_decay", 1.0, "ema_decay"),
    ("accumulation_steps", 0, "accumulation_steps"),
    ("clip_norm", -1.0, "clip_norm"),
])
def test_bad_toolkit_fields_are_refused_by_name(field, value, message):
    with pytest.raises(ValueError, match=message) as error:
        recipes.resolve_recipe("fast-cpu", **{field: value})
    assert repr(value) in str(error.value)


def test_multi_worker_runs_refuse_the_average(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["localhost:1", "localhost:2"]}, '
                                    '"task": {"type": "worker", "index": 0}}')
    with pytest.raises(ValueError, match="does not average weights yet"):
        training.train("cifar_resnet20", "arrays", data=_arrays(), strategy="multi-worker",
                       run_dir="unused", seed=0, ema=True)



def test_the_distillation_loss_is_the_documented_mix():
    """``(1 - w) * CE(labels, p) + w * T^2 * KL(q_teacher || q_student)``, with
    ``q = softmax(log p / T)``, against NumPy on a fixed batch; labels alone
    give the cross-entropy alone."""
    from kres.training.distill import DistillationLoss

    rng = np.random.default_rng(2)
    student = rng.dirichlet(np.ones(5), size=4).astype("float32")
    teacher = rng.dirichlet(np.ones(5), size=4).astype("float32")
    labels = np.eye(5, dtype="float32")[[0, 3, 1, 4]]
    t, w, smoothing = 3.0, 0.7, 0.1

    def soften(p):
        z = np.exp(np.log(p) / t)
        return z / z.sum(axis=1, keepdims=True)

    smoothed = labels * (1 - smoothing) + smoothing / 5
    hard = -(smoothed * np.log(student)).sum(axis=1)
    q_t, q_s = soften(teacher), soften(student)
    soft = (q_t * (np.log(q_t) - np.log(q_s))).sum(axis=1)
    expected = ((1 - w) * hard + w * t * t * soft).mean()
    loss = DistillationLoss(5, temperature=t, weight=w, label_smoothing=smoothing)
    got = float(loss(np.concatenate([labels, teacher], axis=1), student))
    assert got == pytest.approx(expected, rel=1e-5)
    assert float(loss(labels, student)) == pytest.approx(hard.mean(), rel=1e-5)


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    """A tiny kres run on the two-class arrays: the teacher's best.keras."""
    run = tmp_path_factory.mktemp("teacher") / "run"
    training.train("cifar_resnet20", "arrays", data=_arrays(), run_dir=str(run), epochs=2,
                   batch_size=16, model_overrides=TINY, verbose=0)
    return run / "best.keras"


SMALLER = {"depths": (1, 1, 1), "stem_width": 8, "widths": (8, 16, 32)}  # than the teacher


def test_a_student_run_keeps_and_exports_the_student_alone(teacher_run, tmp_path):
    student = tmp_path / "student"
    results = training.train("cifar_resnet20", "arrays", data=_arrays(), run_dir=str(student),
                             epochs=2, batch_size=16, model_overrides=SMALLER,
                             teacher=str(teacher_run), distill_weight=0.8, verbose=0)
    assert results["teacher"] == str(teacher_run)
    with open(student / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(0 <= float(r["accuracy"]) <= 1 for r in rows)
    best = kres.load_model(str(student / "best.keras"))
    alone = kres.build_model("cifar_resnet20", classes=2, input_shape=(8, 8, 1), **SMALLER)
    assert kres.count_params(best) == kres.count_params(alone) != kres.count_params(
        kres.load_model(str(teacher_run)))
    assert best.loss.weight == 0.8  # the checkpoint keeps its distillation loss, loadable
    # ... by kres.load_model in a process that never imported kres's training code (as
    # `kres export` is; it failed so before the loss moved to kres.losses).
    subprocess.run([sys.executable, "-c", "import sys, kres.models.saving as s; "
                    "assert 'kres.training' not in sys.modules; s.load_model(sys.argv[1])",
                    str(student / "best.keras")], check=True, capture_output=True)
    import tensorflow as tf

    path = kres.export(best, str(tmp_path / "served"))
    pixels = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 1), np.uint8)
    served = tf.saved_model.load(str(path)).signatures["serving_pixels"]
    np.testing.assert_allclose(served(pixels=tf.constant(pixels))["probabilities"],
                               in_float32(best).predict(pixels.astype("float32"), verbose=0),
                               atol=1e-5)  # the export serves a bf16-trained model in float32


@pytest.mark.parametrize("data, message", [
    (lambda: _four_classes(), "predicts 2 classes; the data have 4"),
    (lambda: _arrays_sized(12), r"takes inputs of \(8, 8, 1\); the student's are \(12, 12, 1\)"),
])
def test_a_teacher_of_other_classes_or_input_is_refused_before_training(teacher_run, tmp_path,
                                                                         data, message):
    with pytest.raises(ValueError, match=message) as error:
        training.train("cifar_resnet20", "arrays", data=data(), run_dir=str(tmp_path / "r"),
                       epochs=1, batch_size=16, model_overrides=TINY,
                       teacher=str(teacher_run), verbose=0)
    assert "teacher=" in str(error.value)
    assert not (tmp_path / "r" / "history.csv").exists()


def _four_classes():
    x = np.random.default_rng(0).integers(0, 256, (64, 8, 8, 1), dtype=np.uint8)
    y = np.arange(64) % 4
    return kdata.from_arrays(x, y, x[:16], y[:16], num_classes=4, val_size=16)


def _arrays_sized(size):
    x = np.random.default_rng(0).integers(0, 256, (64, size, size, 1), dtype=np.uint8)
    y = np.arange(64) % 2
    return kdata.from_arrays(x, y, x[:16], y[:16], num_classes=2, val_size=16)


@pytest.mark.parametrize("teacher, message", [
    ("resnet50", "must be a .keras file of a kres run"),
    ("missing/best.keras", "names no file"),
])
def test_a_teacher_that_is_no_model_file_is_refused_by_name(teacher, message):
    with pytest.raises(ValueError, match=message) as error:
        training.TrainConfig("cifar_resnet20", "fashion_mnist", teacher=teacher)
    assert f"teacher={teacher!r}" in str(error.value)
