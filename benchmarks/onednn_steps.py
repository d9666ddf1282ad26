"""A kres training step and a PyTorch peer's, side by side, primitive by primitive.

Both frameworks run their convolutions and (TensorFlow) batch norm in
oneDNN, which with ``ONEDNN_VERBOSE=1`` logs every primitive it runs: its
kind and direction, the kernel oneDNN chose, the shapes and memory
formats, and its time. This script runs a few training steps of the same
network on each side in fresh processes, once quiet (the step's wall time)
and once with the log on, the sides alternating for ``--rounds`` (the
2-core VM's speed drifts between minutes); it sums the log's times per step
by pass and kernel, and by convolution shape, takes each entry's median
over the rounds, and prints the two sides side by side.

- ``cifar_resnet20``: kres's ResNet-20 on 28x28x1 at batch 128 against the
  PyTorch program of `benchmarks/torch_peer.py` (the Fashion-MNIST run);
- ``resnet50``, ``resnext50_32x4d``: at 224x224x3, batch 16, against
  torchvision's (channels-last).

kres compiles with SGD (Nesterov momentum) and label-smoothed cross-entropy,
the peer steps the same; ``--precision mixed_bfloat16`` is Keras's policy on
kres's side and ``torch.autocast("cpu", torch.bfloat16)`` on PyTorch's. The
logged kres run executes one TensorFlow op at a time
(``--inter-op-threads``, default 1): with TensorFlow's default two ops run
at once on a 2-core machine, each on both cores, and oneDNN's time of each
doubles while they overlap, so its sums would not compare with PyTorch's,
which runs one op at a time. The log slows every primitive a little; the
quiet runs give the step times. PyTorch is never a dependency of kres
(``--torch-python``: a Python of a separate environment with torch and
torchvision)::

    .venv/bin/python benchmarks/onednn_steps.py --torch-python /path/to/ENV/bin/python \\
        --model cifar_resnet20 --precision mixed_bfloat16
"""

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODELS = {"cifar_resnet20": dict(shape=(28, 28, 1), batch=128, classes=10),
          "resnet50": dict(shape=(224, 224, 3), batch=16, classes=1000),
          "resnext50_32x4d": dict(shape=(224, 224, 3), batch=16, classes=1000)}
MARK = "kres-onednn-steps: timed steps begin"
PASSES = {"forward_training": "forward", "forward_inference": "forward",
          "backward_data": "backward, data", "backward_weights": "backward, weights",
          "backward": "backward"}


def kres_worker(spec):
    """Runs kres's steps; prints the mark, then one JSON line. Main environment."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    import kres

    if spec["inter_op_threads"]:
        tf.config.threading.set_inter_op_parallelism_threads(spec["inter_op_threads"])
    m = MODELS[spec["model"]]
    model = kres.build_model(spec["model"], classes=m["classes"], input_shape=m["shape"],
                             dtype=spec["precision"])
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=False))
    rng = np.random.default_rng(0)
    x = tf.constant(rng.integers(0, 256, (m["batch"], *m["shape"])).astype("float32"))
    y = tf.constant(rng.integers(0, m["classes"], m["batch"]))
    for _ in range(spec["warmup"]):
        model.train_on_batch(x, y)
    print(MARK, flush=True)
    times = []
    for _ in range(spec["steps"]):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    print(json.dumps({"step_seconds": times}), flush=True)


def torch_worker(spec):
    """Runs the PyTorch peer's steps; prints the mark, then one JSON line. Under --torch-python."""
    import torch
    from torch.nn import functional as F

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    torch.manual_seed(0)
    m = MODELS[spec["model"]]
    if spec["model"] == "cifar_resnet20":
        sys.path.insert(0, HERE)
        from torch_peer import peer_resnet20

        model = peer_resnet20(m["classes"])
        x = torch.randint(0, 256, (m["batch"], m["shape"][2], *m["shape"][:2]),
                          dtype=torch.uint8)  # the peer normalises uint8 pixels itself
    else:
        import torchvision

        model = getattr(torchvision.models, spec["model"])(num_classes=m["classes"])
        x = torch.rand(m["batch"], m["shape"][2], *m["shape"][:2])
    cl = torch.channels_last
    model = model.to(memory_format=cl).train()
    x = x.contiguous(memory_format=cl)
    y = torch.randint(0, m["classes"], (m["batch"],))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16,
                              enabled=spec["precision"] == "mixed_bfloat16")

    def step():
        with autocast:
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(spec["warmup"]):
        step()
    print(MARK, flush=True)
    times = []
    for _ in range(spec["steps"]):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    print(json.dumps({"step_seconds": times, "torch": torch.__version__}), flush=True)


