"""The README's command-line section, run as a user runs it, each command's output checked.

`kres predict --from-dataset` against the dataset's own labels and the
export's own outputs; `kres train --resume` after a real kill; the Hyperband
and Bayesian tuners, `--tune-training`, `--budget-mparams` and the
`wrn-cifar` space; a chief and two workers started by `kres tune --chief` and
`--worker`; and `kres train` in every precision and with and without XLA.
"""

import csv
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import kres
from kres import data as datasets
from kres import rundir as runs
from kres.cli import main
from kres.cli.parallel_tune import wait_for_port

TINY = ["--model", "cifar_resnet20", "--set", "depths=(1,1,1)", "--augment", "none"]


def _data_args(data_dir, subset=256, val_size=128):
    return ["--dataset", "fashion_mnist", "--data-dir", data_dir, "--subset", str(subset),
            "--val-size", str(val_size)]


def _cli(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "kres.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def test_predict_from_a_dataset_prints_its_labels_and_the_exports_answers(
        fashion_mnist_quick_dir, tmp_path, capsys):
    model = kres.build_model("cifar_resnet20", depths=(1, 1, 1), input_shape=(28, 28, 1))
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "best.keras")
    builder = tfds.builder("fashion_mnist", data_dir=fashion_mnist_quick_dir)
    names = builder.info.features["label"].names
    runs.write_model_description(
        str(run), model="cifar_resnet20", spec=kres.get_spec("cifar_resnet20"),
        preprocessing=datasets.get_dataset_spec("fashion_mnist").preprocessing((28, 28, 1)),
        class_names=names, dataset="fashion_mnist")
    saved = str(tmp_path / "saved" / "fm")
    assert main(["export", "--model", str(run / "best.keras"), "--name", "fm", "--out",
                 str(tmp_path / "saved")]) == 0
    capsys.readouterr()
    assert main(["predict", "--saved-model", saved, "--from-dataset", "fashion_mnist",
                 "--count", "6", "--data-dir", fashion_mnist_quick_dir]) == 0
    lines = capsys.readouterr().out.splitlines()

    # The truth, read with tfds itself; the answers, from the export's pixels signature.
    test = builder.as_dataset(split="test[:6]", as_supervised=True, shuffle_files=False)
    pixels, labels = (np.stack(a) for a in zip(*tfds.as_numpy(test)))
    served = tf.saved_model.load(os.path.join(saved, "1")).signatures["serving_pixels"]
    answers = served(pixels=tf.constant(pixels))
    line = re.compile(r"^fashion_mnist test image (\d) \(true: (.+?)\): (.+)$")
    right = 0
    for i in range(6):
        index, true, top = line.match(lines[i]).groups()
        assert int(index) == i and true == names[labels[i]]
        expected = [(label.decode(), f"{score:.3f}") for label, score in
                    zip(answers["labels"][i].numpy()[:3], answers["scores"][i].numpy()[:3])]
        assert [tuple(part.rsplit(" ", 1)) for part in top.split(", ")] == expected
        right += expected[0][0] == true
    assert lines[6] == f"{right} of 6 dataset images right through the export"


