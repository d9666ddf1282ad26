"""One convolution pass alone: TensorFlow's call, PyTorch's and oneDNN's own.

`benchmarks/onednn_steps.py` found the same oneDNN kernels on the same
problems running longer in kres's training step than in PyTorch's, the
weight gradient most. This script takes one pass (``--pass forward``,
``data`` or ``weights``: the forward convolution, its data gradient or its
weight gradient) out of the steps: ResNet-20's three 3x3 stride-1 problems
(batch 128, channels last, the descriptors both frameworks log), each
called ``--calls`` times in a row on the same inputs

- by TensorFlow (``tf.raw_ops.Conv2D``, ``Conv2DBackpropInput``,
  ``Conv2DBackpropFilter`` in a ``tf.function``: the ops of kres's step, with
  the oneDNN TensorFlow is built with);
- by PyTorch (``torch.nn.functional.conv2d``,
  ``torch.ops.aten.convolution_backward`` for one gradient;
  ``--torch-python``, a separate environment: never a dependency);
- by oneDNN alone: `benchmarks/conv_alone.cpp`, compiled (``g++``, or
  ``$CXX``) against each ``--onednn`` install and run with the scratchpad
  left to oneDNN and handed in by the caller (as PyTorch does). A prefix is
  any directory with ``include/oneapi/dnnl/dnnl.hpp`` and ``lib/libdnnl.so``,
  e.g. a separate environment made with ``python3 -m venv ENV &&
  ENV/bin/pip install onednn==2025.1.0 onednn-devel==2025.1.0`` (oneDNN
  3.7.1; ``2026.1.0`` is 3.13.2), or with ``onednn-cpu-gomp==2023.2.0
  onednn-devel-cpu-gomp==2023.2.0`` (3.2.0 on GNU OpenMP, PyPI's last
  OpenMP build). The ``onednn`` wheels are SYCL builds, run on the CPU
  through Intel's OpenCL runtime (installed with them; TBB underneath),
  which the script points to when the prefix holds it. Logs of oneDNN
  before 3.3 are read in the later format (`versioned`).

Every side runs with ``ONEDNN_VERBOSE=1`` and is timed by oneDNN's own clock
(the last field of each execution line), the first ``--warmup`` calls of
each problem dropped; the sides alternate for ``--rounds`` in fresh
processes (the 2-core VM's speed drifts between minutes). ``--threads 1``
runs the frameworks on one thread. Printed: each side's oneDNN version,
threading runtime, kernel, attributes and memory formats, then ms per call,
the median over calls and then over rounds::

    .venv/bin/python benchmarks/conv_alone.py --pass weights \\
        --torch-python /path/to/torch-env/bin/python \\
        --onednn /path/to/onednn37-env /path/to/onednn313-env --out conv_alone.json
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = ("16,28", "32,14", "64,7")  # ResNet-20's stages on 28x28 images: channels, size
EXEC = "onednn_verbose,v1,primitive,exec,cpu,convolution,"
PROPS = {"forward": ("forward_training", "forward_inference"), "data": ("backward_data",),
         "weights": ("backward_weights",)}
PASS_NAMES = {"forward": "forward", "data": "backward, data", "weights": "backward, weights"}


def tf_worker(spec):
    """TensorFlow's convolution pass, under the log. Main environment."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    if spec["threads"]:
        tf.config.threading.set_intra_op_parallelism_threads(spec["threads"])
        tf.config.threading.set_inter_op_parallelism_threads(spec["threads"])
    dtype = {"bf16": tf.bfloat16, "f32": tf.float32}[spec["precision"]]
    rng = np.random.default_rng(0)
    one = dict(strides=[1, 1, 1, 1], padding="SAME")
    for c, hw in spec["shapes"]:
        x, dy = (tf.constant(rng.uniform(-0.5, 0.5, (spec["batch"], hw, hw, c)), dtype)
                 for _ in range(2))
        w = tf.constant(rng.uniform(-0.5, 0.5, (3, 3, c, c)), dtype)
        call = tf.function({
            "forward": lambda x, w, dy: tf.raw_ops.Conv2D(input=x, filter=w, **one),
            "data": lambda x, w, dy: tf.raw_ops.Conv2DBackpropInput(
                input_sizes=x.shape, filter=w, out_backprop=dy, **one),
            "weights": lambda x, w, dy: tf.raw_ops.Conv2DBackpropFilter(
                input=x, filter_sizes=w.shape, out_backprop=dy, **one)}[spec["pass"]])
        for _ in range(spec["warmup"] + spec["calls"]):
            call(x, w, dy).numpy()
    print(json.dumps({"version": f"TensorFlow {tf.__version__}"}), flush=True)


