"""The ResNeXt paper's claim: at equal complexity, more groups beat more width.

ResNeXt networks of cardinality 1, 2, 4 and 8 whose width per group is
chosen by `kres.tune`'s equal-complexity rule (the paper's: the template
block's parameters closest to cardinality 1 at width 64, which gives Table
2's 2x40d, 4x24d, 8x14d), each trained with several seeds, one recipe and
one budget by a grid search. The paper (Sec. 5.1, ImageNet, 100 epochs):
ResNeXt-50 32x4d 22.2% top-1 error against ResNet-50's 23.9% at the same
4.1 GFLOPs. The CPU default is a shortened stand-in, not the paper's
experiment: ResNeXt-11 (one block per stage) at 24 base planes per stage
(24, 48, 96; the paper's CIFAR ResNeXt has 64, 128, 256, ``--planes 64``)
on 3,000 Fashion-MNIST images for 15 epochs, three seeds per network.

Outputs in ``--out``: the search's report (``trials.md`` ...), and
``cardinality.md`` / ``cardinality.png``: validation error against
cardinality, the seeds' mean and range, with each network's width, MACs and
parameters.

    python examples/cardinality_vs_width.py                 # ~40 min on 2 CPU cores
    python examples/cardinality_vs_width.py --smoke --out /tmp/c
"""

import argparse
import os

import kres
from kres import tuning
from kres.models.blocks import bottleneck_width


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--cardinalities", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--depth", type=int, default=11, choices=(11, 20, 29),
                        help="ResNeXt depth (9n + 2)")
    parser.add_argument("--planes", type=int, default=24,
                        help="base planes of the first stage (doubled per stage; the paper: 64)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per network")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--subset", type=int, default=3000)
    parser.add_argument("--val-size", type=int, default=2000)
    parser.add_argument("--out", default="runs/cardinality-vs-width")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.cardinalities, args.epochs, args.subset, args.val_size = [1, 2], 1, 256, 128
        args.seeds = 2
    if args.planes < 1 or args.seeds < 1:
        parser.error(f"--planes and --seeds must be positive. Received: --planes "
                     f"{args.planes} --seeds {args.seeds}")
    return args


def error(accuracy):
    return 100 * (1 - accuracy)


def table(rows):
    lines = ["| cardinality | width per group | channels per group | MMACs | params | seeds | "
             "validation error, mean | sd | range |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        spread = ("", "")
        if r["seeds"] and r["seeds"] > 1:
            spread = (f"{100 * r['val_sd']:.2f}",
                      f"{error(r['val_max']):.2f} to {error(r['val_min']):.2f}%")
        lines.append(f"| {r['cardinality']} | {r['width_per_group']} | {r['group_channels']} | "
                     f"{r['mmacs']:,} | {r['params']:,} | {r['seeds']} | "
                     f"{error(r['best_val_accuracy']):.2f}% | {spread[0]} | {spread[1]} |")
    return "\n".join(lines)


def plot(rows, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    x = [r["cardinality"] for r in rows]
    mean = [error(r["best_val_accuracy"]) for r in rows]
    low = [m - error(r["val_max"]) if r["val_max"] is not None else 0
           for m, r in zip(mean, rows, strict=True)]
    high = [error(r["val_min"]) - m if r["val_min"] is not None else 0
            for m, r in zip(mean, rows, strict=True)]
    ax.errorbar(x, mean, yerr=[low, high], fmt="o-", capsize=4,
                label="mean of the seeds; bars: their range")
    for r, m in zip(rows, mean, strict=True):
        ax.annotate(f"{r['cardinality']}x{r['width_per_group']}d\n{r['mmacs']:.0f} MMACs",
                    (r["cardinality"], m), textcoords="offset points", xytext=(6, 6),
                    fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(x, [str(c) for c in x])
    ax.set_xlabel("cardinality (groups), at about equal MACs")
    ax.set_ylabel("best validation error (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    planes = args.planes
    config = tuning.SearchConfig(
        space="resnext-cifar", dataset=args.dataset, tuner="grid",
        max_trials=len(args.cardinalities), max_epochs=args.epochs, depths=(args.depth,),
        cardinalities=tuple(args.cardinalities), equal_complexity=True,
        model_overrides={"widths": (planes, 2 * planes, 4 * planes), "stem_width": planes},
        recipe="fast-cpu", recipe_overrides={"batch_size": 64, "learning_rate": 0.1},
        executions_per_trial=args.seeds, subset=args.subset, val_size=args.val_size,
        data_dir=args.data_dir)
    rows = kres.tune(config, out_dir=args.out, verbose=0 if args.smoke else "auto")
    done = sorted((r for r in rows if r["best_val_accuracy"] is not None),
                  key=lambda r: r["cardinality"])
    for r in done:
        r["group_channels"] = bottleneck_width(planes, 1, r["width_per_group"])
    title = (f"ResNeXt-{args.depth} at {planes} planes, {args.dataset}, {args.subset:,} images, "
             f"{args.epochs} epochs, {args.seeds} seeds per network")
    plot(done, os.path.join(args.out, "cardinality.png"), title)
    text = f"{title}\n\n{table(done)}\n"
    with open(os.path.join(args.out, "cardinality.md"), "w") as f:
        f.write(text)
    print(text)
    return done


if __name__ == "__main__":
    main()
