"""Every example runs end to end in its --smoke mode and writes its outputs."""

import importlib.util
import json
import os

import numpy as np
import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def _example(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(name, tmp_path, data_dir):
    out = str(tmp_path / name)
    return out, _example(name).main(["--smoke", "--out", out, "--data-dir", data_dir])


def test_every_example_has_a_smoke_test():
    tested = {"degradation", "cardinality_vs_width", "tune_depth_and_cardinality",
              "export_and_serve", "resnext_in_a_keras_script", "cifar10_resnet20",
              "finetune_own_images", "fpn_backbone",  # fpn_backbone's is in test_backbones
              "multi_label_pairs"}
    assert {f[:-3] for f in os.listdir(EXAMPLES) if f.endswith(".py")} == tested


@pytest.mark.slow  # a kres.train run and an export; test_labels.py does both in the default suite
def test_multi_label_pairs(tmp_path, fashion_mnist_dir):
    out, summary = _run("multi_label_pairs", tmp_path, fashion_mnist_dir)
    with open(os.path.join(summary["run_dir"], "results.json")) as f:
        results = json.load(f)
    assert results["multi_label"] and summary["test_map"] == results["test_map"]
    assert summary["test_images"] == 128 and summary["served_two_label_images"] > 0
    assert 0 <= summary["served_both_labels"] <= summary["served_two_label_images"]
    with open(os.path.join(out, "results.json")) as f:
        assert json.load(f)["served_exact"] == summary["served_exact"]


@pytest.mark.slow  # three kres.train runs; the full run is recorded in the note
def test_finetune_own_images(tmp_path, fashion_mnist_dir):
    out, rows = _run("finetune_own_images", tmp_path, fashion_mnist_dir)
    assert set(rows) == {"fine-tuned", "from-scratch"}
    for row in rows.values():
        (run,) = row["runs"]
        with open(os.path.join(run["run_dir"], "results.json")) as f:
            results = json.load(f)
        assert run["test_accuracy"] == row["test_accuracy_mean"] == results["test_accuracy"]
        assert row["test_accuracy_spread"] == 0  # one seed
        assert results["train_examples"] == run["train_examples"] > 0
    with open(os.path.join(rows["fine-tuned"]["runs"][0]["run_dir"], "config.json")) as f:
        assert json.load(f)["weights"] == os.path.join(out, "pretrained", "best.keras")


@pytest.mark.slow  # a pretraining and two kres.train runs
def test_finetune_own_images_with_another_optimizer(tmp_path, fashion_mnist_dir):
    """The optimizer comparison's path: the fine-tuned run alone, two seeds, AdamW."""
    out = str(tmp_path / "ft")
    rows = _example("finetune_own_images").main([
        "--smoke", "--out", out, "--data-dir", fashion_mnist_dir, "--only", "fine-tuned",
        "--seeds", "0", "1", "--optimizer", "adamw", "--lr", "3e-4", "--weight-decay", "0.05"])
    (row,) = rows.values()
    assert [run["seed"] for run in row["runs"]] == [0, 1]
    for run in row["runs"]:
        assert "optimizeradamw-learning_rate0.0003-weight_decay0.05" in run["run_dir"]
        with open(os.path.join(run["run_dir"], "config.json")) as f:
            config = json.load(f)
        overrides = config["recipe_overrides"]
        assert (overrides["optimizer"], overrides["learning_rate"]) == ("adamw", 3e-4)
        assert config["seed"] == run["seed"]
    with open(os.path.join(out, "comparison-fine-tuned-optimizeradamw-learning_rate0.0003-"
                                "weight_decay0.05.json")) as f:
        assert json.load(f)["fine-tuned"]["test_accuracy_mean"] == row["test_accuracy_mean"]


@pytest.mark.slow  # a pretraining, a range test and a kres.train run
def test_finetune_own_images_with_the_rate_of_a_range_test(tmp_path, fashion_mnist_dir):
    """``--lr auto``: each run tests the rates in its own directory and trains at
    the suggestion, which the comparison records beside its accuracy."""
    out = str(tmp_path / "ft")
    rows = _example("finetune_own_images").main([
        "--smoke", "--out", out, "--data-dir", fashion_mnist_dir, "--only", "fine-tuned",
        "--optimizer", "adamw", "--lr", "auto"])
    ((run,),) = [row["runs"] for row in rows.values()]
    assert "optimizeradamw-learning_rateauto" in run["run_dir"]
    with open(os.path.join(run["run_dir"], "lr_find.json")) as f:
        found = json.load(f)
    assert run["learning_rate"] == found["learning_rate"] > 0
    with open(os.path.join(run["run_dir"], "config.json")) as f:
        used = json.load(f)["recipe_overrides"]["learning_rate"]
    assert used == float(f"{found['learning_rate']:.4g}")


@pytest.mark.slow  # two kres.train runs; kres.train's path is in the default suite many times over
def test_degradation(tmp_path, fashion_mnist_dir):
    out, runs = _run("degradation", tmp_path, fashion_mnist_dir)
    assert set(runs) == {("plain", 8), ("resnet", 8)}  # one depth in smoke mode
    assert os.path.getsize(os.path.join(out, "degradation.png")) > 10_000
    with open(os.path.join(out, "degradation.md")) as f:
        text = f.read()
    for name in ("plain-8", "resnet-8"):
        assert f"| {name} |" in text
    # Same parameters with and without shortcuts (option A has none).
    assert runs["plain", 8][1]["params"] == runs["resnet", 8][1]["params"]
    assert all(len(history) == 2 for history, _ in runs.values())


# Four kres.tune trials; the seeds' spread is also test_tune's
# test_seeds_per_configuration_and_their_spread, in the default suite.
@pytest.mark.slow
def test_cardinality_vs_width(tmp_path, fashion_mnist_dir):
    out, rows = _run("cardinality_vs_width", tmp_path, fashion_mnist_dir)
    assert [r["cardinality"] for r in rows] == [1, 2]
    # The equal-complexity rule (the paper's 2x40d; 15 channels per group at 24
    # planes): not 2x the MACs, within 5%.
    assert rows[1]["width_per_group"] == 40 and rows[1]["group_channels"] == 15
    assert 0.95 < rows[1]["mmacs"] / rows[0]["mmacs"] < 1.05
    assert all(r["seeds"] == 2 and r["val_min"] <= r["best_val_accuracy"] <= r["val_max"]
               for r in rows)
    assert os.path.isfile(os.path.join(out, "cardinality.png"))
    with open(os.path.join(out, "cardinality.md")) as f:
        text = f.read()
    assert text.count("\n| ") == 3  # header and two networks
    assert "| 2 | 40 | 15 |" in text


def test_tune_depth_and_cardinality(tmp_path, fashion_mnist_dir):
    out, rows = _run("tune_depth_and_cardinality", tmp_path, fashion_mnist_dir)
    assert len(rows) == 2
    for name in ("trials.csv", "trials.md", "accuracy.png", "best.keras"):
        assert os.path.isfile(os.path.join(out, name)), name


def test_export_and_serve(tmp_path, fashion_mnist_dir, capsys):
    out, outputs = _run("export_and_serve", tmp_path, fashion_mnist_dir)
    assert outputs["probabilities"].shape == (4, 10)
    assert os.path.isfile(os.path.join(out, "fashion_mnist_resnet", "1", "saved_model.pb"))
    printed = capsys.readouterr().out
    assert ":predict" in printed and "PredictRequest" in printed and '"b64"' in printed
    # The docker command mounts the folder the export was written to.
    assert f"-v {os.path.abspath(os.path.join(out, 'fashion_mnist_resnet'))}:" in printed
    assert printed.count(", true ") == 4


# A ResNeXt-29 trained in a Keras script; test_api's ResNeXt-50 script (fit in a
# plain Keras script) is in the default suite.
@pytest.mark.slow
def test_resnext_in_a_keras_script(tmp_path, fashion_mnist_dir):
    out, (accuracy, difference) = _run("resnext_in_a_keras_script", tmp_path, fashion_mnist_dir)
    assert difference < 1e-5
    # The accuracy it reports is the saved model's on the first 256 test images.
    import keras
    import tensorflow_datasets as tfds

    test = tfds.load("fashion_mnist", split="test[:256]", data_dir=fashion_mnist_dir,
                     as_supervised=True)
    images, labels = (np.stack(a) for a in zip(*tfds.as_numpy(test)))
    model = keras.saving.load_model(os.path.join(out, "resnext29_32x4d.keras"))
    predicted = model.predict(images.astype("float32") / 255.0, verbose=0).argmax(axis=1)
    assert accuracy == pytest.approx(float(np.mean(predicted == labels)), abs=1e-6)
    assert os.path.isfile(os.path.join(out, "resnext29_32x4d.keras"))


def test_cifar10_resnet20_recipe_code(tmp_path, fashion_mnist_dir):
    out, results = _run("cifar10_resnet20", tmp_path, fashion_mnist_dir)
    assert results["epochs_run"] == 1
    assert os.path.isfile(os.path.join(out, "saved_model", "1", "saved_model.pb"))


def test_degradation_refuses_a_depth_that_is_not_6n_plus_2(capsys):
    with pytest.raises(SystemExit):
        _example("degradation").main(["--depths", "21"])
    assert "6n + 2" in capsys.readouterr().err
