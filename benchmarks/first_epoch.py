"""A short `kres.train` run with its training step traced once, against Keras's default of twice.

Outside a distribution strategy Keras creates the optimizer's and the
metrics' variables while it traces the first training step, and TensorFlow
then traces the step again (a function whose first trace created variables
is traced anew). `kres.training.recipes.build_state` creates them before the fit.
This script times the same short run both ways in fresh processes, in
alternating rounds, and counts the traces of the training step:

- ``kres``: as `kres.train` runs;
- ``keras-default``: with `build_state` switched off in that process (this
  script's doing; the library has no such switch), so Keras builds the
  variables while tracing, as it does for any model.

    .venv/bin/python benchmarks/first_epoch.py
    .venv/bin/python benchmarks/first_epoch.py --models resnext29_32x4d --rounds 3
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import cpu_name  # noqa: E402

CHILD = """
import json, os, sys, tempfile, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import keras
import kres
from kres import data as datasets
from kres.training import recipes

model, variant, images = sys.argv[1], sys.argv[2], int(sys.argv[3])
if variant == "keras-default":
    recipes.build_state = lambda model, num_classes: None
traces = []
train_step = keras.Model.train_step
def counted(self, data):
    traces.append(1)
    return train_step(self, data)
keras.Model.train_step = counted
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (images, 32, 32, 3), dtype=np.uint8)
y = rng.integers(0, 10, images)
data = datasets.from_arrays(x, y, x[:64], y[:64], num_classes=10, val_size=64)
start = time.perf_counter()
with tempfile.TemporaryDirectory() as run_dir:
    kres.train(model, "arrays", data=data, run_dir=run_dir, epochs=1, batch_size=64,
               augment="none", verbose=0)
print(json.dumps({"seconds": time.perf_counter() - start, "traces": len(traces)}))
"""


def run(model, variant, images):
    done = subprocess.run([sys.executable, "-c", CHILD, model, variant, str(images)],
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{model} {variant} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+",
                        default=["cifar_resnet20", "cifar_resnet56", "resnext29_32x4d"])
    parser.add_argument("--images", type=int, default=256,
                        help="training images (one epoch at batch 64)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{cpu_name()}; one epoch of {args.images} images at batch 64, 32x32x3, "
          f"plus the validation and test evaluations; fresh process each, wall time of "
          f"kres.train")
    variants = ("kres", "keras-default")
    samples = {}
    for r in range(args.rounds):
        for model in args.models:
            for variant in variants:
                result = run(model, variant, args.images)
                samples.setdefault((model, variant), []).append(result)
                print(f"round {r + 1}/{args.rounds} {model} {variant}: "
                      f"{result['seconds']:.1f} s, {result['traces']} trace(s)", flush=True)
    print("\n| model | kres (s) | traces | Keras default (s) | traces | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for model in args.models:
        kres_s, keras_s = (statistics.median(r["seconds"] for r in samples[(model, v)])
                           for v in variants)
        kres_t, keras_t = (samples[(model, v)][0]["traces"] for v in variants)
        print(f"| {model} | {kres_s:.1f} | {kres_t} | {keras_s:.1f} | {keras_t} | "
              f"{keras_s / kres_s:.2f} |")


if __name__ == "__main__":
    main()
