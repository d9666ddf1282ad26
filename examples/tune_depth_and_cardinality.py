"""A keras-tuner search over ResNeXt depth and cardinality, through `kres.tune`.

Searches the ``resnext-cifar`` space (ResNeXt-11/20/29 of the ResNeXt paper's
CIFAR design; cardinality 1-32, width per group 4-64) with keras-tuner's
random search. Every trial trains with `kres.train`'s recipe (here the ResNet
paper's CIFAR recipe, shortened) and its own run directory; the search
resumes if interrupted (run the same command again). The report lands in
``--out``: ``trials.csv``, ``trials.md``, ``accuracy.png`` (validation
accuracy against depth, cardinality and MACs) and ``best.keras``.

    python examples/tune_depth_and_cardinality.py               # ~30 min on 2 CPU cores
    python examples/tune_depth_and_cardinality.py --smoke --out /tmp/t
"""

import argparse
import os

import kres
from kres import tuning


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--tuner", default="random", choices=tuning.TUNERS)
    parser.add_argument("--max-trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per trial")
    parser.add_argument("--subset", type=int, default=5000)
    parser.add_argument("--val-size", type=int, default=2000)
    parser.add_argument("--budget-mmacs", type=float, default=150.0,
                        help="networks over this many million MACs are not trained")
    parser.add_argument("--out", default="runs/tune-depth-cardinality")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.max_trials, args.epochs, args.subset, args.val_size = 2, 1, 256, 128
    return args


def main(argv=None):
    args = parse_args(argv)
    config = tuning.SearchConfig(
        space="resnext-cifar", dataset=args.dataset, tuner=args.tuner,
        max_trials=args.max_trials, max_epochs=args.epochs,
        depths=(11,) if args.smoke else None,
        cardinalities=(1, 2) if args.smoke else (1, 2, 4, 8, 16),
        widths_per_group=(4, 8) if args.smoke else None,
        recipe_overrides={"augment": "none", **({"batch_size": 64} if args.smoke else {})},
        budget_mmacs=args.budget_mmacs, subset=args.subset, val_size=args.val_size,
        data_dir=args.data_dir)
    rows = kres.tune(config, out_dir=args.out, verbose=0 if args.smoke else "auto")
    with open(os.path.join(args.out, "trials.md")) as f:
        print(f.read())
    return rows


if __name__ == "__main__":
    main()
