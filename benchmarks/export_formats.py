"""One model in every export format, side by side: size, latency, throughput, accuracy.

For a trained `kres train` model (default: the newest `make demo` run) and a
ResNet-50 with random weights, exports a SavedModel (TF Serving) and LiteRT
files (float32, float16, dynamic-range and full-integer int8) and an ONNX
file, then measures, in interleaved rounds so that a drifting machine
affects every format alike:

- the file size (a SavedModel: all its files);
- single-image latency (batch 1, median over the calls) and batch
  throughput (images/s at batch 32);
- for the trained model, accuracy on the 10,000 test images through each
  format (its dataset's test split).

Threads: TensorFlow's default for the SavedModel, `--threads` for LiteRT and
ONNX Runtime (default: the machine's cores).

    .venv/bin/python benchmarks/export_formats.py
    .venv/bin/python benchmarks/export_formats.py --model runs/<run>/best.keras --rounds 5

``--out FILE`` also writes the figures as JSON, with the date, machine,
command and commit (`machine.provenance`) and the run's own `results.json`
test accuracy; docs/export.md and the README quote
``benchmarks/results/export_formats.json``, made on the `make demo` model of
``benchmarks/results/demo.json``:

    .venv/bin/python benchmarks/export_formats.py --model <demo.json's run>/best.keras \
        --skip-resnet50 --out benchmarks/results/export_formats.json
"""

import argparse
import glob
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# kres from the checkout this script is in (a clean worktree measures its own commit).
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from machine import describe, provenance  # noqa: E402

import kres  # noqa: E402
from kres import rundir as runs  # noqa: E402
from kres.data import calibration  # noqa: E402
from kres.preprocessing import Preprocessing  # noqa: E402
from kres.serving import litert_onnx  # noqa: E402

VARIANTS = [("saved_model", "none"), ("tflite", "none"), ("tflite", "float16"),
            ("tflite", "dynamic"), ("tflite", "int8"), ("onnx", "none")]


def folder_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path)
               for f in files if f != "kres.json")


class Runner:
    """Calls one export on float32 pixels [n, h, w, c] (0-255) and gives probabilities."""

    def __init__(self, fmt, path, threads):
        self.fmt = fmt
        if fmt == "saved_model":
            self.function = tf.saved_model.load(path).signatures["serving_pixels"]
            self.size = folder_bytes(path)
            return
        with open(os.path.join(path, "kres.json")) as f:
            record = json.load(f)
        with open(os.path.join(path, record["file"]), "rb") as f:
            content = f.read()
        self.size = len(content)
        self.uint8 = record["input"]["dtype"] == "uint8"
        if fmt == "tflite":
            self.runner = litert_onnx.interpreter(content, threads)
            self.input = self.runner.get_input_details()[0]
            self.output = self.runner.get_output_details()[0]
            self.shape = None
        else:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            self.session = ort.InferenceSession(content, options,
                                                providers=["CPUExecutionProvider"])
            self.name = self.session.get_inputs()[0].name

    def __call__(self, pixels):
        if self.fmt == "saved_model":
            return self.function(pixels=tf.constant(np.round(pixels).astype(np.uint8)))[
                "probabilities"].numpy()
        x = np.round(pixels).astype(np.uint8) if self.uint8 else pixels.astype(np.float32)
        if self.fmt == "onnx":
            return self.session.run(None, {self.name: x})[0]
        if self.shape != x.shape:
            self.runner.resize_tensor_input(self.input["index"], list(x.shape))
            self.runner.allocate_tensors()
            self.shape = x.shape
        self.runner.set_tensor(self.input["index"], x)
        self.runner.invoke()
        return self.runner.get_tensor(self.output["index"])


def export_all(model_path_or_model, out, prep, calibration_images, threads):
    runners = {}
    for fmt, quantize in VARIANTS:
        name = f"{fmt}-{quantize}"
        path = os.path.join(out, name)
        kwargs = {} if fmt == "saved_model" else dict(
            format=fmt, quantize=quantize, calibration_images=calibration_images)
        written = kres.export(model_path_or_model, path, preprocessing=prep, **kwargs)
        runners[name] = Runner(fmt, written, threads)
    return runners


def timings(runners, single, batch, rounds, calls):
    latency = {name: [] for name in runners}
    throughput = {name: [] for name in runners}
    for runner in runners.values():  # warm up
        runner(single)
        runner(batch)
    for _ in range(rounds):
        for name, runner in runners.items():
            for _ in range(calls):
                start = time.perf_counter()
                runner(single)
                latency[name].append(time.perf_counter() - start)
            start = time.perf_counter()
            runner(batch)
            throughput[name].append(len(batch) / (time.perf_counter() - start))
    return ({n: statistics.median(v) for n, v in latency.items()},
            {n: statistics.median(v) for n, v in throughput.items()})