def torch_worker(spec):
    """PyTorch's convolution pass, under the log. Under --torch-python."""
    import torch

    torch.set_num_threads(spec["threads"] or len(os.sched_getaffinity(0)))
    dtype = {"bf16": torch.bfloat16, "f32": torch.float32}[spec["precision"]]
    cl = torch.channels_last
    torch.manual_seed(0)
    with torch.no_grad():
        for c, hw in spec["shapes"]:
            x, dy = ((torch.rand(spec["batch"], c, hw, hw) - 0.5).to(dtype).contiguous(
                memory_format=cl) for _ in range(2))
            w = (torch.rand(c, c, 3, 3) - 0.5).to(dtype).contiguous(memory_format=cl)
            mask = {"data": [True, False, False], "weights": [False, True, False]}
            for _ in range(spec["warmup"] + spec["calls"]):
                if spec["pass"] == "forward":
                    torch.nn.functional.conv2d(x, w, padding=1)
                else:
                    torch.ops.aten.convolution_backward(dy, x, w, None, [1, 1], [1, 1], [1, 1],
                                                        False, [0, 0], 1, mask[spec["pass"]])
    print(json.dumps({"version": f"PyTorch {torch.__version__}"}), flush=True)


def parse(lines, warmup, pass_="weights"):
    """oneDNN's verbose lines -> (runtime, {problem: {"kernel", "memory", "attributes",
    "ms"}}): the convolution executions of `pass_` ("forward", "data", "weights") of
    each problem after its first `warmup`, "ms" their median; runtime from the
    ``info,cpu,runtime:`` line."""
    runtime, calls = None, {}
    for line in lines:
        if line.startswith("onednn_verbose,v1,info,cpu,runtime:"):
            runtime = line.split("runtime:", 1)[1].split(",")[0]
        elif line.startswith(EXEC) and line.split(",")[7] in PROPS[pass_]:
            # onednn_verbose,v1,primitive,exec,cpu,KIND,IMPL,PROP,MEMORY,ATTR,AUX,PROBLEM,MS
            f = line.split(",")
            calls.setdefault(f[-2], {"kernel": f[6], "memory": f[8], "attributes": f[9],
                                     "ms": []})["ms"].append(float(f[-1]))
    for entry in calls.values():
        entry["ms"] = statistics.median(entry["ms"][warmup:]) if entry["ms"][warmup:] else None
    return runtime, calls


def problem(batch, c, hw):
    """oneDNN's name of the 3x3 stride-1 problem with `c` channels in and out at `hw` x `hw`."""
    return f"mb{batch}_ic{c}oc{c}_ih{hw}oh{hw}kh3sh1dh0ph1_iw{hw}ow{hw}kw3sw1dw0pw1"


def rows(sides, shapes, batch):
    """The printed table: one row per shape, one cell per side (ms per call; "-" where
    the side did not run it); `sides` maps a side's name to its {problem: ms}."""
    return [[f"{c}x{hw}x{hw}", *[f"{ms[problem(batch, c, hw)]:.2f}"
                                 if ms.get(problem(batch, c, hw)) else "-"
                                 for ms in sides.values()]] for c, hw in shapes]


