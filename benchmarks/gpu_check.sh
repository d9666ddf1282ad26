#!/usr/bin/env bash
# The GPU check: kres on Keras's JAX backend on a machine without TensorFlow.
#
#   benchmarks/gpu_check.sh            # on the GPU machine: the full check (about 10 minutes)
#   benchmarks/gpu_check.sh --smoke    # here, on the CPU: the same steps, tiny
#
# The GPU machine has Python, JAX, NumPy, Pillow, Matplotlib and h5py but no
# package registry: the wheels it lacks (Keras, keras-tuner and their
# pure-Python or cp312 dependencies) travel in benchmarks/gpu_carry/wheels,
# and Fashion-MNIST's four IDX files in benchmarks/gpu_carry/fashion-mnist;
# `make gpu-carry` fills that folder (gitignored) here. Then, in one call:
# kres train (ResNet-20 on Fashion-MNIST), kres tune (a search over depth and
# cardinality), each timed; it prints what it measured and writes
# $OUT/gpu_check.json (OUT defaults to ./gpu_check_out).
set -euo pipefail
cd "$(dirname "$0")/.."
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
PYTHON=${PYTHON:-python3}
CARRY=benchmarks/gpu_carry
OUT=${OUT:-gpu_check_out}
mkdir -p "$OUT"
export KERAS_BACKEND=jax

# Keras, keras-tuner and simplejpeg (image folders' JPEGs) where the machine lacks
# them (never from the network).
if ! "$PYTHON" -c "import keras, keras_tuner, simplejpeg" 2>/dev/null; then
    "$PYTHON" -m pip install --quiet --no-index --find-links "$CARRY/wheels" \
        keras keras-tuner six simplejpeg
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DATA="$CARRY/fashion-mnist"
[ -d "$DATA" ] || DATA=/usr/share/datasets/fashion-mnist

if [ "$SMOKE" = 1 ]; then
    TRAIN=(--recipe fast-cpu --epochs 3 --subset 1024 --val-size 256 --set depths=1,1,1)
    TUNE=(--space resnext-cifar --depths 11 --cardinalities 1,2 --tuner random
          --max-trials 2 --max-epochs 1 --subset 512 --val-size 256)
else
    # The fast recipe at the GPU's batch: the goal is 94.0% in under 2 minutes.
    TRAIN=(--recipe fast-cpu --epochs 20)
    # At least 8 networks of depth x cardinality in under 5 minutes.
    TUNE=(--space resnext-cifar --depths 11,20,29 --cardinalities 1,2,4,8 --tuner random
          --max-trials 8 --max-epochs 3 --subset 20000)
fi

"$PYTHON" - "$OUT" "$SMOKE" <<'PY' > "$OUT/device.txt"
import sys, jax
print(f"JAX {jax.__version__}, devices {jax.devices()}, smoke {sys.argv[2]}")
PY
cat "$OUT/device.txt"

start=$SECONDS
"$PYTHON" -m kres.cli train --model cifar_resnet20 --dataset fashion_mnist --data-dir "$DATA" \
    "${TRAIN[@]}" --out "$OUT/train" --quiet
train_seconds=$((SECONDS - start))
start=$SECONDS
"$PYTHON" -m kres.cli tune --dataset fashion_mnist --data-dir "$DATA" "${TUNE[@]}" \
    --out "$OUT/tune" --quiet
tune_seconds=$((SECONDS - start))

"$PYTHON" - "$OUT" "$train_seconds" "$tune_seconds" <<'PY'
import json, os, sys
out, train_seconds, tune_seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(os.path.join(out, "train", "results.json")) as f:
    train = json.load(f)
with open(os.path.join(out, "tune", "summary.json")) as f:
    tune = json.load(f)
with open(os.path.join(out, "tune", "trials.csv")) as f:
    trials = sum(1 for _ in f) - 1
with open(os.path.join(out, "device.txt")) as f:
    device = f.read().strip()
record = {"device": device,
          "train": {"wall_seconds": train_seconds, "test_accuracy": train["test_accuracy"],
                    "precision": train["precision"], "epochs": train["epochs_run"],
                    "train_images_per_second": train["train_images_per_second"],
                    "epoch_seconds": train["epoch_times"]},
          "tune": {"wall_seconds": tune_seconds, "trials": trials,
                   "search_minutes": tune["minutes"]}}
with open(os.path.join(out, "gpu_check.json"), "w") as f:
    json.dump(record, f, indent=1)
print(json.dumps(record, indent=1))
PY
