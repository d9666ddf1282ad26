"""Input pipeline throughput next to the model's training throughput, per recipe,
and beside a baseline commit's pipeline.

The pipeline must never be the bottleneck: for each augmentation recipe this
prints the images/s of the training pipeline (first pass: reading, decoding
and augmenting; later passes: augmenting from the cache) and of training steps
of a model that trains with that recipe, measured in one run on one machine.
With ``--baseline REF`` (default ``3826925``, the last commit whose
augmentations were hand-written ``tf.image`` code), each recipe that REF
knows is also run on REF's pipeline code, the two alternating in fresh
processes (``--rounds``; each takes the best of three cached passes: the
2-core VM's speed drifts by up to 2x between seconds), and the ratio of the
medians is printed: the Keras-layer pipeline must be within 10% of the
hand-written one.

- ``crop_flip``, ``crop``, ``none`` (the CIFAR and MNIST recipes), and
  ``crop_flip+randaugment``, ``crop_flip+augmix`` (RandAugment, AugMix after
  them): Fashion-MNIST (``--dataset``) and a CIFAR ResNet at the dataset's size;
- ``imagenet`` (random-resized crop to 224 and flip): an image folder of JPEGs
  read by TensorFlow Datasets' ``ImageFolder`` (``--folder``, or one written
  to a temporary directory from Fashion-MNIST images enlarged to 320x320 RGB)
  and ResNet-50.

    python benchmarks/pipeline_vs_model.py                      # ~25 min on 2 CPU cores
    python benchmarks/pipeline_vs_model.py --recipes crop_flip --model cifar_resnet56

``--out FILE`` also writes the figures as JSON with the date, machine,
command and commit (`machine.provenance`); docs/benchmarks.md quotes
``benchmarks/results/pipeline_vs_model.json``.

Set TF_ENABLE_ONEDNN_OPTS=0 in the environment to measure without oneDNN
(it must be set before TensorFlow is imported).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import machine  # noqa: E402
import tensorflow as tf  # noqa: E402

import kres  # noqa: E402
from kres import data as datasets  # noqa: E402
from kres.data import pipeline as augment  # noqa: E402
from kres.training import optimizers  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RECIPES = ("crop_flip", "crop", "none", "crop_flip+randaugment", "crop_flip+augmix",
           "imagenet")
BASELINE = "3826925"


def pipeline_rate(ds, batches):
    start, n = time.perf_counter(), 0
    for i, (x, _) in enumerate(ds):
        n += x.shape[0]
        if i + 1 >= batches:
            break
    return n / (time.perf_counter() - start)


def model_rate(name, batches, size, channels, classes):
    model = kres.build_model(name, classes=classes, input_shape=(size, size, channels))
    optimizers.apply_weight_decay(model, 1e-4)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss="categorical_crossentropy")
    for x, y in batches[:2]:  # trace and warm up
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for x, y in batches[2:]:
        model.train_on_batch(x, y)
    return sum(int(x.shape[0]) for x, _ in batches[2:]) / (time.perf_counter() - start)


def write_folder(root, images_per_split, size=320):
    """An ImageFolder of JPEGs (train/ and test/, one folder per class) from Fashion-MNIST."""
    source = datasets.load("fashion_mnist")
    for split, ds in (("train", source.train), ("test", source.test)):
        for i, (image, label) in enumerate(ds.take(images_per_split)):
            folder = os.path.join(root, split, str(int(label)))
            os.makedirs(folder, exist_ok=True)
            rgb = tf.image.resize(tf.repeat(tf.cast(image, tf.float32), 3, -1), (size, size))
            tint = tf.constant([1.0, 0.8, 0.6]) if i % 2 else tf.constant([0.7, 0.9, 1.0])
            jpeg = tf.io.encode_jpeg(tf.cast(tf.clip_by_value(rgb * tint, 0, 255), tf.uint8),
                                     quality=90)
            tf.io.write_file(os.path.join(folder, f"{i}.jpg"), jpeg)
    return root


def pipeline_rates(recipe, dataset, batch_size, image_size=None, model_name=None, passes=1):
    """``(first pass, cached)`` images/s of `recipe`'s training pipeline on `dataset`
    (cached: the best of `passes` passes after the first).

    `recipe` is an augmentation name, with ``+randaugment`` or ``+augmix``
    for the automatic augmentation after it (this checkout's pipelines only).
    """
    d = datasets.load(dataset)
    spec = d.spec
    size = image_size or spec.image_size or kres.get_spec(model_name).default_size
    base, _, auto = recipe.partition("+")
    ds = augment.pipeline(d.train, spec, training=True, batch_size=batch_size,
                          image_size=size, channels=spec.channels, augment=base,
                          num_classes=spec.num_classes, seed=0,
                          **({"auto_augment": auto} if auto else {}))
    full = max(1, d.sizes["train"] // batch_size)
    first = pipeline_rate(ds, full)  # reads, decodes and fills the cache
    cached = max(pipeline_rate(ds, full) for _ in range(passes))
    return first, cached, ds, d, size


def measure(recipe, dataset, model_name, batch_size, steps, image_size=None):
    first, cached, ds, d, size = pipeline_rates(recipe, dataset, batch_size, image_size,
                                                model_name)
    spec = d.spec
    batches = list(ds.take(steps + 2))
    model = model_rate(model_name, batches, size, spec.channels, spec.num_classes)
    return {"recipe": recipe, "dataset": d.name, "size": f"{size}x{size}x{spec.channels}",
            "model": model_name, "batch": batch_size, "first": first, "cached": cached,
            "model_rate": model}


def checkout(ref, folder):
    """REF's ``kres/`` package, extracted into `folder` (for PYTHONPATH)."""
    archive = subprocess.run(["git", "-C", ROOT, "archive", ref, "kres"], check=True,
                             capture_output=True).stdout
    os.makedirs(folder, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    return folder


def rates_in_process(recipe, dataset, batch_size, image_size, code):
    """`pipeline_rates` in a fresh process importing kres from `code`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([code, HERE])}
    command = [sys.executable, os.path.abspath(__file__), "--pipeline-only", recipe,
               "--dataset", dataset, "--batch-size", str(batch_size)]
    if image_size:
        command += ["--image-size", str(image_size)]
    out = subprocess.run(command, env=env, cwd=tempfile.gettempdir(), check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def compare(recipe, dataset, batch_size, image_size, baseline_code, rounds):
    """Median cached (each process's best of three passes) and first-pass images/s of
    this checkout's and the baseline's pipeline, alternating in fresh processes."""
    runs = {"kres": [], "baseline": []}
    for _ in range(rounds):
        for name, code in (("kres", ROOT), ("baseline", baseline_code)):
            runs[name].append(rates_in_process(recipe, dataset, batch_size, image_size, code))
    return {name: {key: statistics.median(r[key] for r in rows) for key in ("first", "cached")}
            for name, rows in runs.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES)
    parser.add_argument("--dataset", default="fashion_mnist",
                        help="dataset of the crop_flip, crop and none recipes")
    parser.add_argument("--model", default="cifar_resnet20",
                        help="model of the crop_flip, crop and none recipes")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--folder", default=None,
                        help="image folder of the imagenet recipe (default: one is written)")
    parser.add_argument("--folder-images", type=int, default=1024,
                        help="training images of the written folder")
    parser.add_argument("--imagenet-model", default="resnet50")
    parser.add_argument("--imagenet-batch-size", type=int, default=16)
    parser.add_argument("--imagenet-steps", type=int, default=3)
    parser.add_argument("--baseline", default=BASELINE,
                        help="commit whose pipeline each recipe it knows is timed beside "
                             "('none' to skip)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating rounds of the comparison with the baseline")
    parser.add_argument("--out", help="also write the figures here (JSON)")
    parser.add_argument("--pipeline-only", metavar="RECIPE", help=argparse.SUPPRESS)
    parser.add_argument("--image-size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pipeline_only:  # a child process of `compare`: one recipe's rates as JSON
        first, cached, *_ = pipeline_rates(args.pipeline_only, args.dataset, args.batch_size,
                                           args.image_size, passes=3)
        print(json.dumps({"first": first, "cached": cached}))
        return

    record = machine.provenance()
    print(f"{machine.describe(tf)}\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        baseline = None if args.baseline == "none" else checkout(
            args.baseline, os.path.join(tmp, "baseline"))
        for recipe in args.recipes:
            if recipe == "imagenet":
                folder = args.folder or write_folder(os.path.join(tmp, "jpegs"),
                                                     args.folder_images)
                row = measure(recipe, folder, args.imagenet_model, args.imagenet_batch_size,
                              args.imagenet_steps, image_size=224)
                setting = (folder, args.imagenet_batch_size, 224)
            else:
                row = measure(recipe, args.dataset, args.model, args.batch_size, args.steps)
                setting = (args.dataset, args.batch_size, None)
            if baseline and "+" not in recipe:
                row["compared"] = compare(recipe, *setting, baseline, args.rounds)
            rows.append(row)
            print(f"{recipe}: pipeline {row['first']:.0f} / {row['cached']:.0f} img/s "
                  f"(first / cached), {row['model']} {row['model_rate']:.1f} img/s", flush=True)
    print()
    print("| recipe | data | input | model | batch | pipeline, first pass | pipeline, cached "
          "| model training | headroom (cached / model) |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['recipe']} | {r['dataset']} | {r['size']} | {r['model']} | {r['batch']} | "
              f"{r['first']:.0f} | {r['cached']:.0f} | {r['model_rate']:.1f} | "
              f"{r['cached'] / r['model_rate']:.0f}x |")
    compared = [r for r in rows if "compared" in r]
    if compared:
        print(f"\nBeside the pipeline of {args.baseline} (medians of {args.rounds} alternating "
              "rounds, fresh processes):\n")
        print("| recipe | kres cached | baseline cached | ratio | kres first pass "
              "| baseline first pass | ratio |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for r in compared:
            k, b = r["compared"]["kres"], r["compared"]["baseline"]
            print(f"| {r['recipe']} | {k['cached']:.0f} | {b['cached']:.0f} | "
                  f"{k['cached'] / b['cached']:.2f} | {k['first']:.0f} | {b['first']:.0f} | "
                  f"{k['first'] / b['first']:.2f} |")
    if args.out:
        record.update(baseline=args.baseline, rounds=args.rounds, rows=rows,
                      load_average_at_end=[round(x, 2) for x in os.getloadavg()])
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