def run(command, env_extra):
    env = {**os.environ, **env_extra, "ONEDNN_VERBOSE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{command[0]} failed:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
    return [versioned(line) for line in done.stdout.splitlines()]


def versioned(line):
    """A verbose line of oneDNN before 3.3 (``onednn_verbose,exec,...``,
    ``onednn_verbose,info,...``) in the later format (``onednn_verbose,v1,primitive,exec,...``,
    ``onednn_verbose,v1,info,...``), whose fields `parse` reads; other lines as they are."""
    for old, new in (("onednn_verbose,exec,", "onednn_verbose,v1,primitive,exec,"),
                     ("onednn_verbose,info,", "onednn_verbose,v1,info,")):
        if line.startswith(old):
            return new + line[len(old):]
    return line


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-python", help="a Python with torch (a separate environment)")
    parser.add_argument("--onednn", nargs="+", default=[], metavar="PREFIX",
                        help="oneDNN installs to build benchmarks/conv_alone.cpp against")
    parser.add_argument("--pass", dest="pass_", choices=sorted(PROPS), default="weights",
                        help="the convolution pass: forward, data (gradient) or weights "
                             "(gradient)")
    parser.add_argument("--precision", choices=("bf16", "f32"), default="bf16")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), metavar="C,HW",
                        help="3x3 stride-1 problems: channels in and out, height and width")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--calls", type=int, default=50, help="timed calls per problem")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0,
                        help="the frameworks' threads (0: all the cores; oneDNN alone: all)")
    parser.add_argument("--out", help="also write the figures as JSON")
    args = parser.parse_args()
    try:
        shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes]
        assert all(len(s) == 2 and min(s) > 0 for s in shapes)
    except (ValueError, AssertionError):
        parser.error(f"--shapes must be pairs C,HW of positive integers. "
                     f"Received: --shapes {' '.join(args.shapes)}")
    if min(args.batch, args.calls, args.rounds) < 1 or min(args.warmup, args.threads) < 0:
        parser.error(f"--batch, --calls and --rounds must be at least 1, --warmup and "
                     f"--threads at least 0. Received: --batch {args.batch} --calls "
                     f"{args.calls} --rounds {args.rounds} --warmup {args.warmup} --threads "
                     f"{args.threads}")
    if args.torch_python:
        found = subprocess.run([args.torch_python, "-c", "import torch"], capture_output=True,
                               text=True) if os.access(args.torch_python, os.X_OK) else None
        if found is None or found.returncode:
            parser.error(f"--torch-python must be a Python with torch installed. "
                         f"Received: --torch-python {args.torch_python}")
    compiler = os.environ.get("CXX") or shutil.which("g++")
    for prefix in args.onednn:
        if not (os.path.isfile(os.path.join(prefix, "include", "oneapi", "dnnl", "dnnl.hpp"))
                and os.path.exists(os.path.join(prefix, "lib", "libdnnl.so"))):
            parser.error(f"--onednn: no include/oneapi/dnnl/dnnl.hpp and lib/libdnnl.so "
                         f"under it. Received: --onednn {prefix}")
    if args.onednn and not compiler:
        parser.error("--onednn needs a C++ compiler: g++ on the PATH, or $CXX")
    sys.path.insert(0, HERE)
    from machine import provenance

    record = provenance()
    spec = {"precision": args.precision, "shapes": shapes, "batch": args.batch,
            "calls": args.calls, "warmup": args.warmup, "threads": args.threads, "pass": args.pass_}
    me = os.path.abspath(__file__)
    sides = {"TensorFlow": ([sys.executable, me, "--tf-worker", json.dumps(spec)], {})}
    if args.torch_python:
        sides["PyTorch"] = ([args.torch_python, me, "--torch-worker", json.dumps(spec)], {})
    with tempfile.TemporaryDirectory() as build:
        for i, prefix in enumerate(args.onednn):
            lib = os.path.join(os.path.abspath(prefix), "lib")
            binary = os.path.join(build, f"conv_alone_{i}")
            built = subprocess.run(
                [compiler, "-O2", "-std=c++17", os.path.join(HERE, "conv_alone.cpp"),
                 f"-I{os.path.join(prefix, 'include')}", f"-L{lib}", "-ldnnl",
                 f"-Wl,-rpath,{lib}", "-o", binary], capture_output=True, text=True)
            if built.returncode:
                raise SystemExit(f"building benchmarks/conv_alone.cpp against --onednn "
                                 f"{prefix} failed:\n{built.stderr[-2000:]}")
            env = {"LD_LIBRARY_PATH": lib}
            if os.path.exists(os.path.join(lib, "libintelocl.so")):  # a SYCL build's CPU device
                env["OCL_ICD_FILENAMES"] = os.path.join(lib, "libintelocl.so")
            for scratchpad in ("library", "user"):
                sides[f"oneDNN #{i + 1} {scratchpad}"] = (
                    [binary, args.pass_, args.precision, scratchpad, str(args.warmup),
                     str(args.calls), str(args.batch), *args.shapes], env)
        results = {name: [] for name in sides}
        for round_ in range(args.rounds):
            for name in (list(sides) if round_ % 2 == 0 else list(sides)[::-1]):
                lines = run(*sides[name])
                runtime, calls = parse(lines, args.warmup, args.pass_)
                version = next((line for line in lines if line.startswith("oneDNN ")),
                               None) or json.loads(lines[-1])["version"]
                onednn = next(line.split("info,")[1] for line in lines
                              if line.startswith("onednn_verbose,v1,info,oneDNN v"))
                results[name].append({"version": version, "onednn": onednn,
                                      "runtime": runtime, "calls": calls})

    def label(name, runs):  # oneDNN's own runs by the version they ran
        if not name.startswith("oneDNN #"):
            return name
        return f"oneDNN {runs[0]['onednn'].split()[1][1:]} alone, scratchpad {name.split()[-1]}"

    results = {label(name, runs): runs for name, runs in results.items()}
    ms = {name: {p: statistics.median(r["calls"][p]["ms"] for r in runs)
                 for p in runs[0]["calls"]} for name, runs in results.items()}
    print(f"{record['machine']}: {record['cpu']}")
    print(f"3x3 convolution, {PASS_NAMES[args.pass_]}, batch {args.batch}, {args.precision}, "
          f"channels last; ms per call, median of {args.calls} calls, then of {args.rounds} "
          f"rounds\n")
    for name, runs in results.items():
        first = runs[0]
        kernels = sorted({c["kernel"] for c in first["calls"].values()})
        attributes = sorted({c["attributes"] or "-" for c in first["calls"].values()})
        framework = "" if first["version"].startswith("oneDNN") else first["version"] + ", "
        print(f"- {name}: {framework}{first['onednn']}, runtime {first['runtime']}; "
              f"kernel {', '.join(kernels)}; attributes {', '.join(attributes)}; memory "
              f"{next(iter(first['calls'].values()))['memory']}")
    print(f"\n| shape | {' | '.join(results)} |")
    print(f"|---|{'---:|' * len(results)}")
    for row in rows(ms, shapes, args.batch):
        print(f"| {' | '.join(row)} |")
    if args.out:
        record.update(**{"pass": args.pass_}, precision=args.precision, batch=args.batch,
                      calls=args.calls, warmup=args.warmup, rounds=args.rounds,
                      threads=args.threads, shapes=shapes,
                      load_average_end=[round(x, 2) for x in os.getloadavg()],
                      sides={name: {k: runs[0][k] for k in ("version", "onednn", "runtime")}
                             | {"kernels": sorted({c["kernel"]
                                                   for c in runs[0]["calls"].values()}),
                                "ms": ms[name],
                                "rounds_ms": [{p: c["ms"] for p, c in r["calls"].items()}
                                              for r in runs]}
                             for name, runs in results.items()})
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--tf-worker"]:
        tf_worker(json.loads(sys.argv[2]))
    elif sys.argv[1:2] == ["--torch-worker"]:
        torch_worker(json.loads(sys.argv[2]))
    else:
        main()
