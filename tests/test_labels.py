"""Labels from a CSV file: the parsing (quoting, spaces, headers), every problem by
line, the checks against the folder, multi-label scans, splits and datasets."""

import os
import re

import numpy as np
import pytest
from PIL import Image

from kres import data as datasets
from kres.data import folders
from kres.data import pipeline as kpipeline
from kres.data import splits as ksplits
from kres.data.label_file import read_labels


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def _images(root, names, size=(6, 5)):
    for i, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.full((*size, 3), 20 * i % 256, np.uint8)
        Image.fromarray(pixels).save(path)


def test_rows_with_quotes_spaces_headers_and_several_labels(tmp_path):
    csv_path = _write(tmp_path / "labels.csv", "\ufeffPath , Labels\n"
                      ' shoes/1.png ,  sneaker \n'
                      '"bags/red, big.png","bag;  sandal ;bag"\n'
                      "\n"
                      "sub\\dir\\3.png,coat\n"
                      "./x/../4.png,coat\n")
    found = read_labels(csv_path)
    assert found.labels == {"shoes/1.png": ("sneaker",), "bags/red, big.png": ("bag", "sandal"),
                            "sub/dir/3.png": ("coat",), "4.png": ("coat",)}
    assert found.lines == {"shoes/1.png": 2, "bags/red, big.png": 3, "sub/dir/3.png": 5,
                           "4.png": 6}
    assert found.multi_label and found.class_names == ["bag", "coat", "sandal", "sneaker"]
    single = read_labels(_write(tmp_path / "single.csv", "a.png,cat\nb.png,dog\n"))
    assert not single.multi_label and single.class_names == ["cat", "dog"]


@pytest.mark.parametrize("text, problems", [
    ("a.png\nb.png,dog\n", ["line 1: no label column"]),
    ("a.png,\nb.png, ;dog\n", ["line 1: an empty label", "line 2: an empty label in ';dog'"]),
    ("a.png,cat\nb.png,dog\n./a.png,dog\n", ["line 3: './a.png' again (first on line 1)"]),
    ("a.png,cat,dog\n", ["line 1: 3 columns", "quote a path that holds a comma"]),
    ("../a.png,cat\n/etc/b.png,cat\n,cat\n", ["line 1: '../a.png' is outside the folder",
                                              "line 2: '/etc/b.png' is outside",
                                              "line 3: an empty path"]),
])
def test_every_problem_of_a_file_is_named_by_line(tmp_path, text, problems):
    csv_path = _write(tmp_path / "labels.csv", text)
    with pytest.raises(ValueError) as raised:
        read_labels(csv_path)
    message = str(raised.value)
    assert f"Received: labels={csv_path!r}" in message
    for problem in problems:
        assert problem in message


@pytest.mark.parametrize("text, message", [
    ("path\na.png\n", "has no label column (line 1 is a header naming only 'path')"),
    ('a.png,"cat\n', "is not a readable CSV file"),
    ("path,label\n\n", "has no path,label rows"),
])
def test_a_file_that_is_not_a_label_file_is_refused(tmp_path, text, message):
    csv_path = _write(tmp_path / "labels.csv", text)
    with pytest.raises(ValueError, match=re.escape(message)):
        read_labels(csv_path)
    with pytest.raises(ValueError, match=r"must be a CSV file.*labels='nowhere.csv'"):
        read_labels("nowhere.csv")
    (tmp_path / "latin1.csv").write_bytes("caf\xe9.png,cat\n".encode("latin-1"))
    with pytest.raises(ValueError, match="must be UTF-8 text"):
        read_labels(str(tmp_path / "latin1.csv"))


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "photos"
    _images(root, ["a.png", "b.png", "c.png", "d.png", "sub/e.png", "sub/f.png"])
    (root / "notes.txt").write_text("not an image")
    return root


def test_the_scan_checks_the_rows_against_the_folder(photos, tmp_path):
    csv_path = _write(tmp_path / "labels.csv",
                      "a.png,cat\nmissing.png,cat\nnotes.txt,dog\nsub,dog\nb.png,bird\n")
    with pytest.raises(ValueError) as raised:
        folders.scan(str(photos), labels=csv_path, class_names=["cat", "dog"])
    message = str(raised.value)
    assert "4 rows" in message and f"Received: labels={csv_path!r}" in message
    assert "line 2: missing.png is not in" in message
    assert "line 3: notes.txt is not an image file" in message
    assert "line 4: sub is not in" in message and "(a folder)" in message
    assert "line 5: b.png has label outside the classes (cat, dog): bird" in message


