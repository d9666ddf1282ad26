"""The per-class report: scikit-learn's numbers, the mistakes, the PNGs, the commands."""

import json
import os

import numpy as np
import pytest
from PIL import Image
from sklearn import metrics as skm

from kres.cli import main
from kres.training import report


def _sklearn(labels, predicted, n):
    kept = skm.classification_report(labels, predicted, labels=list(range(n)),
                                     output_dict=True, zero_division=0)
    return kept, skm.confusion_matrix(labels, predicted, labels=list(range(n)))


@pytest.mark.parametrize("n, absent", [(2, ()), (7, (3,)), (12, (0, 11))])
def test_the_report_is_scikit_learns(n, absent):
    """Per-class precision, recall, F1, support, both averages and the confusion
    matrix equal scikit-learn's; with a class never predicted and classes with
    no examples (`absent`), where both score 0."""
    rng = np.random.default_rng(n)
    present = [c for c in range(n) if c not in absent]
    labels = rng.choice(present, size=500)
    predicted = np.where(rng.random(500) < 0.6, labels, rng.integers(0, n, 500))
    predicted[predicted == n - 2] = n - 1  # class n - 2 is never predicted
    names = [f"class {c}" for c in range(n)]
    ours = report.classification_report(labels, predicted, names)
    theirs, matrix = _sklearn(labels, predicted, n)
    assert ours["confusion_matrix"] == matrix.tolist()
    assert ours["accuracy"] == pytest.approx(skm.accuracy_score(labels, predicted))
    assert ours["examples"] == 500
    for c, row in enumerate(ours["classes"]):
        assert row["name"] == names[c]
        for key, theirs_key in (("precision", "precision"), ("recall", "recall"),
                                ("f1", "f1-score"), ("support", "support")):
            assert row[key] == pytest.approx(theirs[str(c)][theirs_key], abs=1e-12), (c, key)
    for ours_key, theirs_key in (("macro_avg", "macro avg"), ("weighted_avg", "weighted avg")):
        for key, their in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert ours[ours_key][key] == pytest.approx(theirs[theirs_key][their], abs=1e-12)
    # The most confused pairs: the largest off-diagonal cells, largest first.
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    counts = [p["count"] for p in ours["most_confused"]]
    assert counts == sorted(off.ravel(), reverse=True)[:len(counts)] and counts[0] > 0
    for pair in ours["most_confused"]:
        t, p = names.index(pair["true"]), names.index(pair["predicted"])
        assert matrix[t, p] == pair["count"]
        assert pair["share"] == pytest.approx(pair["count"] / matrix[t].sum())


@pytest.mark.parametrize("labels, predicted, names, message", [
    ([0, 1], [0], ["a", "b"], "differ in length"),
    ([0, 2], [0, 1], ["a", "b"], "labels holds class 2"),
    ([0, 1], [0, -1], ["a", "b"], "predicted holds class -1"),
])
def test_labels_outside_the_classes_are_refused(labels, predicted, names, message):
    with pytest.raises(ValueError, match=message):
        report.classification_report(labels, predicted, names)


def test_the_mistakes_kept_are_the_most_confident_in_order():
    """A model that answers what it is told (its input's first pixels are the
    probabilities): the mistakes kept are the most confident wrong answers over
    batches, most confident first, with their images and positions."""
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(0)
    n, classes = 90, 4
    probs = rng.dirichlet(np.ones(classes), size=n).astype(np.float32)
    labels = rng.integers(0, classes, n)
    images = np.zeros((n, 2, 2, 1), np.float32)
    images.reshape(n, -1)[:, :classes] = probs * 255
    inputs = keras.Input((2, 2, 1))
    flat = keras.layers.Flatten()(inputs)
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x[:, :4] / 255.0)(flat))
    ds = tf.data.Dataset.from_tensor_slices(
        (images, tf.one_hot(labels, classes))).batch(16)
    got_labels, got_probs, wrong = report.predict(model, ds, mistakes=5)
    np.testing.assert_array_equal(got_labels, labels)
    np.testing.assert_allclose(got_probs, probs, rtol=1e-6)
    guess = probs.argmax(axis=1)
    mistaken = np.flatnonzero(guess != labels)
    expected = mistaken[np.argsort(-probs[mistaken, guess[mistaken]], kind="stable")][:5]
    assert [m["index"] for m in wrong] == expected.tolist()
    for m in wrong:
        i = m["index"]
        assert (m["true"], m["predicted"]) == (labels[i], guess[i])
        assert m["probability"] == pytest.approx(probs[i, guess[i]], rel=1e-6)
        assert m["image"].dtype == np.uint8 and m["image"].shape == (2, 2, 1)
        np.testing.assert_array_equal(m["image"], np.rint(images[i]).astype(np.uint8))