def test_a_killed_training_run_resumes_through_the_command_line(fashion_mnist_quick_dir, tmp_path,
                                                                capsys):
    run = tmp_path / "run"
    args = ["train", *TINY, *_data_args(fashion_mnist_quick_dir, subset=1024, val_size=256),
            "--epochs", "4", "--batch-size", "64", "--out", str(run), "--quiet"]
    process = _cli(*args)
    metadata = run / "backup" / "training_metadata.json"
    deadline = time.monotonic() + 600
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if json.loads(metadata.read_text())["epoch"] >= 2:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    process.kill()
    process.wait()
    assert process.returncode == -9, "the run ended before it could be killed: make it longer"
    with open(run / "history.csv") as f:
        before = list(csv.DictReader(f))
    assert not (run / "results.json").exists()
    # Two epochs backed up: the backup keeps the one before aside (double_checkpoint).
    backup = run / "backup"
    weights = backup / "latest.weights.h5"
    assert (backup / "latest.weights.h5.bkp").exists()
    # Then a kill in the middle of the next backup, as it happens: the last backup
    # copied aside, the weights cut short (the h5 file a SIGKILL left on a real run
    # would not open). The resume takes the copy.
    shutil.copy(weights, backup / "latest.weights.h5.bkp")
    shutil.copy(metadata, backup / "training_metadata.json.bkp")
    weights.write_bytes(weights.read_bytes()[:weights.stat().st_size // 2])

    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    with open(run / "history.csv") as f:
        after = list(csv.DictReader(f))
    assert [r["epoch"] for r in after] == ["0", "1", "2", "3"]
    assert after[0] == before[0]  # the finished epoch was not trained again
    with open(run / "results.json") as f:
        assert json.load(f)["epochs_run"] == 4
    assert "test accuracy" in capsys.readouterr().out


def _trials(out):
    with open(os.path.join(out, "trials.csv")) as f:
        return list(csv.DictReader(f))


def _check_best(out):
    """The best trial of the report is the one with the highest score, and its model is it."""
    rows = [r for r in _trials(out) if r["best_val_accuracy"]]
    best = max(rows, key=lambda r: float(r["best_val_accuracy"]))
    with open(os.path.join(out, "best.json")) as f:
        assert json.load(f)["best_val_accuracy"] == float(best["best_val_accuracy"])
    trial = keras.saving.load_model(os.path.join(out, "project", f"trial_{best['trial_id']}",
                                                 "run", "best.keras"))
    copied = keras.saving.load_model(os.path.join(out, "best.keras"))
    for a, b in zip(trial.weights, copied.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    return rows


def test_hyperband_search_through_the_command_line(fashion_mnist_quick_dir, tmp_path, capsys):
    out = str(tmp_path / "search")
    assert main(["tune", "--space", "cifar-resnet", *_data_args(fashion_mnist_quick_dir),
                 "--tuner", "hyperband", "--max-epochs", "3", "--depths", "8,14",
                 "--set-recipe", "batch_size=64", "--set-recipe", "augment=none", "--out", out,
                 "--quiet"]) == 0
    rows = _check_best(out)
    # Hyperband's brackets: trials of 1 epoch, and the best of them continued to 3.
    epochs = set()
    for row in rows:
        run = os.path.join(out, "project", f"trial_{row['trial_id']}", "run")
        with open(os.path.join(run, "trial.json")) as f:
            hp = json.load(f)["hyperparameters"]
        epochs.add(hp["tuner/epochs"])
        with open(os.path.join(run, "history.csv")) as f:
            rates = [float(r["learning_rate"]) for r in csv.DictReader(f)]
        # Each trial's step schedule (he2015-cifar: /10 at 50% and 75% of the run)
        # spans the epochs of its rung; a continuation goes on where it was. At the
        # end of epoch e of a 3-epoch schedule: 0.1 (e=1), 0.01 (e=2), 0.001 (e=3).
        if hp["tuner/epochs"] == 1:
            assert rates == [pytest.approx(0.001)]
        elif hp["tuner/initial_epoch"] == 1:
            assert rates == [pytest.approx(0.01), pytest.approx(0.001)]
        else:
            assert rates == [pytest.approx(0.1), pytest.approx(0.01), pytest.approx(0.001)]
    assert epochs == {1, 3}
    assert f"best trial {max(rows, key=lambda r: float(r['best_val_accuracy']))['trial_id']}" \
        in capsys.readouterr().out


# Long; Bayesian optimisation's proposals are tested in test_tune.py, the search's
# command line by the Hyperband search above (make test-all runs this one).
@pytest.mark.slow
def test_bayesian_search_of_wide_resnets_with_training_knobs_and_a_parameter_budget(
        fashion_mnist_quick_dir, tmp_path):
    out = str(tmp_path / "search")
    # WRN-16-1 has 0.18 M parameters, WRN-16-2 0.69 M: the budget keeps k = 2 out.
    assert main(["tune", "--space", "wrn-cifar", *_data_args(fashion_mnist_quick_dir),
                 "--tuner", "bayesian", "--max-trials", "3", "--max-epochs", "1",
                 "--depths", "16", "--widen-factors", "1,2", "--tune-training",
                 "--budget-mparams", "0.5", "--set-recipe", "batch_size=64",
                 "--set-recipe", "augment=none", "--out", out, "--quiet"]) == 0
    rows = _check_best(out)
    assert len(rows) == 3
    for row in rows:
        assert row["widen_factor"] == "1" and int(row["params"]) < 500_000
        assert 0.01 <= float(row["learning_rate"]) <= 0.4
        assert 1e-5 <= float(row["weight_decay"]) <= 1e-3
        assert float(row["label_smoothing"]) in (0.0, 0.1)
    assert len({row["learning_rate"] for row in rows}) == 3  # the search moved


# Three processes (a chief, two workers) on a 2-core machine: 45 s, so with the
# long tests (make test-all); the multi-worker training runs stay in the default suite.
@pytest.mark.slow
def test_chief_and_workers_started_by_the_command_line(fashion_mnist_quick_dir, tmp_path):
    out = str(tmp_path / "search")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    search = ["tune", "--space", "cifar-resnet", *_data_args(fashion_mnist_quick_dir),
              "--tuner", "random", "--max-trials", "4", "--max-epochs", "1",
              "--depths", "8,14,20,32", "--set-recipe", "batch_size=64",
              "--set-recipe", "augment=none", "--out", out, "--quiet"]
    chief = _cli(*search, "--chief", "--port", str(port))
    wait_for_port(port, chief, timeout=300)
    workers = [_cli(*search, "--worker", f"tuner{i}", "--oracle", f"127.0.0.1:{port}")
               for i in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-2000:]
    stdout, err = chief.communicate(timeout=600)
    assert chief.returncode == 0, err[-2000:]
    assert "kres tune (chief)" in stdout and "best trial" in stdout
    rows = _trials(out)
    assert len(rows) == 4 and all(r["status"] == "COMPLETED" for r in rows)
    assert sorted(r["depths"] for r in rows) == ["14", "20", "32", "8"]
    tuner_files = sorted(f for f in os.listdir(os.path.join(out, "project"))
                         if f.startswith("tuner"))
    assert tuner_files == ["tuner0.json", "tuner1.json"]  # both workers took part


@pytest.mark.parametrize("flags, says", [
    (["--parallel", "0"], "--parallel takes a number of workers or 'gpus'"),
    (["--parallel", "two"], "Received: --parallel two"),
    (["--parallel", "2", "--chief"], "--parallel starts its own chief and workers"),
    (["--parallel", "gpus"], "Keras's backend sees no GPU here"),
])
def test_tune_parallel_refuses_what_it_cannot_run_before_any_work(tmp_path, capsys, flags,
                                                                  says, monkeypatch):
    from kres.cli import main, parallel_tune

    monkeypatch.setattr(parallel_tune, "gpus_seen", lambda: 0)  # also on a GPU machine
    out = tmp_path / "search"
    assert main(["tune", "--space", "cifar-resnet", "--dataset", "fashion_mnist", "--out",
                 str(out), *flags]) == 2
    assert says in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("visible, expected", [(None, ["0", "1"]), ("5,7", ["5", "7"])])
def test_tune_parallel_gpus_gives_each_worker_one_of_the_gpus_seen(tmp_path, monkeypatch,
                                                                   visible, expected):
    # No GPU here: the count is given and the processes are recorded, not started.
    from kres.cli import parallel_tune

    started = []

    class Recorded:
        returncode = 0

        def __init__(self, command, env, **kwargs):
            started.append((command, env))

        def poll(self):
            return 0

        def wait(self, timeout=None):
            return 0

    monkeypatch.setattr(parallel_tune, "gpus_seen", lambda: 2)
    monkeypatch.setattr(parallel_tune.subprocess, "Popen", Recorded)
    monkeypatch.setattr(parallel_tune, "wait_for_port", lambda port, process: None)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    argv = ["tune", "--space", "cifar-resnet", "--par", "gpus", "--dataset", "fashion_mnist"]
    parallel_tune.run(argv, str(tmp_path), "gpus")
    (chief, chief_env), *workers = started
    assert "--chief" in chief and "--par" not in chief and "gpus" not in chief
    assert chief_env["CUDA_VISIBLE_DEVICES"] == "" and \
        chief_env["KERASTUNER_ORACLE_IP"] == "127.0.0.1"
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in workers] == expected
    assert [command[command.index("--worker") + 1] for command, _ in workers] == [
        "tuner0", "tuner1"]


def test_tune_parallel_a_failing_worker_ends_the_search_with_its_log(tmp_path):
    from kres.cli import parallel_tune

    class Ended:
        def __init__(self, code):
            self.returncode = code

        def poll(self):
            return self.returncode

    (tmp_path / "tuner1.log").write_text("loading\nValueError: out of memory\n")
    running = Ended(None)
    with pytest.raises(RuntimeError, match=r"worker tuner1 failed \(exit 1\); its log .*"
                                           r"tuner1.log ends:\nloading\nValueError: out of"):
        parallel_tune._wait(running, {"tuner0": running, "tuner1": Ended(1)}, str(tmp_path))
    parallel_tune._wait(Ended(0), {"tuner0": Ended(0)}, str(tmp_path))  # all done: returns


def test_tune_parallel_without_its_flag_in_any_spelling():
    from kres.cli.parallel_tune import _without_parallel

    for flag in (["--parallel", "2"], ["--parallel=2"], ["--par", "2"], ["--paral=gpus"]):
        assert _without_parallel(["tune", *flag, "--seed", "1"]) == ["tune", "--seed", "1"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_tune_parallel_children_end_with_their_parent_even_killed():
    parent_code = (
        "import subprocess, sys, time\n"
        "from kres.cli.parallel_tune import _end_with_parent\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'],\n"
        "                         preexec_fn=_end_with_parent)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE,
                              text=True)
    child = int(parent.stdout.readline())
    assert _running(child)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 20
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(child)


def _running(pid):
    """Whether `pid` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            state = next(line for line in f if line.startswith("State:"))
    except (OSError, StopIteration):
        return False
    return " Z " not in state and "zombie" not in state


def _lscpu_flags():
    """This CPU's flags as `lscpu` prints them (util-linux; skips where it is absent)."""
    lscpu = shutil.which("lscpu")
    lines = [] if lscpu is None else [
        v for v in subprocess.run([lscpu], capture_output=True, text=True,
                                  env={"LC_ALL": "C"}).stdout.splitlines()
        if v.startswith("Flags:")]
    if not lines:
        pytest.skip("lscpu names no CPU flags here")
    return set(lines[0].split(":", 1)[1].split())


def _documented_precision(flags):
    """precision="auto" on a machine without a GPU, as docs/training.md states it."""
    if "amx_bf16" in flags:
        return "mixed_bfloat16", "the CPU has AMX (bfloat16 matrix tiles)"
    if "avx512_bf16" in flags:
        return "mixed_bfloat16", "the CPU has AVX512-BF16 (bfloat16 dot products)"
    return "float32", "the CPU has neither AMX nor AVX512-BF16"


@pytest.mark.parametrize("flags, precision, compute, jit", [
    (["--precision", "mixed_float16"], "mixed_float16", "float16", False),
    (["--precision", "mixed_bfloat16"], "mixed_bfloat16", "bfloat16", False),
    (["--xla", "--precision", "float32"], "float32", "float32", True),
    # auto: what this machine's features give (test_precision.py checks the rule).
    (["--no-xla", "--precision", "auto"], None, None, False),
])
def test_train_in_every_precision_and_with_xla(fashion_mnist_quick_dir, tmp_path, flags, precision,
                                               compute, jit, capsys):
    reason = "asked for"
    if precision is None:  # the rule of docs/training.md, on what lscpu says of this CPU
        precision, reason = _documented_precision(_lscpu_flags())
        compute = {"float32": "float32", "mixed_bfloat16": "bfloat16"}[precision]
    run = str(tmp_path / "run")
    assert main(["train", *TINY, *_data_args(fashion_mnist_quick_dir), "--epochs", "1",
                 "--batch-size", "64", "--out", run, "--quiet", *flags]) == 0
    with open(os.path.join(run, "results.json")) as f:
        results = json.load(f)
    assert (results["precision"], results["jit_compile"]) == (precision, jit)
    assert results["precision_reason"] == reason
    printed = capsys.readouterr().out
    first = printed.splitlines()[0]
    assert f", {precision}" in first and (reason in first) == (reason != "asked for")
    # The line printed is the run's result, to the digit; the flags reached the config.
    assert f"test accuracy {results['test_accuracy']:.4f} after 1 epochs" in printed
    assert f"per-class report {os.path.join(run, 'report.json')}" in printed
    assert results["epochs_run"] == 1 and results["train_examples"] == 256
    with open(os.path.join(run, "config.json")) as f:
        config = json.load(f)
    assert config["recipe_overrides"]["augment"] == "none"
    assert config["model_overrides"] == {"depths": [1, 1, 1]} and config["val_size"] == 128
    best = kres.load_model(os.path.join(run, "best.keras"))
    assert best.get_layer("conv1_conv").compute_dtype == compute
    assert best.get_layer("predictions").compute_dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"  # the process is as it was
