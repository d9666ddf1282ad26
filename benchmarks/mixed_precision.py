"""Test accuracy and epoch time of a kres network in float32 and mixed precision, side by side.

Trains ``--model`` (default ``cifar_resnet20``) on Fashion-MNIST once per
precision and seed, in one process, and prints each run's test accuracy and
seconds per epoch, then each precision's mean accuracy and its difference
from float32, and its epoch time over float32's:

- data: the four IDX files of Debian's ``dataset-fashion-mnist`` (or
  ``--data-dir``), read by `kres.data.fashion_mnist.read_fashion_mnist` without
  TensorFlow; pixels scaled to [0, 1] and standardised with the training
  images' mean and standard deviation; no augmentation; the 10,000 test
  images evaluated once, at the end of each run;
- training: ``model.fit`` on NumPy arrays, compiled by
  `kres.training.recipes.compile_model` with a kres recipe (default ``fast-cpu``: its
  warmup and cosine schedule, Nesterov SGD, weight decay, label smoothing,
  zero-initialised last batch norms) and ``--epochs`` epochs;
- precisions: ``float32``, ``mixed_float16`` (Keras wraps the optimizer in
  its ``LossScaleOptimizer``) and ``mixed_bfloat16``, the builders' ``dtype``.

The first epoch includes compilation and is reported apart. The script runs
on any Keras backend: on a GPU machine without TensorFlow,
``KERAS_BACKEND=jax`` (kres's networks and recipes are plain Keras).

    python benchmarks/mixed_precision.py --subset 2000 --epochs 2   # a CPU smoke run
    KERAS_BACKEND=jax python benchmarks/mixed_precision.py --epochs 8 \\
        --runs float32:0 float32:1 mixed_float16:0 mixed_float16:1 mixed_bfloat16:0
"""

import argparse
import json
import os
import statistics
import sys

import machine

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def parse_run(text):
    """``"mixed_float16:1"`` -> ``("mixed_float16", 1)``."""
    precision, _, seed = text.partition(":")
    if precision not in PRECISIONS or not seed.isdigit():
        raise argparse.ArgumentTypeError(
            f"a run is PRECISION:SEED with PRECISION one of {', '.join(PRECISIONS)} and a "
            f"non-negative integer seed. Received: {text!r}")
    return precision, int(seed)


def load_data(data_dir, subset):
    from kres.data.fashion_mnist import read_fashion_mnist

    splits = read_fashion_mnist(data_dir)
    (x, y), (x_test, y_test) = splits["train"], splits["test"]
    if subset:
        x, y = x[:subset], y[:subset]
    x = x.astype("float32") / 255
    mean, std = float(x.mean()), float(x.std())
    return ((x - mean) / std, y), ((x_test.astype("float32") / 255 - mean) / std, y_test)


def train_once(model_name, recipe, precision, seed, data, verbose):
    import keras

    import kres
    from kres.training.fit import EpochStats
    from kres.training.recipes import compile_model, spec_overrides

    (x, y), (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    model = kres.build_model(model_name, classes=10, input_shape=x.shape[1:], dtype=precision,
                             **spec_overrides(recipe, model_name))
    compile_model(model, recipe, steps_per_epoch=len(x) // recipe.batch_size, num_classes=10)
    history = model.fit(x, keras.utils.to_categorical(y, 10), batch_size=recipe.batch_size,
                        epochs=recipe.epochs, shuffle=True, verbose=verbose,
                        callbacks=[EpochStats(len(x))]).history
    loss, accuracy = model.evaluate(x_test, keras.utils.to_categorical(y_test, 10),
                                    batch_size=500, verbose=0)[:2]
    scale = getattr(model.optimizer, "dynamic_scale", None)
    times = history["epoch_time"]
    return {"precision": precision, "seed": seed, "test_accuracy": float(accuracy),
            "test_loss": float(loss), "train_loss": float(history["loss"][-1]),
            "optimizer": type(model.optimizer).__name__,
            "loss_scale": None if scale is None else float(keras.ops.convert_to_numpy(scale)),
            "first_epoch_s": times[0], "epoch_s": statistics.median(times[1:] or times)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="cifar_resnet20")
    parser.add_argument("--recipe", default="fast-cpu")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--subset", type=int, default=0,
                        help="the first N training images only (0: all 60,000)")
    parser.add_argument("--runs", type=parse_run, nargs="+",
                        default=[parse_run(f"{p}:0") for p in PRECISIONS],
                        metavar="PRECISION:SEED", help="the runs, in this order")
    parser.add_argument("--data-dir", default=None,
                        help="the Fashion-MNIST IDX .gz files (default: Debian's folder)")
    parser.add_argument("--out", default=None, help="also write the results here (JSON)")
    parser.add_argument("--verbose", type=int, default=2, help="model.fit's verbose")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1. Received: {args.epochs}")
    if args.subset < 0:
        parser.error(f"--subset must be 0 (all) or positive. Received: {args.subset}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from kres.data.fashion_mnist import DEBIAN_FASHION_MNIST
    from kres.rundir import write_json
    from kres.training.recipes import resolve_recipe

    recipe = resolve_recipe(args.recipe, epochs=args.epochs)  # checked before any work
    data = load_data(args.data_dir or DEBIAN_FASHION_MNIST, args.subset)
    import keras

    print(f"{machine.describe()}; Keras {keras.__version__}")
    print(f"{args.model}, recipe {args.recipe} for {args.epochs} epochs, batch "
          f"{recipe.batch_size}, {len(data[0][0]):,} training images, no augmentation",
          flush=True)
    results = []
    for precision, seed in args.runs:
        print(f"\n{precision}, seed {seed}", flush=True)
        results.append(train_once(args.model, recipe, precision, seed, data, args.verbose))
        print(json.dumps(results[-1]), flush=True)
        if args.out:  # after every run, atomically: a cut-short script keeps what it finished
            write_json(args.out, {"model": args.model, "recipe": args.recipe,
                                  "epochs": args.epochs, "machine": machine.describe(),
                                  "runs": results})
    print("\n| precision | seed | test accuracy | train loss | first epoch (s) | epoch (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['precision']} | {r['seed']} | {r['test_accuracy']:.2%} | "
              f"{r['train_loss']:.4f} | {r['first_epoch_s']:.1f} | {r['epoch_s']:.2f} |")
    by = {p: [r for r in results if r["precision"] == p] for p in PRECISIONS}
    base = by["float32"]
    print("\n| precision | runs | mean test accuracy | spread (max - min) | vs float32 "
          "| epoch time / float32's |")
    print("|---|---:|---:|---:|---:|---:|")
    for precision, runs in by.items():
        if not runs:
            continue
        accuracies = [r["test_accuracy"] for r in runs]
        mean = statistics.mean(accuracies)
        gap = (f"{(mean - statistics.mean(r['test_accuracy'] for r in base)) * 100:+.2f} pt"
               if base else "")
        epoch = statistics.median(r["epoch_s"] for r in runs)
        ratio = f"{epoch / statistics.median(r['epoch_s'] for r in base):.2f}" if base else ""
        print(f"| {precision} | {len(runs)} | {mean:.2%} | "
              f"{(max(accuracies) - min(accuracies)) * 100:.2f} pt | {gap} | {ratio} |")


if __name__ == "__main__":
    sys.exit(main())
