"""`kres train` on Keras's TensorFlow and JAX backends, side by side: test accuracy and images/s.

Runs the same `kres train` command (a recipe, Fashion-MNIST, ResNet-20 by
default) once per backend, precision and seed, each in a fresh process, one
after the other (the machine's two cores to each run alone), alternating the
backends; then prints, per backend and precision, each seed's test accuracy
and training images/s (end to end: `kres train`'s own figure, the epochs
after the first, validation included), their mean and spread, and JAX's
images/s over TensorFlow's.

Each backend runs in the Python environment given for it: TensorFlow in the
main one (.venv), JAX in the TensorFlow-free one (.venv-jax, `make test`
builds it), so the JAX runs use the pipeline without TensorFlow
(`kres.data.batches`). Writes ``--out`` with the date, machine, command and
commit (`machine.provenance`) and every run's figures.

    .venv/bin/python benchmarks/backends.py --recipe fast-cpu --epochs 4 --subset 10000 \\
        --seeds 0 1 2 --out benchmarks/results/backends.json

A long comparison (the fast recipe on the whole split: hours on a 2-core
CPU) can be run in pieces: with ``--work DIR`` the runs' directories are
kept there, a finished run is read back (its row saved beside it, with the
processor it ran on) and an unfinished one resumed (`kres train --resume`);
such a run is marked ``resumed``, as its images/s then span processes and
perhaps machines (compare speeds in runs made whole, side by side). The
full-scale comparison of docs/benchmarks.md keeps its pieces in the
repository, so that a later session on a fresh machine goes on from them
(git keeps only ``settings.json`` and each finished run's
``benchmark_row.json`` and ``results.json``: an unfinished run starts again):

    .venv/bin/python benchmarks/backends.py --recipe fast-cpu --seeds 0 1 2 \\
        --work benchmarks/results/backends-full --out benchmarks/results/backends_full.json
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import provenance  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHONS = {"tensorflow": os.path.join(ROOT, ".venv", "bin", "python"),
           "jax": os.path.join(ROOT, ".venv-jax", "bin", "python")}


def train(backend, python, precision, seed, args, work, cpu):
    run_dir = os.path.join(work, f"{backend}-{precision}-{seed}")
    row_file = os.path.join(run_dir, "benchmark_row.json")
    if os.path.isfile(row_file):  # finished in an earlier piece
        with open(row_file) as f:
            return json.load(f)
    resumed = os.path.isdir(run_dir)
    command = [python, "-m", "kres.cli", "train", "--quiet"]
    if resumed:
        command += ["--resume", run_dir]
    else:
        command += ["--model", args.model, "--dataset", "fashion_mnist", "--recipe",
                    args.recipe, "--seed", str(seed), "--precision", precision, "--out", run_dir]
        for flag in ("epochs", "subset"):
            if getattr(args, flag):
                command += [f"--{flag}", str(getattr(args, flag))]
    env = {**os.environ, "KERAS_BACKEND": backend}
    if backend == "jax":
        env.setdefault("JAX_PLATFORMS", "cpu")
    start = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{backend} {precision} seed {seed} failed:\n{done.stderr[-3000:]}")
    with open(os.path.join(run_dir, "results.json")) as f:
        results = json.load(f)
    row = {"backend": backend, "precision": results["precision"], "seed": seed,
           "test_accuracy": results["test_accuracy"],
           "train_images_per_second": results["train_images_per_second"],
           "epoch_seconds": results["epoch_times"], "wall_seconds": time.monotonic() - start,
           "load_average": os.getloadavg(), "cpu": cpu, "resumed": resumed}
    with open(row_file, "w") as f:
        json.dump(row, f, indent=1)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cifar_resnet20")
    parser.add_argument("--recipe", default="fast-cpu")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--subset", type=int)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", nargs="+", default=["tensorflow:float32", "jax:float32"],
                        help="BACKEND:PRECISION pairs")
    parser.add_argument("--python", nargs="*", default=[], metavar="BACKEND=PYTHON",
                        help="the interpreter per backend (default .venv, .venv-jax)")
    parser.add_argument("--out")
    parser.add_argument("--work", help="keep the runs here; rerun to continue (see above)")
    args = parser.parse_args()
    record = provenance()
    pythons = {**PYTHONS, **dict(p.split("=", 1) for p in args.python)}
    runs = [tuple(r.split(":")) for r in args.runs]
    rows = []
    settings = {k: getattr(args, k) for k in ("model", "recipe", "epochs", "subset", "seeds",
                                                "runs")}
    with tempfile.TemporaryDirectory() as temporary:
        work = args.work or temporary
        _check_settings(work, settings)
        for seed in args.seeds:
            for backend, precision in runs:
                row = train(backend, pythons[backend], precision, seed, args, work,
                            record.get("cpu"))
                rows.append(row)
                print(f"{backend:10} {row['precision']:15} seed {seed}: test "
                      f"{row['test_accuracy']:.4f}, {row['train_images_per_second']:7.1f} "
                      f"images/s{' (resumed)' if row.get('resumed') else ''}", flush=True)
    summary = {}
    for backend, precision in runs:
        mine = [r for r in rows if (r["backend"], r["precision"]) == (backend, precision)]
        accuracy = [r["test_accuracy"] for r in mine]
        speed = [r["train_images_per_second"] for r in mine]
        summary[f"{backend}:{precision}"] = {
            "mean_test_accuracy": statistics.mean(accuracy),
            "test_accuracy_spread": max(accuracy) - min(accuracy),
            "median_images_per_second": statistics.median(speed)}
    base = summary.get("tensorflow:float32")
    for key, s in summary.items():
        ratio = (f", {s['median_images_per_second'] / base['median_images_per_second']:.2f}x "
                 f"TensorFlow float32's images/s") if base else ""
        print(f"{key:24} mean test {s['mean_test_accuracy']:.4f} (spread "
              f"{s['test_accuracy_spread']:.4f}), median {s['median_images_per_second']:.1f} "
              f"images/s{ratio}")
    record.update(settings=settings, runs=rows, summary=summary, load_average_end=os.getloadavg())
    if args.out:
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)


def _check_settings(work, settings):
    """A work folder holds the runs of one comparison: other settings are refused."""
    os.makedirs(work, exist_ok=True)
    path = os.path.join(work, "settings.json")
    if os.path.isfile(path):
        with open(path) as f:
            saved = json.load(f)
        if saved != json.loads(json.dumps(settings)):
            raise SystemExit(f"{work} holds the runs of other settings ({saved}); give the "
                             f"same ones, or another --work. Received: {settings}")
    else:
        with open(path, "w") as f:
            json.dump(settings, f, indent=1)


if __name__ == "__main__":
    main()