def test_a_labelled_folder_lists_its_unlabelled_images_and_its_own_split_folders(tmp_path):
    root = tmp_path / "shop"
    names = [f"{split}/{i}.png" for split in ("train", "test") for i in range(4)]
    _images(root, names + ["train/extra.png"])
    rows = "".join(f"{name},{'shoe' if i % 2 else 'bag'}\n" for i, name in enumerate(names))
    csv_path = _write(root / "labels.csv", "path,label\n" + rows)
    scan = folders.scan(str(root), labels=csv_path)
    assert scan.layout == "splits" and scan.class_names == ["bag", "shoe"]
    assert scan.images["test"] == [("test/0.png", 0), ("test/1.png", 1), ("test/2.png", 0),
                                   ("test/3.png", 1)]
    assert scan.unlabelled == ["train/extra.png"] and scan.ignored == []
    assert not scan.multi_label
    summary = scan.summary()
    assert f"Labels from {csv_path}\n" in summary + "\n"
    assert "1 image in the folder has no row in" in summary and "train/extra.png" in summary
    mixed = _write(tmp_path / "mixed.csv", "train/0.png,bag\nextra/1.png,shoe\n")
    _images(root, ["extra/1.png"])
    with pytest.raises(ValueError, match=r"in split folders \(train\) and elsewhere \(extra\)"):
        folders.scan(str(root), labels=mixed)
    test_only = _write(tmp_path / "test_only.csv", "test/0.png,bag\n")
    with pytest.raises(ValueError, match="in test/ but none in train/"):
        folders.scan(str(root), labels=test_only)
    rare = _write(tmp_path / "rare.csv", "train/0.png,bag\ntest/0.png,hat\n")
    with pytest.raises(ValueError, match="labels that no training image has: hat"):
        folders.scan(str(root), labels=rare)


def test_multi_label_rows_make_multi_hot_labels_through_splits_and_pipeline(tmp_path):
    root = tmp_path / "pairs"
    names = [f"{i:02d}.png" for i in range(40)]
    _images(root, names)
    # Classes a, b, c; c is rare (every tenth image) and always with a.
    rows = "".join(f"{name},{'a;c' if i % 10 == 0 else ('a;b' if i % 2 else 'b')}\n"
                   for i, name in enumerate(names))
    csv_path = _write(tmp_path / "labels.csv", rows)
    scan = folders.scan(str(root), labels=csv_path)
    assert scan.multi_label and scan.class_names == ["a", "b", "c"]
    assert scan.images["all"][:3] == [("00.png", (0, 2)), ("01.png", (0, 1)), ("02.png", (1,))]
    assert scan.counts() == {"all": {"a": 24, "b": 36, "c": 4}}
    assert "multi-label: 1.60 labels per image, 1 to 2" in scan.summary()
    assert "Imbalance: b has 9.0x the images of c (36 to 4; more than 3x)\n" in scan.summary()
    split = ksplits.split(scan, val_fraction=0.25, test_fraction=0.25, seed=0)
    # The rare label is held out in proportion: one of its four images in each.
    for name in ("val", "test"):
        assert sum(2 in label for _, label in split[name]) == 1
    path = str(tmp_path / "splits.json")
    ksplits.write_splits(path, split)
    assert ksplits.read_splits(path) == split
    with pytest.raises(ValueError, match="weigh single-label classes"):
        ksplits.class_weights(split, 3)

    data = datasets.load(str(root), labels=csv_path, seed=0)
    assert data.multi_label and data.class_names == ["a", "b", "c"]
    first = dict(scan.images["all"])
    images, labels = next(iter(data.test.batch(100)))
    assert labels.dtype.name == "float32" and labels.shape[1] == 3
    ds = kpipeline.pipeline(data.test, data.spec, training=False, batch_size=4, image_size=8,
                            channels=3, num_classes=3, cache=False)
    _, batch_labels = next(iter(ds))
    np.testing.assert_array_equal(batch_labels.numpy(), labels.numpy()[:4])
    expected = folders.multi_hot([first[p] for p, _ in data.splits["test"]], 3)
    np.testing.assert_array_equal(labels.numpy(), expected)
    with pytest.raises(ValueError, match=r"label the images of a folder.*labels="):
        datasets.load("fashion_mnist", labels=csv_path)


# --- Multi-label training, evaluation, export and serving ---------------------------

PAIRS = {1: "trouser", 7: "sneaker", 8: "bag"}  # Fashion-MNIST classes far apart


