"""Multi-label classification from a CSV file of labels: two Fashion-MNIST items side by
side, trained, exported and served.

Each image is two real Fashion-MNIST items side by side (28x56 pixels) and
is labelled with both their classes (one class when both items are of the
same one): a folder of PNGs (``train/`` from Fashion-MNIST's training
images, ``test/`` from its test images) and a ``labels.csv`` of
``path,label1;label2`` rows, as a user with a spreadsheet of labels has.
Then, as a user would:

- ``kres train --dataset FOLDER --labels FOLDER/labels.csv --augment crop_flip``
  (several labels on a row make the run multi-label: sigmoid outputs, binary
  cross-entropy summed over the classes, the best model by validation PR AUC,
  the test's mean average precision and F1 at the threshold; ``crop_flip``
  trains on the whole pair, where a folder's default ImageNet crop would cut
  its two items in half);
- ``kres export`` of the run (the threshold travels in the model);
- the test images sent to the SavedModel as PNG bytes: its
  ``predicted_labels`` against each image's labels, and how many two-label
  images were served both.

The printed lines (and ``results.json`` in ``--out``) are what
docs/results.md records.

    python examples/multi_label_pairs.py      # ~20 minutes on a 2-core AMD EPYC (docs/results.md)
    python examples/multi_label_pairs.py --smoke --out /tmp/pairs
"""

import argparse
import json
import os
import time

NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
         "bag", "ankle boot")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-images", type=int, default=12000,
                        help="two-item training images (default 12,000)")
    parser.add_argument("--test-images", type=int, default=2000,
                        help="two-item test images (default 2,000)")
    parser.add_argument("--model", default="cifar_resnet20")
    parser.add_argument("--recipe", default="small-cpu")
    parser.add_argument("--epochs", type=int, default=None,
                        help="override the recipe's epochs")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--augment", default="crop_flip",
                        help="the training augmentation (default crop_flip: the whole pair "
                             "squeezed to the input, padded, cropped and flipped; an image "
                             "folder's own default, imagenet, crops at random in training and "
                             "the centre in evaluation, and cuts the two items in half)")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/multi-label-pairs")
    parser.add_argument("--data-dir", default=None, help="unused; the IDX files are read")
    parser.add_argument("--smoke", action="store_true",
                        help="a few hundred images, two epochs, a narrow network")
    return parser.parse_args(argv)


def write_folder(root, counts, seed=0):
    """The folder: ``train/`` and ``test/`` PNGs of two items each, and labels.csv."""
    import numpy as np
    from PIL import Image

    from kres.data.fashion_mnist import read_fashion_mnist

    splits = read_fashion_mnist()
    rng = np.random.default_rng(seed)
    rows = ["path,labels"]
    for split, count in counts.items():
        x, y = splits[split]
        os.makedirs(os.path.join(root, split), exist_ok=True)
        for i in range(count):
            a, b = rng.integers(0, len(x), 2)
            path = f"{split}/{i:05d}.png"
            Image.fromarray(np.concatenate([x[a, :, :, 0], x[b, :, :, 0]], axis=1)).save(
                os.path.join(root, path))
            rows.append(f"{path},{';'.join(sorted({NAMES[y[a]], NAMES[y[b]]}))}")
    path = os.path.join(root, "labels.csv")
    with open(path, "w") as f:
        f.write("\n".join(rows) + "\n")
    return path


def main(argv=None):
    args = parse_args(argv)
    import numpy as np
    import tensorflow as tf

    import kres
    from kres.training.preparation import load_data

    if args.smoke:
        args.train_images, args.test_images, args.epochs = 640, 128, args.epochs or 2
    folder = os.path.join(args.out, "pairs")
    labels = os.path.join(folder, "labels.csv")
    if not os.path.isfile(labels):
        labels = write_folder(folder, {"train": args.train_images, "test": args.test_images},
                              seed=args.seed)
    run_dir = os.path.join(args.out, f"{args.model}-{args.recipe}-{args.augment}-seed{args.seed}")
    settings = dict(model_overrides={"depths": (1, 1, 1)}) if args.smoke else {}
    if args.epochs:
        settings["epochs"] = args.epochs
    start = time.perf_counter()
    if not os.path.isfile(os.path.join(run_dir, "results.json")):
        kres.train(args.model, folder, labels=labels, recipe=args.recipe, run_dir=run_dir,
                   image_size=args.image_size, channels=1, threshold=args.threshold,
                   augment=args.augment, seed=args.seed, verbose=2, **settings)
    minutes = (time.perf_counter() - start) / 60
    with open(os.path.join(run_dir, "results.json")) as f:
        results = json.load(f)
    export = os.path.join(args.out, "saved_models", "pairs")
    version = kres.export(run_dir, export)

    data = load_data(folder, labels=labels, channels=1)
    names = np.array(data.class_names)
    served_right = both = both_right = 0
    examples = []
    for images, truth in data.test.batch(256):
        encoded = [tf.io.encode_png(image).numpy() for image in images.numpy()]
        served = kres.serving.predict(version, encoded)["predicted_labels"]
        for row, answer in zip(truth.numpy(), served):
            expected, answer = ";".join(names[row > 0.5]), answer.decode()
            served_right += answer == expected
            if row.sum() == 2:
                both += 1
                both_right += answer == expected
                if answer == expected and len(examples) < 3:
                    examples.append(answer)
    summary = {
        "model": args.model, "recipe": args.recipe, "augment": args.augment, "seed": args.seed,
        "train_images": results["train_examples"], "test_images": data.sizes["test"],
        "epochs": results["epochs_run"], "threshold": results["threshold"],
        "test_map": results["test_map"], "test_f1": results["test_f1"],
        "test_macro_f1": results["test_macro_f1"],
        "test_subset_accuracy": results["test_subset_accuracy"],
        "served_exact": served_right / data.sizes["test"],
        "served_two_label_images": both, "served_both_labels": both_right,
        "served_examples": examples, "train_minutes": minutes, "run_dir": run_dir,
        "export": version,
    }
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"{args.model}, {args.recipe}, --augment {args.augment}, {summary['epochs']} epochs on "
          f"{summary['train_images']:,} two-item images: test mAP {summary['test_map']:.4f}, "
          f"F1 {summary['test_f1']:.4f} (macro {summary['test_macro_f1']:.4f}) at threshold "
          f"{summary['threshold']:g}, exact label sets {summary['test_subset_accuracy']:.4f}")
    print(f"served {version}: {served_right} of {data.sizes['test']} test images' label sets "
          f"exactly; {both_right} of {both} two-label images served both labels "
          f"(e.g. {', '.join(examples) or 'none'})")
    return summary


if __name__ == "__main__":
    main()