@pytest.mark.parametrize("n", [10, 100, 1000])
def test_the_pngs_have_the_size_their_classes_need(tmp_path, n):
    """The confusion matrix grows with its classes (100 names readable: 0.2 inch a
    row; 40 inches at most); the contact sheet holds a row of 8 per 8 mistakes."""
    rng = np.random.default_rng(n)
    labels = rng.integers(0, n, 5000)
    predicted = np.where(rng.random(5000) < 0.7, labels, rng.integers(0, n, 5000))
    names = [f"a rather long class name {c}" for c in range(n)]
    result = report.classification_report(labels, predicted, names)
    result["mistakes"] = [{"index": i, "true": "x", "predicted": "y", "probability": 0.9,
                           "image": rng.integers(0, 255, (28, 28, 1), dtype=np.uint8),
                           "file": f"shirts/{i}.png"} for i in range(11)]
    paths = report.write_report(result, tmp_path / "r", title="t")
    side = round(100 * min(max(5.0, 0.2 * n + 2.5), 40.0))
    assert Image.open(paths[1]).size == (side, side)
    assert Image.open(paths[2]).size == (8 * 190, round(100 * (2 * 2.3 + 0.4)))
    saved = json.loads((tmp_path / "r" / "report.json").read_text())
    assert saved["confusion_matrix"] == result["confusion_matrix"]
    assert [set(m) for m in saved["mistakes"]] == [
        {"index", "true", "predicted", "probability", "file"}] * 11
    # kres evaluate prints the 20 classes of lowest F1 (all of them up to 20).
    text = report.summary(result, classes=20).splitlines()
    rows = [line for line in text if line.startswith("a rather long class name")]
    assert len(rows) == min(n, 20)
    worst = sorted(result["classes"], key=lambda c: c["f1"])[:20]
    assert [row.split()[5] for row in rows] == [c["name"].split()[-1] for c in worst]
    assert (f"the 20 classes of lowest F1 of {n} (all in report.json):" in text) == (n > 20)


def test_a_run_reports_its_test_split_and_evaluate_reports_the_same(trained, fashion_mnist_dir,
                                                                    tmp_path, capsys):
    """The end of `kres.train` writes the test split's report, of the model whose
    accuracy `results.json` gives; ``kres evaluate RUN_DIR --report`` (a run
    directory where the model belongs) writes the same report elsewhere."""
    run = os.path.dirname(trained)
    with open(os.path.join(run, "results.json")) as f:
        results = json.load(f)
    with open(os.path.join(run, "report.json")) as f:
        written = json.load(f)
    assert written["accuracy"] == pytest.approx(results["test_accuracy"], abs=1e-4)
    assert written["examples"] == 10_000
    assert [c["name"] for c in written["classes"]] == results["class_names"]
    assert sum(map(sum, written["confusion_matrix"])) == 10_000
    assert len(written["mistakes"]) == 16
    assert [m["probability"] for m in written["mistakes"]] == sorted(
        (m["probability"] for m in written["mistakes"]), reverse=True)
    for name in ("confusion.png", "mistakes.png"):
        assert Image.open(os.path.join(run, name)).size[0] >= 500

    out = tmp_path / "report"
    assert main(["evaluate", run, "--dataset", "fashion_mnist", "--data-dir", fashion_mnist_dir,
                 "--report", "--out", str(out), "--mistakes", "4"]) == 0
    printed = capsys.readouterr().out
    assert "macro avg" in printed and "most confused:" in printed
    again = json.loads((out / "report.json").read_text())
    assert again["confusion_matrix"] == written["confusion_matrix"]
    # The same mistakes (two identical images may swap places: their probabilities
    # differ in the last bits between batch sizes).
    for ours, theirs in zip(again["mistakes"], written["mistakes"][:4], strict=True):
        assert (ours["true"], ours["predicted"]) == (theirs["true"], theirs["predicted"])
        assert ours["probability"] == pytest.approx(theirs["probability"], rel=1e-5)
    assert {p.name for p in out.iterdir()} == {"report.json", "confusion.png", "mistakes.png"}


def test_report_flags_without_report_and_a_run_without_a_model_are_refused(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path), "--dataset", "fashion_mnist",
                 "--out", str(tmp_path / "r")]) == 2
    assert "add --report" in capsys.readouterr().err
    (tmp_path / "config.json").write_text("{}")
    assert main(["evaluate", str(tmp_path), "--dataset", "fashion_mnist", "--report"]) == 2
    assert "holds no best.keras yet" in capsys.readouterr().err
    assert not (tmp_path / "report-fashion_mnist-test").exists()
