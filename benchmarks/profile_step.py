"""Where a training step's time goes: TensorFlow's per-op timings, grouped by op type.

Runs training steps of a model (``train_on_batch``, compiled as in the
model benchmark) under TensorFlow's profiler, then sums each kernel's
wall time by op type and by phase (forward, backward: ops under
``gradient_tape/``; optimizer: ops under the optimizer's name scope). On a
2-core CPU ops run one or two at a time, so the shares are close to shares
of the step; the sum can exceed the step's wall time where ops overlap.

    python benchmarks/profile_step.py --model resnet50                 # ~3 min on 2 cores
    python benchmarks/profile_step.py --model resnet50 --keras-bn      # Keras's own batch norm
    python benchmarks/profile_step.py --model resnet50 --dtype mixed_bfloat16
    TF_ENABLE_ONEDNN_OPTS=0 python benchmarks/profile_step.py --model resnext50_32x4d
"""

import argparse
import collections
import glob
import os
import re
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import machine  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kres  # noqa: E402
from kres import layers  # noqa: E402


def phase(name):
    if "gradient_tape" in name or "Grad" in name:
        return "backward"
    if name.split("/")[0] in ("SGD", "sgd", "Adam", "adam") or "optimizer" in name.lower():
        return "optimizer"
    return "forward"


OP_EVENT = re.compile(r"^([^:]+):([A-Za-z0-9_]+)$")  # "node/name:OpType"


def op_events(paths):
    """(node name, op type, microseconds) of every kernel run in the profiles at `paths`."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    events = []
    for path in paths:
        space = xplane_pb2.XSpace()
        with open(path, "rb") as f:
            space.ParseFromString(f.read())
        for plane in space.planes:
            for line in plane.lines:
                if not line.name.startswith("tf_Compute"):
                    continue  # kernels run on the executor's compute threads
                for event in line.events:
                    match = OP_EVENT.match(plane.event_metadata[event.metadata_id].name)
                    if match:
                        events.append((match.group(1), match.group(2), event.duration_ps / 1e6))
    return events


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--size", type=int, default=None, help="input size (default: model's)")
    parser.add_argument("--channels", type=int, default=3, help="input channels")
    parser.add_argument("--steps", type=int, default=2, help="profiled steps")
    parser.add_argument("--keras-bn", action="store_true",
                        help="use keras.layers.BatchNormalization instead of kres's fused one")
    parser.add_argument("--dtype", default="float32",
                        help="the model's dtype policy (float32, mixed_bfloat16, ...)")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()

    spec = kres.get_spec(args.model)
    size = args.size or spec.default_size
    classes = 10 if size <= 64 else 1000
    model = kres.build_model(args.model, classes=classes, input_shape=(size, size, args.channels),
                             dtype=args.dtype)
    if args.keras_bn:
        model = keras.models.clone_model(model, clone_function=lambda layer: (
            keras.layers.BatchNormalization if type(layer) is layers.BatchNormalization
            else type(layer)).from_config(layer.get_config()))
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(args.batch_size, size, size, args.channels)).astype("float32"))
    y = tf.constant(rng.integers(0, classes, args.batch_size))
    for _ in range(2):
        model.train_on_batch(x, y)
    start = time.perf_counter()
    model.train_on_batch(x, y)
    step = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(args.steps):
            model.train_on_batch(x, y)
        tf.profiler.experimental.stop()
        events = op_events(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"),
                                     recursive=True))

    by_type = collections.Counter()
    by_phase = collections.Counter()
    by_type_phase = collections.Counter()
    for name, op, micros in events:
        by_type[op] += micros
        by_phase[phase(name)] += micros
        by_type_phase[(op, phase(name))] += micros
    total = sum(by_type.values())
    per_step = total / args.steps / 1e6
    print(machine.describe(tf))
    print(f"{args.model} {size}x{size}, batch {args.batch_size}, {args.dtype}, "
          f"{'Keras' if args.keras_bn else 'kres fused'} batch norm")
    print(f"one step: {step:.2f} s wall ({args.batch_size / step:.2f} img/s); "
          f"op time summed: {per_step:.2f} s per step\n")
    print("| phase | s per step | share |")
    print("|---|---:|---:|")
    for name, micros in by_phase.most_common():
        print(f"| {name} | {micros / args.steps / 1e6:.2f} | {micros / total:.0%} |")
    print("\n| op type (phase) | s per step | share |")
    print("|---|---:|---:|")
    for (op, ph), micros in by_type_phase.most_common(args.top):
        print(f"| {op} ({ph}) | {micros / args.steps / 1e6:.2f} | {micros / total:.0%} |")


if __name__ == "__main__":
    main()
