"""`kres train` against a PyTorch peer: ResNet-20 on Fashion-MNIST, one recipe, side by side.

The peer is a PyTorch program of the same run, written here to be as fast
as plain PyTorch allows on a CPU (channels-last, the whole split in memory
as uint8, each batch augmented in one vectorised step, no loader
processes to share the cores with): He et al.'s CIFAR ResNet-20 (3x3 stem
of 16, three stages of 3 basic blocks, 16/32/64 wide, option A shortcuts:
strided identity padded with zero channels on both sides), batch norm with PyTorch's
momentum 0.1 (Keras's 0.9) and epsilon 1e-5, the last batch norm of each
residual branch zero-initialised, He-normal convolutions over fan-out;
fast-cpu's recipe: SGD with Nesterov momentum 0.9 at 0.2, batch 128, weight
decay 5e-4 coupled, on convolution and dense kernels only, a linear warmup
of 2 epochs (per step) into a cosine decay to zero, label smoothing 0.1,
the CIFAR pad-4-crop and horizontal flip, and the test scored with each
image's and its mirror's predictions averaged. Its data are kres's:
Fashion-MNIST's IDX files, the first 55,000 training images trained on,
the last 5,000 held out for validation after every epoch, the 10,000 test
images scored at the end. ``mixed_bfloat16`` runs the forward pass and loss
under ``torch.autocast("cpu", torch.bfloat16)``.

kres runs ``kres train --model cifar_resnet20 --dataset fashion_mnist
--recipe fast-cpu`` with the same epochs and precision in the main
environment. Both sides report images/s as kres does: the training images
over each epoch's wall time, validation included, the median over the
epochs (the peer's training-only figure beside). The runs alternate, each
alone on the machine, the order swapped every round.

PyTorch is never a dependency of kres: ``--torch-python`` is a Python of a
separate environment with torch (``python3 -m venv ENV && ENV/bin/pip
install torch``)::

    .venv/bin/python benchmarks/torch_peer.py --torch-python /path/to/ENV/bin/python \\
        --precisions float32 mixed_bfloat16 --epochs 3 --rounds 2 \\
        --out benchmarks/results/torch_peer.json
"""

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
TRAIN, VAL = 55000, 5000
MEAN, STD = 0.2860, 0.3530  # kres's Fashion-MNIST normalisation (kres.preprocessing)
RECIPE = dict(batch=128, lr=0.2, momentum=0.9, weight_decay=5e-4, warmup_epochs=2,
              label_smoothing=0.1, pad=4)


