"""Input pipeline throughput next to the model's training throughput.

The pipeline must never be the bottleneck: this prints the images/s of the
training pipeline (first pass, decoding; later passes, from the cache) and of
training steps of the model, measured in one run on the same machine.

    python benchmarks/pipeline_vs_model.py --model cifar_resnet20 --dataset fashion_mnist

Set TF_ENABLE_ONEDNN_OPTS=0 in the environment to measure without oneDNN
(it must be set before TensorFlow is imported).
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import kres  # noqa: E402
from kres import data as kdata  # noqa: E402
from kres import train as ktrain  # noqa: E402


def pipeline_rate(ds, batches):
    start, n = time.perf_counter(), 0
    for i, (x, _) in enumerate(ds):
        n += x.shape[0]
        if i + 1 >= batches:
            break
    return n / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cifar_resnet20")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40, help="timed training steps")
    args = parser.parse_args()

    d = kdata.load(args.dataset)
    spec = d.spec
    size = spec.image_size or kres.get_spec(args.model).default_size
    ds = kdata.pipeline(d.train, spec, training=True, batch_size=args.batch_size,
                        image_size=size, channels=spec.channels,
                        num_classes=spec.num_classes, seed=0)
    full = d.sizes["train"] // args.batch_size
    first = pipeline_rate(ds, full)   # decodes and fills the cache
    cached = pipeline_rate(ds, full)

    model = kres.build_model(args.model, classes=spec.num_classes,
                             input_shape=(size, size, spec.channels))
    ktrain.apply_weight_decay(model, 1e-4)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss="categorical_crossentropy")
    batches = list(ds.take(args.steps + 5))
    for x, y in batches[:5]:  # trace and warm up
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for x, y in batches[5:]:
        model.train_on_batch(x, y)
    train = args.steps * args.batch_size / (time.perf_counter() - start)

    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)")
    print(f"{args.model} on {args.dataset} ({size}x{size}x{spec.channels}), batch "
          f"{args.batch_size}, TF_ENABLE_ONEDNN_OPTS={onednn}, {os.cpu_count()} CPUs")
    print(f"  pipeline, first pass (decode + augment): {first:10.0f} images/s")
    print(f"  pipeline, cached passes (augment):       {cached:10.0f} images/s")
    print(f"  model training steps:                    {train:10.0f} images/s")
    print(f"  pipeline headroom (cached / model):      {cached / train:10.1f}x")


if __name__ == "__main__":
    main()
