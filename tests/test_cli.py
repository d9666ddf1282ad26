"""The kres command line."""

import csv
import json
import os
import re
import subprocess
import sys

import pytest

from kres.cli import main


def test_models_prints_params_and_macs(capsys):
    assert main(["models", "cifar_resnet2*", "resnext29_32x4d"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["model", "params", "MMACs", "input", "classes"]
    assert lines[1].split() == ["cifar_resnet20", "269,722", "40.6", "32", "10"]
    assert lines[2].split() == ["resnext29_32x4d", "4,775,754", "774.1", "32", "10"]


def test_summary_with_overrides(capsys):
    assert main(["summary", "cifar_resnet20", "--set", "depths=(5,5,5)", "--classes", "100"]) == 0
    out = capsys.readouterr().out
    assert "conv4_block5_out" in out
    assert "470,004 trainable parameters" in out  # resnet32 with a 100-class head


def test_bad_name_exits_2(capsys):
    assert main(["summary", "resnet51"]) == 2
    assert "Did you mean 'resnet50'" in capsys.readouterr().err


def test_console_script_is_installed():
    script = os.path.join(os.path.dirname(sys.executable), "kres")
    out = subprocess.run([script, "models", "--names-only", "wrn*"], capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == ["wrn16_4", "wrn16_8", "wrn28_10", "wrn40_4"]


def test_evaluate_command_and_the_resume_of_a_finished_run(trained, fashion_mnist_dir,
                                                           capsys):
    # The shared run (conftest.py: kres.train on 4,000 images, 1,000 held out).
    # kres train's flags and printed line are checked in test_commands.py.
    run = os.path.dirname(trained)
    with open(os.path.join(run, "results.json")) as f:
        results = json.load(f)
    assert main(["evaluate", os.path.join(run, "best.keras"), "--dataset", "fashion_mnist",
                 "--data-dir", fashion_mnist_dir]) == 0
    printed = dict(zip(*[iter(capsys.readouterr().out.split())] * 2))
    # Evaluating best.keras on the test split is the run's test accuracy.
    assert float(printed["accuracy"]) == pytest.approx(results["test_accuracy"], abs=1e-4)

    # --split val: the run's own validation images (the last 1,000 training images),
    # against the same images read with tfds (pixels: the model normalises them).
    assert main(["evaluate", os.path.join(run, "best.keras"), "--dataset", "fashion_mnist",
                 "--data-dir", fashion_mnist_dir, "--split", "val"]) == 0
    printed = dict(zip(*[iter(capsys.readouterr().out.split())] * 2))
    import keras
    import numpy as np
    import tensorflow_datasets as tfds

    val = tfds.load("fashion_mnist", split="train[59000:]", data_dir=fashion_mnist_dir,
                    as_supervised=True)
    images, labels = (np.stack(a) for a in zip(*tfds.as_numpy(val)))
    model = keras.saving.load_model(os.path.join(run, "best.keras"))
    accuracy = float(np.mean(model.predict(images.astype("float32"), verbose=0).argmax(axis=1)
                             == labels))
    assert float(printed["accuracy"]) == pytest.approx(accuracy, abs=1e-4)
    # ... which are the images the run validated on: the best epoch's score.
    with open(os.path.join(run, "history.csv")) as f:
        assert float(printed["accuracy"]) == pytest.approx(
            max(float(r["val_accuracy"]) for r in csv.DictReader(f)), abs=1e-4)

    assert main(["train", "--resume", run]) == 2
    assert "has finished already" in capsys.readouterr().err


def test_train_flags_land_in_the_run_configuration():
    from kres.cli import commands
    from kres.cli.parser import _parser

    args = _parser().parse_args([
        "train", "--model", "wrn16_4", "--dataset", "fashion_mnist", "--recipe", "wrn-cifar",
        "--epochs", "30", "--batch-size", "64", "--lr", "0.05", "--weight-decay", "0.0005",
        "--patience", "5", "--set-recipe", "label_smoothing=0.1", "--set", "drop_path_rate=0.1",
        "--subset", "1000", "--val-size", "500", "--image-size", "32", "--channels", "3",
        "--seed", "7", "--precision", "mixed_bfloat16", "--xla", "--strategy", "default",
        "--optimizer", "adamw", "--ema", "--out", "runs/x"])
    config, out = commands._train_config(args)
    assert out == "runs/x"
    assert config.recipe == "wrn-cifar" and config.recipe_overrides == {
        "label_smoothing": 0.1, "epochs": 30, "batch_size": 64, "learning_rate": 0.05,
        "weight_decay": 0.0005, "patience": 5, "optimizer": "adamw", "ema": True}
    assert config.model_overrides == {"drop_path_rate": 0.1}
    assert (config.subset, config.val_size, config.image_size, config.channels, config.seed,
            config.precision, config.jit_compile, config.strategy) == (
        1000, 500, 32, 3, 7, "mixed_bfloat16", True, "default")


def test_a_new_optimizer_with_the_recipes_learning_rate_is_warned_of(capsys):
    from kres.cli import commands
    from kres.cli.parser import _parser

    flags = ["train", "--model", "cifar_resnet20", "--dataset", "fashion_mnist",
             "--recipe", "fast-cpu", "--optimizer", "lion"]
    commands._train_config(_parser().parse_args(flags))
    assert ("--optimizer lion keeps the recipe fast-cpu's learning_rate 0.2 and weight_decay "
            "0.0005, set for sgd") in capsys.readouterr().err
    commands._train_config(_parser().parse_args([*flags, "--lr", "1e-4", "--weight-decay", "1"]))
    assert "warning" not in capsys.readouterr().err


def test_multi_worker_train_needs_its_run_directory_and_a_cluster(capsys, tmp_path,
                                                                   monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    flags = ["train", "--model", "cifar_resnet20", "--dataset", "fashion_mnist",
             "--strategy", "multi-worker"]
    assert main(flags) == 2
    assert "needs --out RUN_DIR, the same on every worker" in capsys.readouterr().err
    assert main([*flags, "--out", str(tmp_path / "run")]) == 2
    assert "needs the cluster in TF_CONFIG" in capsys.readouterr().err


def test_tune_command(fashion_mnist_quick_dir, tmp_path, capsys):
    out = str(tmp_path / "search")
    assert main(["tune", "--space", "cifar-resnet", "--dataset", "fashion_mnist",
                 "--data-dir", fashion_mnist_quick_dir, "--tuner", "grid", "--max-trials", "1",
                 "--max-epochs", "1", "--depths", "8", "--subset", "256", "--val-size", "128",
                 "--set-recipe", "batch_size=64", "--set", "widths=(8,16,32)",
                 "--set", "stem_width=8", "--out", out, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "best trial 0 (depths 8)" in printed and "widths=(8, 16, 32)" in printed
    # --set: every network of the search is that narrower one.
    with open(os.path.join(out, "model.json")) as f:
        assert json.load(f)["spec"]["widths"] == [8, 16, 32]
    assert main(["tune", "--resume", out]) == 0  # nothing left to do: the report again
    assert main(["tune", "--space", "cifar-resnet", "--dataset", "fashion_mnist",
                 "--worker", "tuner0"]) == 2
    assert "--oracle HOST:PORT" in capsys.readouterr().err


def _kres(*args, env=None):
    """Runs the kres command line in a fresh interpreter (the console script's code path)."""
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("TF_CPP_MIN_LOG_LEVEL", "KRES_VERBOSE")}
    return subprocess.run([sys.executable, "-m", "kres.cli", *args], capture_output=True,
                          text=True, env={**environment, **(env or {})}, timeout=300)


NOT_LOADED = """
import runpy, sys
sys.argv = ["kres", *sys.argv[1:]]
try:
    runpy.run_module("kres.cli", run_name="__main__")
except SystemExit as exit:
    assert exit.code in (0, None), exit.code
print("LOADED", sorted(m for m in ("tensorflow", "keras", "keras_tuner") if m in sys.modules))
"""


def test_help_and_models_never_import_tensorflow():
    for args in (["--help"], ["models"], ["models", "--names-only", "vgg*"], ["--version"]):
        done = subprocess.run([sys.executable, "-c", NOT_LOADED, *args], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.splitlines()[-1] == "LOADED []", (args, done.stdout[-500:])


# TensorFlow's and absl's C++ log lines: "I0000 00:00:... file.cc:12] message".
TF_LOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d|absl::InitializeLog|cudart_stub|oneDNN custom",
                    re.M)


def test_tensorflow_start_up_logging_is_hidden_unless_verbose(monkeypatch):
    quiet = _kres("summary", "cifar_resnet20", "--set", "depths=(1,1,1)")
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "trainable parameters" in quiet.stdout
    assert not TF_LOG.search(quiet.stderr), quiet.stderr[-2000:]
    assert not TF_LOG.search(quiet.stdout)
    verbose = _kres("summary", "cifar_resnet20", "--set", "depths=(1,1,1)", "--verbose")
    assert verbose.returncode == 0 and "trainable parameters" in verbose.stdout
    # What --verbose lets through (on this machine, TensorFlow's start-up lines).
    assert TF_LOG.search(verbose.stderr) is not None or verbose.stderr == ""
    # KRES_VERBOSE=1 is --verbose (the flag's default), for every command.
    from kres.cli.parser import _parser

    for value, expected in (("1", True), ("0", False), ("", False)):
        monkeypatch.setenv("KRES_VERBOSE", value)
        assert _parser().parse_args(["summary", "cifar_resnet20"]).verbose is expected


def test_tensorflow_that_fails_to_load_is_shown(tmp_path):
    # A broken install (the real one cannot be broken here): it writes to the C-level
    # stderr, as a failing shared library does, then fails to import.
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "import os\n"
        "os.write(2, b'libtensorflow_framework.so.2: cannot open shared object file\\n')\n"
        "raise ImportError('the fake TensorFlow is broken')\n")
    done = _kres("summary", "cifar_resnet20", env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode != 0
    assert "cannot open shared object file" in done.stderr
    assert "the fake TensorFlow is broken" in done.stderr


def test_version_flag_and_a_served_models_version_do_not_collide(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"kres {__import__('kres').__version__}"
    from kres.cli.parser import _parser

    args = _parser().parse_args(["export", "--model", "m.keras", "--name", "n",
                                 "--version", "7"])
    assert args.version == 7 and not args.show_version


def test_an_interrupted_command_says_so_in_a_line_and_how_to_resume(capsys, monkeypatch):
    from kres.cli import parser

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(parser.COMMANDS, "train", interrupted)
    monkeypatch.setitem(parser.COMMANDS, "models", interrupted)
    assert main(["train", "--model", "cifar_resnet20", "--dataset", "fashion_mnist"]) == 130
    err = capsys.readouterr().err
    assert "kres train: interrupted (kres train --resume RUN_DIR" in err
    assert "Traceback" not in err
    assert main(["models"]) == 130
    assert capsys.readouterr().err.strip() == "kres models: interrupted"
