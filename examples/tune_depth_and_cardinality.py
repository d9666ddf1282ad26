"""A keras-tuner search over ResNeXt depth and cardinality in a CPU budget, through `kres.tune`.

Searches the ``resnext-cifar`` space (ResNeXt-11/20/29 of the ResNeXt
paper's CIFAR design, 9n+2 layers) over depth and cardinality (1, 2, 4, 8),
the width per group set by the paper's equal-complexity rule, with
keras-tuner's random search: 20 minutes on the first 3,000 Fashion-MNIST
training images, validated on 2,000 others, 20 epochs and two seeds per
network. The networks have 16 base planes per stage (16, 32, 64: the CIFAR
ResNets' width, as He et al.'s bottleneck ResNet-164) rather than the
paper's 64, so that an epoch takes 7 to 10 s on two cores. Every trial
trains with the ``fast-cpu`` recipe, its schedule spanning the trial's
epochs (a continued trial's goes on where it was), in its own run
directory; the search resumes if interrupted (run the same command
again). The report lands in ``--out``: ``trials.csv``, ``trials.md``
(the ranking with the seeds' spread, and what the search did with its
time), ``accuracy.png`` and ``best.keras``.

    python examples/tune_depth_and_cardinality.py               # 20 min on 2 CPU cores
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
    parser.add_argument("--time-budget", type=float, default=20.0, metavar="MINUTES",
                        help="start no trial that cannot finish within this many minutes")
    parser.add_argument("--max-trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=20,
                        help="epochs per trial (Hyperband: the most a trial gets)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per network")
    parser.add_argument("--planes", type=int, default=16,
                        help="base planes of the first stage (doubled per stage; the paper: 64)")
    parser.add_argument("--subset", type=int, default=3000)
    parser.add_argument("--val-size", type=int, default=2000)
    parser.add_argument("--out", default="runs/tune-depth-cardinality")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.max_trials, args.epochs, args.subset, args.val_size = 2, 1, 256, 128
        args.seeds = 1
    return args


def main(argv=None):
    args = parse_args(argv)
    planes = args.planes
    config = tuning.SearchConfig(
        space="resnext-cifar", dataset=args.dataset, tuner=args.tuner,
        max_trials=args.max_trials, max_epochs=args.epochs,
        depths=(11,) if args.smoke else None,
        cardinalities=(1, 2) if args.smoke else (1, 2, 4, 8), equal_complexity=True,
        model_overrides={"widths": (planes, 2 * planes, 4 * planes), "stem_width": planes},
        recipe="fast-cpu", recipe_overrides={"batch_size": 64, "learning_rate": 0.1},
        time_budget=args.time_budget, executions_per_trial=args.seeds,
        subset=args.subset, val_size=args.val_size, data_dir=args.data_dir)
    rows = kres.tune(config, out_dir=args.out, verbose=0 if args.smoke else "auto")
    with open(os.path.join(args.out, "trials.md")) as f:
        print(f.read())
    return rows


if __name__ == "__main__":
    main()
