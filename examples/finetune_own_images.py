"""Fine-tuning a pretrained kres network on a folder of your own images, against training
the same network from scratch on the same folder and budget.

No ImageNet weights are reachable offline, so the "pretrained" network is a
kres CIFAR ResNet-20 trained on the Fashion-MNIST classes 0-4 (T-shirt,
trouser, pullover, dress, coat). The "own images" are a folder of PNGs of the
other five classes (sandal, shirt, sneaker, bag, ankle boot), a few hundred
per class, written as a user's folder would be (``train/<class>/*.png``, and
``test/<class>/*.png`` from Fashion-MNIST's test set). Then:

- fine-tuned: ``kres train --weights pretrained/best.keras --recipe transfer``
  (the new classifier alone, then the whole network at a lower rate);
- from scratch: the same network, epochs and batch size on the same folder,
  with the ResNet paper's learning rate on a cosine schedule.

Both are tested on the folder's test images. The printed table (accuracy,
time; mean and spread over ``--seeds``) is what docs/results.md records.
``--optimizer`` (with ``--lr``, ``--frozen-lr``, ``--weight-decay``) changes
the fine-tuned run's optimizer, to measure which one the transfer recipe
should use; ``--only fine-tuned`` skips the runs from scratch.

    python examples/finetune_own_images.py        # 5 minutes on a 2-core AMD EPYC (docs/results.md)
    python examples/finetune_own_images.py --only fine-tuned --seeds 0 1 2 \
        --optimizer sgd --lr 0.03 --frozen-lr 0.3 --weight-decay 5e-5
    python examples/finetune_own_images.py --only fine-tuned --seeds 0 1 2 --lr auto
    python examples/finetune_own_images.py --smoke --out /tmp/f
"""

import argparse
import json
import os
import time

