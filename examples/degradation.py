"""The ResNet paper's degradation experiment (He et al. 2015, Fig. 6).

Plain networks of 20, 32 and 56 layers against the residual networks of the
same depths, trained with one recipe and one budget. The paper's finding:
the deeper *plain* network has the higher training error (it is harder to
optimise, not overfitting), while the deeper *residual* network has the lower.
The plain nets are kres's ``cifar_plain*`` rows: the same blocks as
``cifar_resnet*`` with the shortcut switched off, so like is compared with like.

The paper trains on CIFAR-10 for 64k iterations with augmentation. The
default here is what a 2-core CPU finishes in under an hour: Fashion-MNIST
(offline), a fixed subset, a few epochs of the same step schedule and no
augmentation (so the training error is measured on the training images
themselves). On a GPU, ``--dataset cifar10 --epochs 164 --subset 0
--augment crop_flip`` is the paper's experiment. At the CPU budget the plain
nets degrade as in the paper but the deeper residual nets also train worse:
they start slowly, and neither 500 iterations, nor 3,000 with the paper's
augmentation (``--epochs 48 --augment crop_flip``: 31 minutes for the
residual 20/56 pair in bfloat16), nor 12,000 (``--epochs 192``: 2.2 hours
for that pair, 20 minutes of it sharing the CPU; both nets under 1%
training error) makes them overtake on 8,000 images, and neither does the
whole training split at 4,530 iterations (``--subset 0 --epochs 10``: 51
minutes for the four 20/56 networks in bfloat16 with AMX; the plain nets
degrade there too). docs/results.md has the runs and the measurements.

Outputs in ``--out``: one run directory per network (``kres.train``'s),
``degradation.png`` (training error thin, validation error bold, per epoch,
plain nets left and residual nets right, as in the paper's figure) and
``degradation.md`` (the table).

    python examples/degradation.py  # the CPU experiment (the 20/56 pairs: 10 min in bf16)
    python examples/degradation.py --smoke --out /tmp/d  # seconds: the test suite's run
"""

import argparse
import csv
import json
import os
import time

import kres
from kres import training


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--depths", type=int, nargs="+", default=[20, 32, 56],
                        help="network depths, each 6n + 2")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--subset", type=int, default=8000,
                        help="training examples (0: the whole training split)")
    parser.add_argument("--val-size", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--augment", default="none",
                        help="training augmentation (kres.data.pipeline.AUGMENTATIONS): none, or "
                             "crop_flip for the paper's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/degradation")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny run that checks the script end to end")
    args = parser.parse_args(argv)
    if args.smoke:
        args.depths, args.epochs, args.subset, args.val_size = [8], 2, 256, 128
        args.batch_size = 64
    for depth in args.depths:
        if depth < 8 or (depth - 2) % 6:
            parser.error(f"--depths must be 6n + 2 with n >= 1. Received: {depth}")
    return args


def run(args):
    """Trains every network; returns ``{(kind, depth): (history rows, results)}``."""
    runs = {}
    for depth in args.depths:
        n = (depth - 2) // 6
        for kind in ("plain", "resnet"):
            config = training.TrainConfig(
                model=f"cifar_{kind}20", dataset=args.dataset,
                model_overrides={"depths": (n, n, n)},
                recipe_overrides={"epochs": args.epochs, "batch_size": args.batch_size,
                                  "augment": args.augment},
                subset=args.subset or None, val_size=args.val_size, seed=args.seed,
                data_dir=args.data_dir)
            run_dir = os.path.join(args.out, f"{kind}{depth}")
            if os.path.isfile(os.path.join(run_dir, "results.json")):
                print(f"{kind}-{depth}: finished already in {run_dir}", flush=True)
            else:
                print(f"training {kind}-{depth} -> {run_dir}", flush=True)
                start = time.time()
                kres.train(config, run_dir=run_dir)
                print(f"{kind}-{depth}: {time.time() - start:.0f} s", flush=True)
            with open(os.path.join(run_dir, "history.csv")) as f:
                history = list(csv.DictReader(f))
            with open(os.path.join(run_dir, "results.json")) as f:
                runs[kind, depth] = history, json.load(f)
    return runs


def error(row, key):
    return 100.0 * (1.0 - float(row[key]))


def plot(runs, depths, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    colors = dict(zip(depths, plt.cm.viridis([0.1, 0.45, 0.8, 0.95][:len(depths)])))
    for ax, kind, name in zip(axes, ("plain", "resnet"), ("plain", "ResNet")):
        for depth in depths:
            history = runs[kind, depth][0]
            epochs = [int(r["epoch"]) + 1 for r in history]
            ax.plot(epochs, [error(r, "accuracy") for r in history], "--", lw=1,
                    color=colors[depth])
            ax.plot(epochs, [error(r, "val_accuracy") for r in history], "-", lw=2.2,
                    color=colors[depth], label=f"{name}-{depth}")
        ax.set_xlabel("epoch")
        ax.set_title(f"{name} networks")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("error (%): dashed training, bold validation")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(runs, depths):
    lines = ["| network | params | training error (last epoch) | validation error "
             "(last epoch) | test error | train time |",
             "|---|---:|---:|---:|---:|---:|"]
    for kind in ("plain", "resnet"):
        for depth in depths:
            history, results = runs[kind, depth]
            lines.append(
                f"| {kind}-{depth} | {results['params']:,} | "
                f"{error(history[-1], 'accuracy'):.2f}% | "
                f"{error(history[-1], 'val_accuracy'):.2f}% | "
                f"{100 * (1 - results['test_accuracy']):.2f}% | "
                f"{sum(results['epoch_times']) / 60:.1f} min |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    runs = run(args)
    subset = f"{args.subset:,}-image subset" if args.subset else "full training split"
    title = (f"{args.dataset}, {subset}, {args.epochs} epochs, batch {args.batch_size}, "
             f"augmentation {args.augment}")
    plot(runs, args.depths, os.path.join(args.out, "degradation.png"), title)
    text = f"{title}\n\n{table(runs, args.depths)}\n"
    with open(os.path.join(args.out, "degradation.md"), "w") as f:
        f.write(text)
    print(text)
    return runs


if __name__ == "__main__":
    main()