def rows(runners, latency, throughput, accuracy=None):
    """The figures of `table` per format, for the results file."""
    reference = "saved_model-none"
    return {name: {"bytes": runner.size,
                   "x_smaller_than_saved_model": runners[reference].size / runner.size,
                   "ms_per_image_batch_1": latency[name] * 1000,
                   "images_per_s_batch_32": throughput[name],
                   "x_saved_model_images_per_s": throughput[name] / throughput[reference],
                   **({"test_accuracy": accuracy[name]} if accuracy else {})}
            for name, runner in runners.items()}


def table(title, runners, latency, throughput, accuracy=None):
    print(f"\n{title}")
    reference = "saved_model-none"
    header = (f"{'format':<20}{'bytes':>14}{'x smaller':>10}{'ms/image (b1)':>15}"
              f"{'img/s (b32)':>13}{'x SavedModel':>14}")
    print(header + (f"{'test accuracy':>15}" if accuracy else ""))
    for name, runner in runners.items():
        row = (f"{name:<20}{runner.size:>14,}{runners[reference].size / runner.size:>10.2f}"
               f"{latency[name] * 1000:>15.2f}{throughput[name]:>13.1f}"
               f"{throughput[name] / throughput[reference]:>14.2f}")
        print(row + (f"{accuracy[name]:>15.4f}" if accuracy else ""))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a .keras file of a kres run (default: newest demo)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=20, help="single-image calls per round")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--skip-resnet50", action="store_true")
    parser.add_argument("--out", help="also write the figures here (JSON)")
    args = parser.parse_args(argv)
    record = provenance(argv)
    print(describe(tf))
    model_path = args.model or sorted(glob.glob("runs/demo-*/best.keras"))[-1]
    described = runs.read_json(os.path.join(os.path.dirname(model_path), "model.json"))
    prep = Preprocessing.from_json(described["preprocessing"])
    dataset = described["dataset"]
    out = tempfile.mkdtemp(prefix="kres-formats-")

    calib = calibration.sample_pixels(dataset, prep, 256)
    runners = export_all(model_path, os.path.join(out, "trained"), prep, calib, args.threads)
    test = calibration.sample_pixels(dataset, prep, 10_000, split="test")
    data = kres.data.sources.load(dataset)
    labels = np.array([int(label) for _, label in data.test.take(len(test))])
    accuracy = {}
    for name, runner in runners.items():
        predicted = np.concatenate([runner(test[i:i + 500]).argmax(axis=1)
                                    for i in range(0, len(test), 500)])
        accuracy[name] = float(np.mean(predicted == labels))
    latency, throughput = timings(runners, test[:1], test[:32], args.rounds, args.calls)
    table(f"{model_path} ({described['model']}, {prep.height}x{prep.width}x{prep.channels}, "
          f"{len(test):,} test images of {dataset})", runners, latency, throughput, accuracy)
    run_results = runs.read_json(os.path.join(os.path.dirname(model_path), "results.json"))
    record.update(rounds=args.rounds, calls=args.calls, threads=args.threads,
                  model={"path": os.path.abspath(model_path), "model": described["model"],
                         "dataset": dataset, "test_images": len(test),
                         "run_precision": run_results.get("precision"),
                         "run_test_accuracy": run_results.get("test_accuracy")},
                  formats=rows(runners, latency, throughput, accuracy))

    if not args.skip_resnet50:
        model = kres.ResNet50(weights=None)
        imagenet = Preprocessing.imagenet((224, 224, 3))
        rng = np.random.default_rng(0)
        pixels = rng.integers(0, 256, (64, 224, 224, 3)).astype(np.float32)
        runners = export_all(model, os.path.join(out, "resnet50"), imagenet, pixels[:32],
                             args.threads)
        latency, throughput = timings(runners, pixels[:1], pixels[:32], args.rounds,
                                      max(args.calls // 4, 3))
        table("ResNet-50, random weights, 224x224x3 (int8 calibrated on 32 random images)",
              runners, latency, throughput)
        record["resnet50_random_weights"] = rows(runners, latency, throughput)
    record["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
        print(f"wrote {args.out}")
    print(f"\nexports in {out}")


if __name__ == "__main__":
    main()
