"""The pipeline without TensorFlow: Keras's `PyDataset` against Grain, side by side.

Both wrap the same batch function (`kres.data.batches`: Fashion-MNIST's
training split from its IDX files, batch 128, a recipe's augmentation by
kres's Keras layers) and are read through Keras's own data adapters, as
`fit` reads them, on the backend of KERAS_BACKEND (run it on JAX). Prints
images/s per form and parallelism, in alternating rounds, and writes them
as JSON with the processor named. Grain is not a dependency of kres: `pip install
grain` beside it for this comparison.

    KERAS_BACKEND=jax python benchmarks/input_pipelines.py \
        --out benchmarks/results/input_pipelines.json
"""

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time

import keras
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.machine import describe, provenance  # noqa: E402
from kres.data.batches import Batches, Examples, batches  # noqa: E402
from kres.data.catalog import get_dataset_spec  # noqa: E402
from kres.data.fashion_mnist import read_fashion_mnist  # noqa: E402


def _make(augment, size):
    x, y = read_fashion_mnist()["train"]
    data = Examples(x.reshape(-1, 28, 28, 1), y.astype(np.int64))
    spec = get_dataset_spec("fashion_mnist")
    return batches(data, spec, training=True, batch_size=128, image_size=size, channels=1,
                   num_classes=10, seed=0, augment=augment)._make


def _py_dataset(make, workers):
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    adapter = PyDatasetAdapter(Batches(make, None, workers))
    return adapter, adapter.get_numpy_iterator()


def _grain(make, threads):
    import grain

    ds = grain.MapDataset.range(1 << 40).map(make).to_iter_dataset(
        grain.ReadOptions(num_threads=threads, prefetch_buffer_size=4 * max(threads, 1)))
    return None, iter(ds)


def _rate(factory, make, parallel, steps):
    adapter, it = factory(make, parallel)
    if adapter is not None:
        adapter.on_epoch_begin()
    next(it)  # start-up (compilation of the layers' ops) not counted
    start = time.perf_counter()
    for _ in range(steps):
        next(it)
    rate = steps * 128 / (time.perf_counter() - start)
    if adapter is not None:
        adapter.on_epoch_end()
    return rate


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--augment", default="crop_flip,imagenet")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args()
    record = provenance()
    forms = {"PyDataset": _py_dataset, "Grain": _grain}
    results = []
    for augment in args.augment.split(","):
        make = _make(augment, 28)
        rates = {}
        for _ in range(args.rounds):
            for (form, factory), parallel in itertools.product(forms.items(), (1, 2)):
                rates.setdefault((form, parallel), []).append(
                    _rate(factory, make, parallel, args.steps))
                print(f"  {augment} {form} x{parallel}: {rates[form, parallel][-1]:,.0f}",
                      file=sys.stderr, flush=True)
        for (form, parallel), r in rates.items():
            row = {"augment": augment, "form": form, "parallel": parallel,
                   "images_per_second": round(statistics.median(r)),
                   "rounds": [round(v) for v in r]}
            results.append(row)
            print(f"{augment:10} {form:10} x{parallel}: {row['images_per_second']:7,} images/s "
                  f"(rounds {row['rounds']})", flush=True)
    record.update(backend=keras.backend.backend(), backend_line=describe(),
                  python=platform.python_version(), batch_size=128, steps=args.steps,
                  results=results, load_average_end=os.getloadavg())
    if args.out:
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