def _write_pairs(root, n, seed=0):
    """`n` real Fashion-MNIST training images of 28x56 pixels: two items side by side,
    labelled with both classes (one when they agree), and the CSV file of them."""
    from kres.data.fashion_mnist import read_fashion_mnist

    x, y = read_fashion_mnist()["train"]
    pool = np.flatnonzero(np.isin(y, list(PAIRS)))
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = ["path,labels"]
    for i in range(n):
        a, b = rng.choice(pool, 2)
        Image.fromarray(np.concatenate([x[a, :, :, 0], x[b, :, :, 0]], axis=1)).save(
            root / f"{i:04d}.png")
        rows.append(f"{i:04d}.png,{';'.join(sorted({PAIRS[y[a]], PAIRS[y[b]]}))}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return str(root / "labels.csv")


@pytest.fixture(scope="module")
def multi_label_run(tmp_path_factory):
    """ResNet-8 trained by `kres train --labels` for 3 epochs on 600 two-item images."""
    from kres.cli import main

    root = tmp_path_factory.mktemp("pairs")
    csv_path = _write_pairs(root / "pairs", 600)
    run = str(root / "run")
    assert main(["train", "--model", "cifar_resnet20", "--set", "depths=1,1,1",
                 "--dataset", str(root / "pairs"), "--labels", csv_path, "--recipe", "fast-cpu",
                 "--epochs", "3", "--batch-size", "32", "--augment", "none", "--channels", "1",
                 "--threshold", "0.4", "--out", run, "--quiet"]) == 0
    return run, str(root / "pairs"), csv_path


def test_a_multi_label_run_scores_reports_and_evaluates_the_same(multi_label_run):
    import json

    import kres
    from kres.models.inputs import label_threshold

    run, folder, csv_path = multi_label_run
    results = json.load(open(os.path.join(run, "results.json")))
    assert results["multi_label"] and results["threshold"] == 0.4
    assert "test_accuracy" not in results and results["best_val_pr_auc"] > 0.5
    assert results["test_map"] > 0.8  # measured 0.93; chance is each label's frequency
    written = json.load(open(os.path.join(run, "report.json")))
    assert written["map"] == pytest.approx(results["test_map"])
    assert written["micro_avg"]["f1"] == pytest.approx(results["test_f1"])
    assert {c["name"] for c in written["classes"]} == set(PAIRS.values())
    assert os.path.getsize(os.path.join(run, "classes.png")) > 5_000
    assert os.path.getsize(os.path.join(run, "mistakes.png")) > 5_000
    model = kres.load_model(os.path.join(run, "best.keras"))
    assert label_threshold(model) == 0.4
    assert model.layers[-1].activation.__name__ == "sigmoid"
    # The run's own labels file and split, found from the run directory.
    scores = kres.evaluate(run, folder)
    assert scores["map"] == pytest.approx(results["test_map"], abs=1e-6)
    assert scores["f1"] == pytest.approx(results["test_f1"], abs=1e-6)
    # New labelled images of some of the model's classes only (no bag): scored on
    # their test split, the absent class left out of the mean average precision.
    rows = open(csv_path).read().splitlines()[1:]
    some = os.path.join(os.path.dirname(run), "no_bags.csv")
    with open(some, "w") as f:
        f.write("".join(row + "\n" for row in rows if "bag" not in row))
    partial = kres.evaluate(run, folder, labels=some, report=True)
    bag = [c for c in partial["report"]["classes"] if c["name"] == "bag"][0]
    assert bag["support"] == 0 and bag["average_precision"] is None
    assert 0 < partial["map"] <= 1
    # The same images with one label each (the first of each row's).
    single = os.path.join(os.path.dirname(run), "single.csv")
    with open(single, "w") as f:
        f.write("".join(row.split(";")[0] + "\n" for row in rows))
    with pytest.raises(ValueError, match="gives one label per image"):
        kres.evaluate(run, folder, labels=single)


def test_a_multi_label_export_serves_each_images_labels(multi_label_run, tmp_path, capsys):
    import kres
    from kres.cli import main
    from kres.serving import c_api_run
    from kres.training.preparation import load_data

    run, folder, csv_path = multi_label_run
    path = kres.export(run, str(tmp_path / "pairs"))
    record = __import__("json").load(open(os.path.join(path, "kres.json")))
    assert record["threshold"] == 0.4 and "predicted_labels" in record["outputs"]
    data = load_data(folder, labels=csv_path, channels=1)
    images, labels = next(iter(data.test.batch(64)))
    encoded = [tf_png(image) for image in images.numpy()]
    served = kres.serving.predict(path, encoded)
    names = np.array(data.class_names)
    wanted = [";".join(names[row >= 0.4]) for row in served["probabilities"]]
    assert [s.decode() for s in served["predicted_labels"]] == wanted
    truth = [";".join(names[row > 0.5]) for row in labels.numpy()]
    both = [t for t, s in zip(truth, served["predicted_labels"]) if ";" in t
            and s.decode() == t]
    assert both, "no image with two labels was served both"
    pixels = c_api_run(path, "serving_pixels", {"pixels": images.numpy()[:8]})
    np.testing.assert_array_equal(pixels["predicted"], pixels["probabilities"] >= 0.4)
    # A LiteRT file records the threshold too, and kres predict applies it.
    tflite = kres.export(run, str(tmp_path / "pairs-tflite"), format="tflite")
    on_device = kres.serving.predict(tflite, encoded[:16])
    # LiteRT's float kernels: measured up to 7e-4 from the SavedModel's here.
    np.testing.assert_allclose(on_device["probabilities"], served["probabilities"][:16],
                               atol=3e-3)
    assert [s.decode() for s in on_device["predicted_labels"]] == [
        ";".join(names[row >= 0.4]) for row in on_device["probabilities"]]
    assert main(["predict", "--saved-model", str(tmp_path / "pairs"), "--from-dataset", folder,
                 "--labels", csv_path, "--count", "4"]) == 0
    printed = capsys.readouterr().out
    assert "labels " in printed and "label sets exactly right through the export" in printed


def tf_png(image):
    import tensorflow as tf

    return tf.io.encode_png(image).numpy()


@pytest.mark.parametrize("seed", [0, 1])
def test_the_multi_label_report_is_scikit_learns(seed):
    from sklearn.metrics import average_precision_score, classification_report

    from kres.training.report import multilabel_report

    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, (200, 5))
    truth[:, 4] = 0  # a class no image has
    probabilities = np.clip(truth * 0.3 + rng.random((200, 5)) * 0.7, 0, 1).round(2)  # ties
    ours = multilabel_report(truth, probabilities, list("abcde"), threshold=0.5)
    theirs = classification_report(truth, probabilities >= 0.5, output_dict=True,
                                   zero_division=0, target_names=list("abcde"))
    for c in ours["classes"]:
        for key in ("precision", "recall", "f1-score", "support"):
            assert c["f1" if key == "f1-score" else key] == pytest.approx(theirs[c["name"]][key])
    for ours_key, key in (("micro_avg", "micro avg"), ("macro_avg", "macro avg"),
                          ("weighted_avg", "weighted avg")):
        for metric in ("precision", "recall", "f1"):
            assert ours[ours_key][metric] == pytest.approx(
                theirs[key]["f1-score" if metric == "f1" else metric])
    aps = average_precision_score(truth[:, :4], probabilities[:, :4], average=None)
    np.testing.assert_allclose([c["average_precision"] for c in ours["classes"][:4]], aps)
    assert ours["classes"][4]["average_precision"] is None
    assert ours["map"] == pytest.approx(np.mean(aps))
    assert ours["subset_accuracy"] == pytest.approx(np.mean((truth == (probabilities >= 0.5))
                                                            .all(axis=1)))


