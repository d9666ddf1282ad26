"""The ResNeXt paper's claim: at equal complexity, more groups beat more width.

ResNeXt networks of cardinality 1, 2, 4 and 8 whose width per group is
chosen by `kres.tune`'s equal-complexity rule (the paper's: the template
block's parameters closest to cardinality 1 at width 64, which gives Table
2's 2x40d, 4x24d, 8x14d), trained with one recipe and one budget by a grid
search. The
paper (Sec. 5.1, ImageNet, 100 epochs): ResNeXt-50 32x4d 22.2% top-1 error
against ResNet-50's 23.9% at the same 4.1 GFLOPs. The CPU default here is a
ResNeXt-11 (one block per stage) on a Fashion-MNIST subset for a few epochs:
a shortened stand-in, not the paper's experiment.

Outputs in ``--out``: the search's report (``trials.md`` ...), and
``cardinality.md`` / ``cardinality.png``: validation error against
cardinality, with each network's width, MACs and parameters.

    python examples/cardinality_vs_width.py                 # ~45 min on 2 CPU cores
    python examples/cardinality_vs_width.py --smoke --out /tmp/c
"""

import argparse
import os

import kres
from kres import tuning


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--cardinalities", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--depth", type=int, default=11, choices=(11, 20, 29),
                        help="ResNeXt depth (9n + 2)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--subset", type=int, default=5000)
    parser.add_argument("--val-size", type=int, default=2000)
    parser.add_argument("--out", default="runs/cardinality-vs-width")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.cardinalities, args.epochs, args.subset, args.val_size = [1, 2], 1, 256, 128
    return args


def table(rows):
    lines = ["| cardinality | width per group | MMACs | params | best validation error |",
             "|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['cardinality']} | {r['width_per_group']} | {r['mmacs']:,} | "
                     f"{r['params']:,} | {100 * (1 - r['best_val_accuracy']):.2f}% |")
    return "\n".join(lines)


def plot(rows, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["cardinality"] for r in rows],
            [100 * (1 - r["best_val_accuracy"]) for r in rows], "o-")
    for r in rows:
        ax.annotate(f"{r['cardinality']}x{r['width_per_group']}d\n{r['mmacs']:.0f} MMACs",
                    (r["cardinality"], 100 * (1 - r["best_val_accuracy"])),
                    textcoords="offset points", xytext=(4, 6), fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("cardinality (groups), at about equal MACs")
    ax.set_ylabel("best validation error (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    config = tuning.SearchConfig(
        space="resnext-cifar", dataset=args.dataset, tuner="grid",
        max_trials=len(args.cardinalities), max_epochs=args.epochs, depths=(args.depth,),
        cardinalities=tuple(args.cardinalities), equal_complexity=True,
        recipe_overrides={"augment": "none", **({"batch_size": 64} if args.smoke else {})},
        subset=args.subset, val_size=args.val_size, data_dir=args.data_dir)
    rows = kres.tune(config, out_dir=args.out, verbose=0 if args.smoke else "auto")
    done = sorted((r for r in rows if r["best_val_accuracy"] is not None),
                  key=lambda r: r["cardinality"])
    title = (f"ResNeXt-{args.depth}, {args.dataset}, {args.subset:,} images, "
             f"{args.epochs} epochs per network")
    plot(done, os.path.join(args.out, "cardinality.png"), title)
    text = f"{title}\n\n{table(done)}\n"
    with open(os.path.join(args.out, "cardinality.md"), "w") as f:
        f.write(text)
    print(text)
    return done


if __name__ == "__main__":
    main()
