"""The learning-rate range test: the ramp, the smoothing, the stop, the suggestion,
its files, `kres train --lr auto`, and bad input refused by name."""

import json
import os

import numpy as np
import pytest

import kres
from kres.cli import main
from kres.data import sources
from kres.training import lr_range as finder

SETTINGS = dict(model_overrides={"depths": (1, 1, 1)}, batch_size=32, epochs=1, seed=0,
                precision="float32", augment="none")


def _bright_or_dark(n=320, seed=0):
    """16x16 images whose class is their brightness: easy to learn at a good rate."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.integers(0, 120, (n, 16, 16, 1)) + 120 * y[:, None, None, None]
    x = x.astype(np.uint8)
    return sources.from_arrays(x, y, x[:64], y[:64], val_size=32)


@pytest.fixture(scope="module")
def found(tmp_path_factory):
    out = tmp_path_factory.mktemp("lr")
    return kres.lr_find("cifar_resnet20", "bright", data=_bright_or_dark(), out=str(out),
                        start=1e-5, end=1e4, steps=60, verbose=0, **SETTINGS), str(out)


def test_the_ramp_the_smoothing_and_the_stop(found):
    found, _ = found
    rates = np.array(found.rates)
    assert rates[0] == pytest.approx(1e-5)
    np.testing.assert_allclose(rates[1:] / rates[:-1], (1e4 / 1e-5) ** (1 / 59), rtol=1e-4)
    # The ramp reaches rates at which SGD diverges: the test stops before its 60 steps.
    assert found.stopped in ("diverged", "not finite") and len(rates) < 60
    average, smoothed = 0.0, []
    for i, loss in enumerate(found.losses[:len(found.smoothed)]):
        average = 0.95 * average + 0.05 * loss
        smoothed.append(average / (1 - 0.95 ** (i + 1)))
    np.testing.assert_allclose(found.smoothed, smoothed, rtol=1e-6)
    if found.stopped == "diverged":  # at the first batch 4x above the lowest before it
        assert found.smoothed[-1] > 4 * min(found.smoothed)
        assert all(v <= 4 * min(found.smoothed[:i + 1])
                   for i, v in enumerate(found.smoothed[:-1]))
    lowest = int(np.argmin(found.smoothed))
    assert found.suggestion == pytest.approx(rates[lowest] / 10)
    assert found.smoothed[lowest] < found.smoothed[0]
    # he2015-cifar does not scale its rate by the batch: the field is the rate.
    assert found.learning_rate == pytest.approx(found.suggestion)
    assert found.optimizer == "sgd"


def test_the_files(found):
    """lr_find.json reads back; lr_find.png is a picture. (Whether the suggested rate
    trains well is measured on Fashion-MNIST: docs/results.md.)"""
    from PIL import Image

    found, out = found
    assert finder.read(out) == found
    assert Image.open(os.path.join(out, "lr_find.png")).size[0] > 500


def test_train_with_auto_runs_the_test_once_in_its_run_directory(tmp_path):
    run = str(tmp_path / "run")
    results = kres.train("cifar_resnet20", "bright", data=_bright_or_dark(), run_dir=run,
                         learning_rate="auto", verbose=0, **SETTINGS)
    found = finder.read(run)
    assert found is not None and os.path.isfile(os.path.join(run, "lr_find.png"))
    saved = json.load(open(os.path.join(run, "config.json")))
    assert saved["recipe_overrides"]["learning_rate"] == float(f"{found.learning_rate:.4g}")
    assert results["lr_find_learning_rate"] == found.learning_rate
    # The same command again finds the rate in the run (no new test: data=None and an
    # unknown dataset would fail if it ran) and is refused as the finished run it is.
    with pytest.raises(ValueError, match="has finished already"):
        kres.train("cifar_resnet20", "bright", run_dir=run, learning_rate="auto", verbose=0,
                   **SETTINGS)
    # A run started with a rate of its own is refused before any test is run.
    os.remove(os.path.join(run, "lr_find.json"))
    with pytest.raises(ValueError, match="was started with a learning rate of its own"):
        kres.train("cifar_resnet20", "bright", run_dir=run, learning_rate="auto", verbose=0,
                   **SETTINGS)


@pytest.mark.parametrize("kwargs, message", [
    (dict(start=1.0, end=0.5), "end must be above start"),
    (dict(start=0), "start must be"),
    (dict(steps=5), "steps must be"),
    (dict(smoothing=1.0), "smoothing must be"),
    (dict(divergence=1), "divergence must be"),
    (dict(strategy="multi-worker"), "strategy must not be multi-worker"),
    (dict(learning_rate="fast"), "learning_rate"),
])
def test_bad_input_is_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kres.lr_find("cifar_resnet20", "bright", **kwargs)


def test_auto_is_refused_where_the_test_cannot_run(capsys):
    with pytest.raises(ValueError, match="learning_rate runs the range test on one machine"):
        kres.train("cifar_resnet20", "fashion_mnist", learning_rate="auto",
                   strategy="multi-worker")
    with pytest.raises(SystemExit):  # argparse's refusal
        main(["train", "--model", "cifar_resnet20", "--dataset", "fashion_mnist", "--lr",
              "fast"])
    assert "expected a learning rate such as 0.1, or auto. Received: 'fast'" in (
        capsys.readouterr().err)
    assert main(["lr-find", "--dataset", "fashion_mnist"]) == 2
    assert "kres lr-find needs --model and --dataset" in capsys.readouterr().err