def test_bad_label_settings_are_refused_before_any_work(tmp_path, capsys):
    import kres
    from kres.cli import main

    csv_path = _write(tmp_path / "labels.csv", "a.png,cat\n")
    assert main(["train", "--model", "cifar_resnet20", "--dataset", "fashion_mnist",
                 "--labels", csv_path]) == 2
    assert "labels label the images of a folder; 'fashion_mnist' is a named dataset" in \
        capsys.readouterr().err
    assert main(["train", "--model", "cifar_resnet20", "--dataset", str(tmp_path),
                 "--threshold", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "threshold must be" in err and "threshold=1.5" in err
    root = tmp_path / "pairs"
    _images(root, [f"{i}.png" for i in range(12)])
    rows = _write(tmp_path / "multi.csv", "".join(f"{i}.png,a;b\n" if i % 2 else f"{i}.png,a\n"
                                                  for i in range(12)))
    teacher = tmp_path / "teacher.keras"
    teacher.write_bytes(b"")  # refused before it is read
    for setting, message in ((dict(class_weights=True), "class_weights weigh single-label"),
                             (dict(teacher=str(teacher)), "teacher distils single-label")):
        with pytest.raises(ValueError, match=message):
            kres.train("cifar_resnet20", str(root), labels=rows, run_dir=str(tmp_path / "r"),
                       **setting)
    assert not os.path.exists(tmp_path / "r" / "best.keras")