PRETRAIN_CLASSES = (0, 1, 2, 3, 4)
OWN_CLASSES = {5: "sandal", 6: "shirt", 7: "sneaker", 8: "bag", 9: "ankle_boot"}
KINDS = ("fine-tuned", "from-scratch")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=300,
                        help="training images per class in the folder (default 300)")
    parser.add_argument("--test-per-class", type=int, default=1000,
                        help="test images per class in the folder (default 1000, all)")
    parser.add_argument("--pretrain-epochs", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=12,
                        help="epochs of each run on the folder (default 12)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="one run of each kind per seed (default 0)")
    parser.add_argument("--only", choices=KINDS, default=None,
                        help="run one kind only (default both)")
    parser.add_argument("--optimizer", default=None,
                        help="the fine-tuned run's optimizer (default the transfer recipe's)")
    parser.add_argument("--lr", type=_rate, default=None,
                        help="the fine-tuned run's learning rate after the frozen phase, or "
                             "'auto': each run's own range test (kres lr-find) chooses it")
    parser.add_argument("--frozen-lr", type=float, default=None,
                        help="the fine-tuned run's learning rate in the frozen phase")
    parser.add_argument("--weight-decay", type=float, default=None,
                        help="the fine-tuned run's weight decay")
    parser.add_argument("--out", default="runs/finetune-own-images")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.per_class, args.test_per_class, args.pretrain_epochs, args.epochs = 16, 8, 1, 2
    return args


def _rate(text):
    try:
        return text if text == "auto" else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a number or 'auto'. Received: {text!r}") from None


def _arrays(data_dir, split):
    import tensorflow_datasets as tfds

    import kres

    kres.data.ensure_prepared("fashion_mnist", data_dir)
    ds = tfds.load("fashion_mnist", split=split, data_dir=data_dir, as_supervised=True,
                   batch_size=-1)
    images, labels = tfds.as_numpy(ds)
    return images, labels


def write_folder(root, images, labels, split, per_class):
    """``root/<split>/<class>/<n>.png``, the first `per_class` images of each own class."""
    import tensorflow as tf

    for label, name in OWN_CLASSES.items():
        folder = os.path.join(root, split, name)
        os.makedirs(folder, exist_ok=True)
        for i, image in enumerate(images[labels == label][:per_class]):
            tf.io.write_file(os.path.join(folder, f"{i:05d}.png"), tf.io.encode_png(image))


def main(argv=None):
    args = parse_args(argv)
    import kres

    data_dir = args.data_dir or kres.data.data_dir_for("fashion_mnist")
    x_train, y_train = _arrays(data_dir, "train")
    x_test, y_test = _arrays(data_dir, "test")
    folder = os.path.join(args.out, "own_images")
    if not os.path.isdir(folder):
        write_folder(folder, x_train, y_train, "train", args.per_class)
        write_folder(folder, x_test, y_test, "test", args.test_per_class)

    # The pretrained network: the other five classes, all their training images.
    keep, keep_test = y_train < 5, y_test < 5
    limit = 500 if args.smoke else None
    pretrain = kres.data.from_arrays(x_train[keep][:limit], y_train[keep][:limit],
                                    x_test[keep_test], y_test[keep_test], val_size=0.1,
                                    name="fashion_mnist_0-4")
    small = {"model_overrides": {"depths": (1, 1, 1)}, "batch_size": 16} if args.smoke else {}
    pretrained_dir = os.path.join(args.out, "pretrained")
    if not os.path.isfile(os.path.join(pretrained_dir, "results.json")):
        kres.train("cifar_resnet20", pretrain.name, data=pretrain, run_dir=pretrained_dir,
                   recipe="he2015-cifar", schedule="cosine", epochs=args.pretrain_epochs,
                   augment="none", **small)
    weights = os.path.join(pretrained_dir, "best.keras")

    tuned = {name: value for name, value in (
        ("optimizer", args.optimizer), ("learning_rate", args.lr),
        ("frozen_learning_rate", args.frozen_lr), ("weight_decay", args.weight_decay))
        if value is not None}
    settings = {
        "fine-tuned": dict(weights=weights, recipe="transfer", **tuned,
                           **({"frozen_epochs": 1} if args.smoke else {})),
        "from-scratch": dict(recipe="he2015-cifar", schedule="cosine", batch_size=64)}
    # Runs of another optimizer or rate go to their own folders.
    label = "-".join(f"{name}{value}" for name, value in tuned.items())
    rows = {}
    for kind in [args.only] if args.only else KINDS:
        runs = []
        for seed in args.seeds:
            run_dir = os.path.join(args.out, "-".join(
                filter(None, [kind, label if kind == "fine-tuned" else "", f"seed{seed}"])))
            start = time.perf_counter()
            results = kres.train("cifar_resnet20", folder, run_dir=run_dir, epochs=args.epochs,
                                 image_size=28, channels=1, seed=seed,
                                 **{**settings[kind], **small})
            runs.append({"seed": seed, "test_accuracy": results["test_accuracy"],
                         **({"learning_rate": results["lr_find_learning_rate"]}
                            if "lr_find_learning_rate" in results else {}),
                         "best_val_accuracy": results["best_val_accuracy"],
                         "seconds": time.perf_counter() - start,
                         "train_examples": results["train_examples"], "run_dir": run_dir})
        rows[kind] = {"settings": {k: v for k, v in settings[kind].items() if k != "weights"},
                      "runs": runs, **{f"{key}_{stat}": value for key in (
                          "test_accuracy", "best_val_accuracy")
                          for stat, value in _stats([run[key] for run in runs]).items()}}
    print(f"\n{'':<14}{'test accuracy':>22}{'best val':>22}{'seconds':>9}   seeds "
          f"{' '.join(map(str, args.seeds))}")
    for kind, row in rows.items():
        print(f"{kind:<14}{_mean_spread(row, 'test_accuracy'):>22}"
              f"{_mean_spread(row, 'best_val_accuracy'):>22}"
              f"{sum(run['seconds'] for run in row['runs']) / len(row['runs']):>9.0f}")
    # One file per set of runs: a later call with other settings or --only adds its own.
    name = "-".join(filter(None, ["comparison", args.only, label])) + ".json"
    with open(os.path.join(args.out, name), "w") as f:
        json.dump(rows, f, indent=2)
    return rows


def _stats(values):
    return {"mean": sum(values) / len(values), "spread": max(values) - min(values)}


def _mean_spread(row, key):
    return f"{row[key + '_mean']:.2%} (spread {row[key + '_spread'] * 100:.2f})"


if __name__ == "__main__":
    main()
