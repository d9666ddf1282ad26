"""Training-step and inference images/s of kres models beside their baselines.

Every model is measured in the same run, in alternating rounds (each round
times every model once, so drifts of the machine's speed hit all of them):

- kres models (default ``resnet50 resnext50_32x4d cifar_resnet56 resnext29_8x64d``),
- ``keras:resnet50``: ``keras.applications.ResNet50``,
- ``keras-layers:<kres name>``: the kres network built from Keras's own
  layers: ``keras.layers.Conv2D(groups=g)`` for its grouped convolutions and
  ``keras.layers.BatchNormalization`` (a plain Keras ResNeXt);
  ``keras-groups:`` swaps the grouped convolutions only, ``keras-bn:`` the
  batch norms only,
- ``keras-layout:<kres ResNet>``: the kres network in keras.applications'
  layout (stride on the first 1x1, convolution biases, its batch-norm
  epsilon), which for ``resnet50`` is ``keras.applications.ResNet50`` layer
  for layer,
- ``split:<kres name>`` and ``native:<kres name>``: the kres model with its
  grouped convolutions' formulation forced (`kres.layers.use_formulation`; a
  set ``KRES_GROUPED_CONV`` still wins; a plain name is the layer's own choice),
- ``torch:<torchvision name>`` and ``torch-cl:<name>`` (channels-last), run
  by ``--torch-python`` (a Python that has torch, with or without torchvision; they are
  never a dependency of kres) in a child process each round;
- any of these with ``@bf16`` appended: in bfloat16 mixed precision, Keras's
  ``mixed_bfloat16`` policy (the builders' ``dtype``; float32 variables and
  classifier) for Keras models, ``torch.autocast(device, torch.bfloat16)``
  around the forward pass and loss for PyTorch ones (``torch-cl:resnet50@bf16``);
  ``@fp16``: ``mixed_float16`` with Keras's loss scaling, ``torch.autocast``
  in float16 with ``torch.amp.GradScaler``; ``@fp32``: float32. Without a
  suffix: float32, or float16 under ``--gpu``.

A training step is ``train_on_batch`` of the model compiled as ``kres train``
compiles it (SGD with momentum, cross-entropy), on a fixed random batch; an
inference step is ``predict_on_batch``. Figures are medians over rounds.
Achieved FLOP/s counts 2 FLOPs per multiply-accumulate, and 3 forward
passes' worth for a training step (the backward pass costs about twice the
forward); the peak is cores x FLOPs per cycle x clock, from ``/proc/cpuinfo``,
and the measured ceiling the FLOP/s of a large fp32 matrix product in the
same run (a virtual machine's nominal clock can understate the real one).

    python benchmarks/models.py                                   # ~25 min on 2 CPU cores
    python benchmarks/models.py --models resnet50 keras:resnet50 --rounds 5
    python benchmarks/models.py --torch-python /path/to/venv/bin/python \\
        --models resnext50_32x4d torch-cl:resnext50_32x4d torch:resnext50_32x4d
    python benchmarks/models.py --gpu --models resnet50 resnext50_32x4d  # mixed precision,
                                                                         # XLA, batch sweep
    KERAS_BACKEND=jax python benchmarks/models.py --gpu --torch-python python3 \
        --models resnet50 torch-cl:resnet50 --mode train --batch-sizes 256
    python benchmarks/models.py --torch-python /path/to/venv/bin/python --models \
        resnet50 resnet50@bf16 torch-cl:resnet50 torch-cl:resnet50@bf16 \
        --ratio resnet50@bf16 torch-cl:resnet50@bf16 --ratio resnet50@bf16 resnet50

``--gpu`` runs every model on the GPU (PyTorch's too) and takes the measured
FLOP/s of a large float16 matrix product as the ceiling. The Keras models run
on whichever backend ``KERAS_BACKEND`` names: kres's networks are plain Keras
models, so TensorFlow is not needed for this script on a machine without it.

Set ``TF_ENABLE_ONEDNN_OPTS=0`` in the environment to measure without oneDNN
(it must be set before TensorFlow is imported); ``--onednn both`` runs the
whole measurement twice in child processes.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import machine

DEFAULT_MODELS = ["resnet50", "keras:resnet50", "resnext50_32x4d", "cifar_resnet56",
                  "resnext29_8x64d"]
CIFAR_PREFIXES = ("cifar_", "resnext29_", "wrn")


def is_cifar(name):
    return name.split(":")[-1].startswith(CIFAR_PREFIXES)


# --- PyTorch, in a child process ---------------------------------------------------------

TORCH_RESNETS = {  # name: (stage depths, cardinality, width per group)
    "resnet50": ((3, 4, 6, 3), 1, 64),
    "resnet101": ((3, 4, 23, 3), 1, 64),
    "resnext50_32x4d": ((3, 4, 6, 3), 32, 4),
    "resnext101_32x8d": ((3, 4, 23, 3), 32, 8),
    "wide_resnet50_2": ((3, 4, 6, 3), 1, 128),
}


def torch_resnet(name, classes):
    """torchvision's bottleneck ResNet/ResNeXt (v1.5), for a torch without torchvision.

    The same layers, order and parameter count as ``torchvision.models.<name>``
    (the worker reports the count, so a mismatch shows).
    """
    from torch import nn

    depths, groups, width_per_group = TORCH_RESNETS[name]

    def conv_bn(cin, cout, k, stride=1, groups=1):
        return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                nn.BatchNorm2d(cout)]

    class Bottleneck(nn.Module):
        def __init__(self, cin, planes, stride):
            super().__init__()
            width = planes * width_per_group // 64 * groups
            self.branch = nn.Sequential(
                *conv_bn(cin, width, 1), nn.ReLU(inplace=True),
                *conv_bn(width, width, 3, stride, groups), nn.ReLU(inplace=True),
                *conv_bn(width, planes * 4, 1))
            self.shortcut = (nn.Sequential(*conv_bn(cin, planes * 4, 1, stride))
                             if stride != 1 or cin != planes * 4 else nn.Identity())
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            return self.relu(self.branch(x) + self.shortcut(x))

    stages, cin = [], 64
    for i, depth in enumerate(depths):
        planes = 64 * 2 ** i
        for j in range(depth):
            stages.append(Bottleneck(cin, planes, 2 if j == 0 and i > 0 else 1))
            cin = planes * 4
    return nn.Sequential(*conv_bn(3, 64, 7, 2), nn.ReLU(inplace=True),
                         nn.MaxPool2d(3, 2, 1), *stages, nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(cin, classes))


def torch_worker(spec):
    """Times one torchvision model; prints a JSON line. Runs under --torch-python."""
    import torch

    torch.manual_seed(0)
    try:
        import torchvision

        model = getattr(torchvision.models, spec["model"])(num_classes=spec["classes"])
        source = f"torchvision {torchvision.__version__}"
    except ImportError:
        model = torch_resnet(spec["model"], spec["classes"])
        source = "benchmarks/models.py's torch_resnet (no torchvision)"
    size, device = spec["size"], spec["device"]
    torch.backends.cudnn.benchmark = True  # cuDNN's autotuning, as XLA's on the Keras side
    x = torch.randn(spec["batch"], 3, size, size, device=device)
    y = torch.randint(0, spec["classes"], (spec["batch"],), device=device)
    model = model.to(device)
    if spec["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), "source": source,
              "params": sum(p.numel() for p in model.parameters()),
              "device": torch.cuda.get_device_name() if device == "cuda" else "cpu"}
    dtype = {"mixed_bfloat16": torch.bfloat16, "mixed_float16": torch.float16}.get(spec["dtype"])
    autocast = torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None)
    # float16 training scales the loss, as Keras's LossScaleOptimizer does.
    scaler = torch.amp.GradScaler(device, enabled=dtype == torch.float16)
    if spec["mode"] == "train":
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)

        def step():
            opt.zero_grad(set_to_none=True)
            with autocast:
                loss = torch.nn.functional.cross_entropy(model(x), y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
    else:
        model.eval()

        def step():
            with torch.inference_mode(), autocast:
                model(x)

    def sync():  # the GPU runs ahead of Python: wait for it before reading the clock
        if device == "cuda":
            torch.cuda.synchronize()

    for _ in range(spec["warmup"]):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(spec["steps"]):
        step()
    sync()
    result["seconds_per_step"] = (time.perf_counter() - start) / spec["steps"]
    print(json.dumps(result))


class TorchModel:
    def __init__(self, name, python, size, classes, default_dtype, device):
        kind, self.model = name.split(":")
        self.model, self.dtype = split_precision(self.model, default_dtype)
        self.name, self.python, self.size, self.classes = name, python, size, classes
        self.device = device
        self.channels_last = kind == "torch-cl"
        self.macs = None

    def seconds_per_step(self, mode, batch, steps, warmup):
        spec = {"model": self.model, "size": self.size, "classes": self.classes,
                "batch": batch, "steps": steps, "warmup": warmup, "mode": mode,
                "channels_last": self.channels_last, "dtype": self.dtype,
                "device": self.device}
        done = subprocess.run([self.python, __file__, "--torch-worker", json.dumps(spec)],
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{self.name}'s worker failed ({spec}):\n{done.stderr[-3000:]}")
        out = done.stdout
        result = json.loads(out.strip().splitlines()[-1])
        self.version = (f"PyTorch {result['torch']} on {result['device']}, "
                        f"{result['threads']} threads, model from "
                        f"{result['source']}, {result['params']:,} parameters")
        return result["seconds_per_step"]


# --- Keras -------------------------------------------------------------------------------

class KerasModel:
    def __init__(self, name, size, classes, batch_sizes, jit_compile, default_dtype):
        import keras
        import numpy as np

        import kres
        from kres import layers
        from kres.models.families.resnet import KERAS_V1_LAYOUT

        self.name = name
        name, dtype = split_precision(name, default_dtype)
        kind, _, model_name = name.rpartition(":")
        shape = (size, size, 3)
        if kind == "keras":
            if model_name != "resnet50":
                raise ValueError(f"keras: models: resnet50 only. Received: {name!r}")
            policy = keras.mixed_precision.global_policy()
            keras.mixed_precision.set_global_policy(dtype)
            try:
                self.model = keras.applications.ResNet50(weights=None, input_shape=shape,
                                                         classes=classes)
            finally:
                keras.mixed_precision.set_global_policy(policy)
        else:
            overrides = KERAS_V1_LAYOUT if kind == "keras-layout" else {}
            self.model = kres.build_model(model_name, classes=classes, input_shape=shape,
                                          dtype=dtype, **overrides)
            if kind == "keras-layers":  # the plain Keras network
                self.model = with_keras_layers(
                    self.model, (layers.GroupedConv2D, layers.BatchNormalization))
            elif kind == "keras-bn":
                self.model = with_keras_layers(self.model, (layers.BatchNormalization,))
            elif kind == "keras-groups":
                self.model = with_keras_layers(self.model, (layers.GroupedConv2D,))
            elif kind and kind not in (*layers.FORMULATIONS, "keras-layout"):
                raise ValueError(f"Unknown model kind {kind!r}. Received: {name!r}")
        self.macs = kres.count_macs(self.model)
        self.model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                           loss="sparse_categorical_crossentropy", jit_compile=jit_compile)
        rng = np.random.default_rng(0)
        # Tensors made once (on the GPU when there is one): no copies in the timed steps.
        tensor = keras.ops.convert_to_tensor
        self.batches = {b: (tensor(rng.normal(size=(b, *shape)).astype("float32")),
                            tensor(rng.integers(0, classes, b))) for b in batch_sizes}
        if kind in layers.FORMULATIONS:
            # GroupedConv2D reads its formulation when traced: trace every step now.
            with layers.use_formulation(self.model, kind):
                for x, y in self.batches.values():
                    self.model.train_on_batch(x, y)
                    self.model.predict_on_batch(x)

    def seconds_per_step(self, mode, batch, steps, warmup):
        x, y = self.batches[batch]
        if mode == "train":
            def step():
                self.model.train_on_batch(x, y)
        else:
            def step():
                self.model.predict_on_batch(x)
        for _ in range(warmup):
            step()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        return (time.perf_counter() - start) / steps


PRECISIONS = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def split_precision(name, default="float32"):
    """``("resnet50", "mixed_bfloat16")`` for ``"resnet50@bf16"``; `default` without a suffix.

    Suffixes: ``@fp32``, ``@bf16`` (``mixed_bfloat16``), ``@fp16`` (``mixed_float16``).
    """
    name, _, suffix = name.partition("@")
    if suffix and suffix not in PRECISIONS:
        raise ValueError(f"Unknown precision suffix @{suffix}: one of "
                         f"{', '.join('@' + p for p in PRECISIONS)} or none. Received: {name!r}")
    return name, PRECISIONS[suffix] if suffix else default


def with_keras_layers(model, classes):
    """The same network with Keras's built-in layers in place of kres's `classes`.

    `kres.layers.GroupedConv2D` becomes `keras.layers.Conv2D(groups=g)`,
    `kres.layers.BatchNormalization` becomes `keras.layers.BatchNormalization`.
    """
    import keras

    from kres import layers

    builtin = {layers.GroupedConv2D: keras.layers.Conv2D,
               layers.BatchNormalization: keras.layers.BatchNormalization}

    def clone(layer):
        cls = builtin[type(layer)] if type(layer) in classes else type(layer)
        return cls.from_config(layer.get_config())

    return keras.models.clone_model(model, clone_function=clone)


# --- the run -----------------------------------------------------------------------------

def measure(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    tf = None
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if args.inter_op_threads:
            tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
    # Models without a precision suffix: mixed float16 on a GPU, float32 on a CPU.
    default_dtype = "mixed_float16" if args.gpu else "float32"
    modes = ["train", "infer"] if args.mode == "both" else [args.mode]
    print(f"{machine.describe(tf)}; Keras {keras.__version__}" + (
        "" if tf is None else "; inter-op threads "
        f"{tf.config.threading.get_inter_op_parallelism_threads() or '(TF default)'}"))
    if args.gpu:  # no datasheet peak: the measured product is the ceiling
        peak = None
        ceiling = machine.matmul_flops(8192, "float16", repeats=10)
        print(f"measured ceiling: an 8192x8192 float16 matrix product, "
              f"{ceiling / 1e12:.0f} TFLOP/s")
    else:
        peak, derivation = machine.cpu_peak()
        print(f"CPU peak estimate: {derivation}")
        ceiling = machine.matmul_flops()
        print(f"measured ceiling: a 4096x4096 fp32 matrix product, {ceiling / 1e9:.0f} GFLOP/s"
              + (f" ({ceiling / peak:.0%} of the estimate)" if peak else ""))
    models = []
    for name in args.models:
        cifar = is_cifar(name)
        size, classes = (32, 10) if cifar else (224, 1000)
        batches = args.cifar_batch_sizes if cifar else args.batch_sizes
        if name.startswith("torch"):
            if not args.torch_python:
                print(f"skipping {name}: no --torch-python")
                continue
            model = TorchModel(name, args.torch_python, size, classes, default_dtype,
                               "cuda" if args.gpu else "cpu")
        else:
            model = KerasModel(name, size, classes, batches, args.jit_compile, default_dtype)
        model.batch_sizes = batches
        models.append(model)
    macs = {m.name: m.macs for m in models}
    for m in models:  # torchvision's networks are the kres ones with the same name
        if m.macs is None:
            m.macs = next((v for k, v in macs.items()
                           if v and split_precision(k.split(":")[-1])[0] == m.model), None)
    samples = {}
    for r in range(args.rounds):
        for m in models:
            for mode in modes:
                for batch in m.batch_sizes:
                    # A torch model starts a fresh process every round.
                    warmup = args.warmup if r == 0 or isinstance(m, TorchModel) else 1
                    seconds = m.seconds_per_step(mode, batch, args.steps, warmup)
                    samples.setdefault((m.name, mode, batch), []).append(batch / seconds)
                    print(f"round {r + 1}/{args.rounds} {m.name} {mode} batch {batch}: "
                          f"{batch / seconds:.2f} img/s", flush=True)
    print()
    for m in models:
        if isinstance(m, TorchModel):
            print(f"{m.name}: {m.version}")
    print("| model | mode | batch | img/s (median) | rounds | GFLOP/s | of peak | of matmul |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    table = {}
    for m in models:
        for mode in modes:
            for batch in m.batch_sizes:
                rate = statistics.median(samples[(m.name, mode, batch)])
                table[(m.name, mode, batch)] = rate
                flops = rate * 2 * m.macs * (3 if mode == "train" else 1) if m.macs else None
                print(f"| {m.name} | {mode} | {batch} | {rate:.2f} | {args.rounds} | "
                      f"{'' if flops is None else f'{flops / 1e9:.1f}'} | "
                      f"{'' if not (flops and peak) else f'{flops / peak:.0%}'} | "
                      f"{'' if not (flops and ceiling) else f'{flops / ceiling:.0%}'} |")
    ratios = [(a, b) for a, b in args.ratios]
    if ratios:
        print()
        print("| ratio | mode | batch | value |")
        print("|---|---|---:|---:|")
        for a, b in ratios:
            for (name, mode, batch), rate in table.items():
                if name == a and (b, mode, batch) in table:
                    print(f"| {a} / {b} | {mode} | {batch} | "
                          f"{rate / table[(b, mode, batch)]:.2f} |")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--torch-worker":
        torch_worker(json.loads(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--mode", choices=("train", "infer", "both"), default="both")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16],
                        help="batch sizes for the 224x224 models")
    parser.add_argument("--cifar-batch-sizes", type=int, nargs="+", default=[32],
                        help="batch sizes for the 32x32 models")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps in round 1")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ratio", dest="ratios", nargs=2, action="append", default=[],
                        metavar=("A", "B"), help="also print A's img/s over B's")
    parser.add_argument("--jit-compile", action="store_true", help="compile with XLA")
    parser.add_argument("--inter-op-threads", type=int, default=None,
                        help="TensorFlow's inter-op threads (ops run at once; default: TF's)")
    parser.add_argument("--gpu", action="store_true",
                        help="GPU mode: float16 mixed precision, XLA, batch sweep 64 128 256")
    parser.add_argument("--torch-python", default=None,
                        help="a Python with torch and torchvision, for the torch: models")
    parser.add_argument("--onednn", choices=("on", "off", "both", "inherit"), default="inherit")
    args = parser.parse_args()
    if args.gpu:
        if machine.gpu_name() is None:  # before any model is built
            parser.error("--gpu: nvidia-smi lists no GPU on this machine")
        args.jit_compile = True
        if args.batch_sizes == [16]:
            args.batch_sizes = [64, 128, 256]
        if args.cifar_batch_sizes == [32]:
            args.cifar_batch_sizes = [128, 256, 512]
        args.steps = max(args.steps, 20)
    machine.main_per_onednn(__file__, args.onednn, measure, args)


if __name__ == "__main__":
    main()