def _idx(path):
    import numpy as np

    with gzip.open(path) as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def peer_resnet20(classes=10):
    """He et al.'s CIFAR ResNet-20 with option A shortcuts, in PyTorch, for one channel."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            nn.init.zeros_(self.bn2.weight)
            self.stride, self.extra = stride, cout - cin

        def forward(self, x):
            out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
            if self.stride > 1 or self.extra:
                half = self.extra // 2  # zero channels on both sides, as kres's
                x = F.pad(x[:, :, ::self.stride, ::self.stride],
                          (0, 0, 0, 0, half, self.extra - half))
            return F.relu(out + x)

    class ResNet20(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False),
                                      nn.BatchNorm2d(16), nn.ReLU())
            blocks, cin = [], 16
            for width, stride in ((16, 1), (32, 2), (64, 2)):
                for i in range(3):
                    blocks.append(Block(cin, width, stride if i == 0 else 1))
                    cin = width
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(64, classes)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

        def forward(self, pixels):
            x = (pixels.float() / 255.0 - MEAN) / STD
            x = self.blocks(self.stem(x))
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    return ResNet20()


def peer_worker(spec):
    """Trains the peer; prints one JSON line. Runs under --torch-python."""
    import math

    import numpy as np
    import torch
    from torch.nn import functional as F

    torch.manual_seed(spec["seed"])
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    x = torch.from_numpy(_idx(f"{FASHION_MNIST}/train-images-idx3-ubyte.gz").copy())
    y = torch.from_numpy(_idx(f"{FASHION_MNIST}/train-labels-idx1-ubyte.gz").astype(np.int64))
    x_test = torch.from_numpy(_idx(f"{FASHION_MNIST}/t10k-images-idx3-ubyte.gz").copy())
    y_test = torch.from_numpy(_idx(f"{FASHION_MNIST}/t10k-labels-idx1-ubyte.gz")
                              .astype(np.int64))
    x, x_val, y, y_val = x[:TRAIN], x[-VAL:], y[:TRAIN], y[-VAL:]
    cl = torch.channels_last

    def nchw(images):  # uint8 (n, 28, 28) -> (n, 1, 28, 28), channels-last in memory
        return images[:, None].contiguous(memory_format=cl)

    model = peer_resnet20().to(memory_format=cl)
    decay = [p for n, p in model.named_parameters() if n.endswith("weight") and p.ndim > 1]
    rest = [p for n, p in model.named_parameters() if not (n.endswith("weight") and p.ndim > 1)]
    r = RECIPE
    opt = torch.optim.SGD([{"params": decay, "weight_decay": r["weight_decay"]},
                           {"params": rest, "weight_decay": 0.0}],
                          lr=r["lr"], momentum=r["momentum"], nesterov=True)
    steps = math.ceil(TRAIN / r["batch"])
    total, warmup = spec["epochs"] * steps, r["warmup_epochs"] * steps

    def factor(step):  # linear warmup into a cosine decay to zero, per step
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16,
                              enabled=spec["precision"] == "mixed_bfloat16")
    pad, size = r["pad"], x.shape[-1]
    offsets = torch.arange(size)

    def augment(images):  # pad-crop with zeros and flip, every image its own draw
        n = len(images)
        padded = F.pad(images, (pad, pad, pad, pad))
        dy, dx = (torch.randint(0, 2 * pad + 1, (n, 1)) for _ in range(2))
        rows, cols = offsets + dy, offsets + dx
        out = padded[torch.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
        flip = torch.rand(n) < 0.5
        return torch.where(flip[:, None, None], out.flip(-1), out)

    def predict(images, flip=False):
        model.eval()
        outs = []
        with torch.inference_mode(), autocast:
            for i in range(0, len(images), r["batch"]):
                batch = nchw(images[i:i + r["batch"]])
                p = model(batch).float().softmax(-1)
                if flip:
                    p = (p + model(batch.flip(-1)).float().softmax(-1)) / 2
                outs.append(p)
        return torch.cat(outs)

    epochs = []
    for _ in range(spec["epochs"]):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(TRAIN)
        for i in range(0, TRAIN, r["batch"]):
            index = order[i:i + r["batch"]]
            batch = nchw(augment(x[index]))
            with autocast:
                loss = F.cross_entropy(model(batch), y[index],
                                       label_smoothing=r["label_smoothing"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
        trained = time.perf_counter()
        val_accuracy = (predict(x_val).argmax(-1) == y_val).float().mean().item()
        epochs.append({"train_seconds": trained - start,
                       "epoch_seconds": time.perf_counter() - start,
                       "val_accuracy": val_accuracy, "loss": loss.item()})
    test = predict(x_test, flip=True)
    print(json.dumps({
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "test_accuracy": (test.argmax(-1) == y_test).float().mean().item(),
        "best_val_accuracy": max(e["val_accuracy"] for e in epochs),
        "images_per_second": statistics.median(TRAIN / e["epoch_seconds"] for e in epochs),
        "train_only_images_per_second": statistics.median(
            TRAIN / e["train_seconds"] for e in epochs),
        "epochs": epochs}))


def run_peer(python, precision, epochs, seed):
    spec = {"precision": precision, "epochs": epochs, "seed": seed}
    done = subprocess.run([python, __file__, "--peer-worker", json.dumps(spec)],
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the PyTorch peer failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_kres(precision, epochs, seed):
    with tempfile.TemporaryDirectory() as run_dir:
        command = [os.path.join(ROOT, ".venv", "bin", "python"), "-m", "kres.cli", "train",
                   "--quiet", "--model", "cifar_resnet20", "--dataset", "fashion_mnist",
                   "--recipe", "fast-cpu", "--epochs", str(epochs), "--precision", precision,
                   "--seed", str(seed), "--out", os.path.join(run_dir, "run")]
        done = subprocess.run(command, capture_output=True, text=True,
                              env={**os.environ, "KERAS_BACKEND": "tensorflow"})
        if done.returncode:
            raise SystemExit(f"kres train failed:\n{done.stderr[-3000:]}")
        with open(os.path.join(run_dir, "run", "results.json")) as f:
            results = json.load(f)
    return {"precision": results["precision"], "test_accuracy": results["test_accuracy"],
            "best_val_accuracy": results["best_val_accuracy"],
            "images_per_second": results["train_images_per_second"],
            "epoch_seconds": results["epoch_times"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-python", required=True,
                        help="a Python with torch (a separate environment)")
    parser.add_argument("--precisions", nargs="+", default=["float32"],
                        choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.epochs < 1 or args.rounds < 1:
        parser.error(f"--epochs and --rounds must be at least 1. Received: "
                     f"--epochs {args.epochs} --rounds {args.rounds}")
    found = subprocess.run([args.torch_python, "-c", "import torch"], capture_output=True,
                           text=True) if os.access(args.torch_python, os.X_OK) else None
    if found is None or found.returncode:
        parser.error(f"--torch-python must be a Python with torch installed"
                     f"{': ' + found.stderr.strip().splitlines()[-1] if found else ''}. "
                     f"Received: --torch-python {args.torch_python}")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from machine import provenance

    record = provenance()
    runs = []
    for round_ in range(args.rounds):
        for precision in args.precisions:
            sides = [("kres", lambda p=precision: run_kres(p, args.epochs, args.seed)),
                     ("pytorch", lambda p=precision: run_peer(args.torch_python, p,
                                                              args.epochs, args.seed))]
            for side, run in sides[::-1] if round_ % 2 else sides:
                row = {"side": side, "precision": precision, "round": round_, **run()}
                runs.append(row)
                print(f"round {round_} {side:8} {precision:15} {row['images_per_second']:7.1f} "
                      f"images/s, test {row['test_accuracy']:.4f}", flush=True)
    summary = {}
    for precision in args.precisions:
        speed = {side: statistics.median(r["images_per_second"] for r in runs
                                         if (r["side"], r["precision"]) == (side, precision))
                 for side in ("kres", "pytorch")}
        summary[precision] = {**{f"{s}_images_per_second": v for s, v in speed.items()},
                              "kres_over_pytorch": speed["kres"] / speed["pytorch"]}
        print(f"{precision:15} kres {speed['kres']:7.1f}, PyTorch {speed['pytorch']:7.1f} "
              f"images/s: kres {speed['kres'] / speed['pytorch']:.2f}x")
    record.update(epochs=args.epochs, runs=runs, summary=summary,
                  load_average_end=[round(x, 2) for x in os.getloadavg()])
    if args.out:
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--peer-worker"]:
        peer_worker(json.loads(sys.argv[2]))
    else:
        main()