def run(side, python, spec, verbose):
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    env.pop("ONEDNN_VERBOSE", None)
    if verbose:
        env["ONEDNN_VERBOSE"] = "1"
    done = subprocess.run([python, os.path.abspath(__file__), f"--{side}-worker",
                           json.dumps(spec)], capture_output=True, text=True, env=env)
    if done.returncode or MARK not in done.stdout:
        raise SystemExit(f"the {side} steps failed:\n{done.stderr[-3000:]}")
    after = done.stdout.split(MARK, 1)[1].splitlines()
    result = json.loads(after[-1])
    result["primitives"] = [line for line in after
                            if line.startswith("onednn_verbose,v1,primitive,exec,")]
    return result


def parse(lines, steps):
    """oneDNN's exec lines -> {(pass, kernel): [calls, ms]} and {(pass, shape): [calls, ms]}
    per step."""
    by_kernel = collections.defaultdict(lambda: [0.0, 0.0])
    by_shape = collections.defaultdict(lambda: [0.0, 0.0])
    for line in lines:
        f = line.split(",")
        # onednn_verbose,v1,primitive,exec,cpu,KIND,IMPL,PROP,MEMORY,ATTR,AUX,PROBLEM,MS
        kind, kernel, prop, problem, ms = f[5], f[6], f[7], f[-2], float(f[-1])
        name = kind.replace("_", " ")
        if kind in ("convolution", "batch_normalization", "pooling"):
            name += ", " + PASSES.get(prop, prop)
        for table, key in ((by_kernel, (name, kernel)), (by_shape, (name, problem))):
            table[key][0] += 1 / steps
            table[key][1] += ms / steps
    return by_kernel, by_shape


def kernel_rows(kernels, totals):
    """The table by pass and kernel: `kernels` maps each side ("kres", "torch") to
    ``{(pass, kernel): (calls, ms)}``, `totals` each side to its oneDNN ms; rows of
    cells, the largest entry (on either side) first, then the totals."""
    sides = ("kres", "torch")
    keys = sorted(set(kernels["kres"]) | set(kernels["torch"]),
                  key=lambda k: -max(kernels[s].get(k, (0, 0))[1] for s in sides))
    rows = [[p, f"`{k}`", *[c for s in sides for c in (
        (f"{kernels[s][(p, k)][0]:.0f}", f"{kernels[s][(p, k)][1]:.2f}")
        if (p, k) in kernels[s] else ("-", "-"))]] for p, k in keys]
    return rows + [["all of oneDNN", "", "", f"{totals['kres']:.2f}", "",
                    f"{totals['torch']:.2f}"]]


