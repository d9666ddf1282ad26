"""The ResNet paper's CIFAR-10 recipe for ResNet-20, end to end (a GPU run).

He et al. 2015, Sec. 4.2: batch 128, SGD with momentum 0.9, weight decay
1e-4, learning rate 0.1 divided by 10 at 32k and 48k iterations, 64k
iterations (164 epochs of 45k images, 5k held out), 4-pixel pad, random 32x32
crop and horizontal flip. The paper reports 8.75% test error (91.25%
accuracy) for ResNet-20. This is `kres train` with the ``he2015-cifar``
recipe; it resumes when run again after an interruption, then exports the
best model for TF Serving.

CIFAR-10 is downloaded by TensorFlow Datasets, so the full run needs
internet once. ``--smoke`` runs the same code on a Fashion-MNIST subset for
one epoch, offline.

    python examples/cifar10_resnet20.py                 # ~1 h on one GPU
    python examples/cifar10_resnet20.py --smoke --out /tmp/c10
"""

import argparse
import os

import kres
from kres import training

PAPER_TEST_ERROR = 8.75  # He et al. 2015, Table 6, ResNet-20


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="cifar_resnet20")
    parser.add_argument("--out", default="runs/cifar10-resnet20")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--smoke", action="store_true")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.smoke:
        config = training.TrainConfig(args.model, "fashion_mnist", recipe="he2015-cifar",
                                    recipe_overrides={"epochs": 1, "batch_size": 64},
                                    model_overrides={"depths": (1, 1, 1)}, subset=256,
                                    val_size=128, data_dir=args.data_dir)
    else:
        config = training.TrainConfig(args.model, "cifar10", recipe="he2015-cifar",
                                    data_dir=args.data_dir)
    run_dir = os.path.join(args.out, "run")
    results = kres.train(config, run_dir=run_dir, verbose=2 if args.smoke else "auto")
    error = 100 * (1 - results["test_accuracy"])
    print(f"{config.model} on {config.dataset}: test error {error:.2f}% "
          f"(paper, CIFAR-10, full recipe: {PAPER_TEST_ERROR}%)")
    version = kres.export(os.path.join(run_dir, "best.keras"),
                                 os.path.join(args.out, "saved_model"))
    print(f"exported to {version}")
    return results


if __name__ == "__main__":
    main()
