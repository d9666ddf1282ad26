"""What the ``explain`` signature costs a server next to ``serving_default``.

Exports one model with the ``explain`` signature (`kres export --explain`)
and times both signatures on the same encoded images through TensorFlow's
SavedModel loader, in interleaved rounds so that a drifting machine affects
both alike: the median time per call at batch 1 and at batch `--batch`,
and their ratio. Grad-CAM adds a backward pass from the class's score to
the explained stage (`--stage`, default the deepest: only through the
pooling and the classifier), so the ratio is the figure to read.

    .venv/bin/python benchmarks/explain_signature.py                      # CIFAR ResNet-20, 32x32x3
    .venv/bin/python benchmarks/explain_signature.py --stage C1          # through stage 3 back
    .venv/bin/python benchmarks/explain_signature.py --model resnet50 --size 224

The model has random weights (the cost does not depend on them).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from machine import describe  # noqa: E402

import kres  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="cifar_resnet20")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=10, help="calls per round and batch size")
    parser.add_argument("--stage", default=None, help="the stage explained (default: deepest)")
    args = parser.parse_args()
    print(describe())
    model = kres.build_model(args.model, input_shape=(args.size, args.size, 3), classes=10)
    folder = tempfile.TemporaryDirectory()
    path = kres.export(model, os.path.join(folder.name, "m"), dataset="cifar10",
                       explain=args.stage or True)
    loaded = tf.saved_model.load(path)
    rng = np.random.default_rng(0)
    pngs = [tf.io.encode_png(rng.integers(0, 256, (args.size, args.size, 3), np.uint8)).numpy()
            for _ in range(args.batch)]
    times = {(s, b): [] for s in ("serving_default", "explain") for b in (1, args.batch)}
    for s, b in times:  # the first call of each traces nothing, but warms the caches
        loaded.signatures[s](images=tf.constant(pngs[:b]))
    for _ in range(args.rounds):
        for (s, b), found in times.items():
            batch = tf.constant(pngs[:b])
            for _ in range(args.calls):
                start = time.perf_counter()
                loaded.signatures[s](images=batch)
                found.append(time.perf_counter() - start)
    print(f"{args.model}, {args.size}x{args.size}x3, explained at {args.stage or 'the deepest'} "
          f"stage, {args.rounds} rounds x {args.calls} calls, median ms per call:")
    for b in (1, args.batch):
        plain, cam = (statistics.median(times[s, b]) * 1e3 for s in ("serving_default", "explain"))
        print(f"  batch {b:3d}: serving_default {plain:8.2f}  explain {cam:8.2f}  "
              f"ratio {cam / plain:.2f}")
    folder.cleanup()


if __name__ == "__main__":
    main()