def median_tables(rounds):
    """`parse`'s tables of several rounds -> one of each: every entry's median over
    the rounds (an entry missing from a round counts as 0 there)."""
    merged = []
    for tables in zip(*rounds):
        keys = set().union(*tables)
        merged.append({key: [statistics.median(t.get(key, (0, 0))[i] for t in tables)
                             for i in (0, 1)] for key in keys})
    return merged


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-python", required=True,
                        help="a Python with torch and torchvision (a separate environment)")
    parser.add_argument("--model", choices=sorted(MODELS), default="cifar_resnet20")
    parser.add_argument("--precision", choices=("float32", "mixed_bfloat16"),
                        default="mixed_bfloat16")
    parser.add_argument("--steps", type=int, default=5, help="timed (and logged) steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3,
                        help="quiet and logged runs of each side, alternating; medians")
    parser.add_argument("--inter-op-threads", type=int, default=1,
                        help="TensorFlow's inter-op threads in kres's logged run (0: its default)")
    parser.add_argument("--shapes", type=int, default=12,
                        help="rows of the per-shape convolution table")
    parser.add_argument("--out", help="also write the figures as JSON")
    args = parser.parse_args()
    if min(args.steps, args.warmup, args.rounds) < 1 or args.inter_op_threads < 0:
        parser.error(f"--steps, --warmup and --rounds must be at least 1 and "
                     f"--inter-op-threads at least 0. Received: --steps {args.steps} "
                     f"--warmup {args.warmup} --rounds {args.rounds} "
                     f"--inter-op-threads {args.inter_op_threads}")
    found = subprocess.run([args.torch_python, "-c", "import torch, torchvision"],
                           capture_output=True, text=True) \
        if os.access(args.torch_python, os.X_OK) else None
    if found is None or found.returncode:
        parser.error(f"--torch-python must be a Python with torch and torchvision installed"
                     f"{': ' + found.stderr.strip().splitlines()[-1] if found else ''}. "
                     f"Received: --torch-python {args.torch_python}")
    sys.path.insert(0, HERE)
    from machine import provenance

    record = provenance()
    spec = {"model": args.model, "precision": args.precision, "steps": args.steps,
            "warmup": args.warmup, "inter_op_threads": 0}
    kres_python = os.path.join(ROOT, ".venv", "bin", "python")
    sides = {"kres": kres_python, "torch": args.torch_python}
    quiet, logged = ({side: [] for side in sides} for _ in range(2))
    for round_ in range(args.rounds):  # the sides alternate, the order swapped every round
        for side in (list(sides) if round_ % 2 == 0 else list(sides)[::-1]):
            quiet[side].append(run(side, sides[side], spec, verbose=False))
            logged[side].append(run(side, sides[side], {
                **spec, "inter_op_threads": args.inter_op_threads if side == "kres" else 0},
                verbose=True))
    tables = {side: median_tables([parse(r["primitives"], args.steps) for r in logged[side]])
              for side in sides}
    step_ms = {side: 1e3 * statistics.median(t for r in quiet[side] for t in r["step_seconds"])
               for side in sides}

    m = MODELS[args.model]
    print(f"{record['machine']}: {record['cpu']}")
    print(f"{args.model}, {'x'.join(map(str, m['shape']))}, batch {m['batch']}, "
          f"{args.precision}; PyTorch {quiet['torch'][0]['torch']}")
    print(f"\nstep, quiet (median of {args.rounds} x {args.steps}): "
          f"kres {step_ms['kres']:.1f} ms, "
          f"PyTorch {step_ms['torch']:.1f} ms\n")
    totals = {s: sum(v[1] for v in tables[s][0].values()) for s in sides}
    print(f"| pass ({args.precision}) | kernel | kres calls | kres ms | PyTorch calls | "
          f"PyTorch ms |")
    print("|---|---|---:|---:|---:|---:|")
    for row in kernel_rows({s: tables[s][0] for s in sides}, totals):
        print(f"| {' | '.join(row)} |")
    print("\n| convolution pass | shape | kres ms | PyTorch ms |")
    print("|---|---|---:|---:|")
    shapes = sorted((k for k in set(tables["kres"][1]) | set(tables["torch"][1])
                     if k[0].startswith("convolution")),
                    key=lambda k: -tables["kres"][1].get(k, (0, 0))[1])
    for key in shapes[:args.shapes]:
        cells = [f"{tables[s][1][key][1]:.2f}" if key in tables[s][1] else "-" for s in sides]
        print(f"| {key[0].split(', ', 1)[1]} | `{key[1]}` | {cells[0]} | {cells[1]} |")
    if args.out:
        record.update(model=args.model, precision=args.precision, steps=args.steps,
                      rounds=args.rounds,
                      load_average_end=[round(x, 2) for x in os.getloadavg()],
                      inter_op_threads=args.inter_op_threads, step_ms=step_ms,
                      onednn_ms=totals,
                      kernels={s: [[*k, round(v[0], 2), round(v[1], 3)]
                                   for k, v in tables[s][0].items()] for s in sides},
                      shapes={s: [[*k, round(v[0], 2), round(v[1], 3)]
                                  for k, v in tables[s][1].items()] for s in sides})
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--kres-worker"]:
        kres_worker(json.loads(sys.argv[2]))
    elif sys.argv[1:2] == ["--torch-worker"]:
        torch_worker(json.loads(sys.argv[2]))
    else:
        main()
