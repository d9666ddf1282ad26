"""Grouped convolution on this machine: every exact formulation, timed side by side.

For each ResNeXt layer shape (ResNeXt-50 32x4d at 224x224, ResNeXt-29 8x64d at
32x32) it times the forward pass and the forward+backward pass (gradients for
the input and the kernel) of:

- ``native``: TensorFlow's grouped ``Conv2D`` op (on a CPU its backward pass
  runs only with oneDNN on: a "fails" cell otherwise),
- ``native-xla``: the same op compiled with XLA (what ``keras.layers.Conv2D(groups=g)``
  runs on CPU),
- ``split``: one ordinary convolution per group, concatenated,
- ``depthwise-sum``: a depthwise convolution with a channel multiplier, then a
  sum over each group's input channels,
- ``block-diagonal``: one dense convolution whose kernel is zero outside the
  groups (g times the arithmetic),
- ``patches-matmul``: the k*k shifted input slices stacked, then one batched
  matrix product per group.

Every candidate is first checked against ``split`` (outputs and gradients).
Figures are milliseconds per call, median of ``--repeats``; the last columns
are each candidate's time over the fastest one's.

    python benchmarks/grouped_conv.py                    # ~10 min on 2 CPU cores
    python benchmarks/grouped_conv.py --onednn both      # runs itself twice: oneDNN on and off
    python benchmarks/grouped_conv.py --shapes r50-s3 --skip native-xla

``TF_ENABLE_ONEDNN_OPTS`` must be set before TensorFlow is imported, so
``--onednn on|off|both`` runs the measurement in a child process.
"""

import argparse
import os
import statistics
import time

import machine

# name: (batch, height, width, channels, groups, stride); channels in = out.
SHAPES = {
    "r50-s1": (16, 56, 56, 128, 32, 1),
    "r50-s2": (16, 28, 28, 256, 32, 1),
    "r50-s2-down": (16, 56, 56, 256, 32, 2),
    "r50-s3": (16, 14, 14, 512, 32, 1),
    "r50-s4": (16, 7, 7, 1024, 32, 1),
    "r29-s1": (16, 32, 32, 512, 8, 1),
    "r29-s2": (16, 16, 16, 1024, 8, 1),
    "r29-s3": (16, 8, 8, 2048, 8, 1),
}
CANDIDATES = ("native", "native-xla", "split", "depthwise-sum", "block-diagonal",
              "patches-matmul")


def formulations(tf):
    """The candidates, each ``f(x, kernel, groups, stride) -> y`` for a 3x3 'same' conv."""

    def same_pad(x, k, stride):
        # TensorFlow's 'same': total padding max(k - s, 0) for sizes divisible by s.
        total = max(k - stride, 0) if x.shape[1] % stride == 0 else max(k - x.shape[1] % stride, 0)
        lo = total // 2
        return tf.pad(x, [[0, 0], [lo, total - lo], [lo, total - lo], [0, 0]])

    def native(x, kernel, groups, stride):
        return tf.nn.conv2d(x, kernel, stride, "SAME")

    def split(x, kernel, groups, stride):
        return tf.concat([tf.nn.conv2d(a, b, stride, "SAME")
                          for a, b in zip(tf.split(x, groups, -1), tf.split(kernel, groups, -1))],
                         -1)

    def depthwise_sum(x, kernel, groups, stride):
        kh, kw, a, cout = kernel.shape
        b = cout // groups
        dw = tf.reshape(tf.transpose(tf.reshape(kernel, (kh, kw, a, groups, b)), (0, 1, 3, 2, 4)),
                        (kh, kw, groups * a, b))
        y = tf.nn.depthwise_conv2d(x, dw, (1, stride, stride, 1), "SAME")
        n, h, w, _ = y.shape
        return tf.reshape(tf.reduce_sum(tf.reshape(y, (n, h, w, groups, a, b)), axis=4),
                          (n, h, w, cout))

    def block_diagonal(x, kernel, groups, stride):
        kh, kw, a, cout = kernel.shape
        b = cout // groups
        dense = tf.einsum("hwagb,gG->hwgaGb", tf.reshape(kernel, (kh, kw, a, groups, b)),
                          tf.eye(groups, dtype=kernel.dtype))
        return tf.nn.conv2d(x, tf.reshape(dense, (kh, kw, groups * a, cout)), stride, "SAME")

    def patches_matmul(x, kernel, groups, stride):
        kh, kw, a, cout = kernel.shape
        b = cout // groups
        n, h, w, _ = x.shape
        ho, wo = -(-h // stride), -(-w // stride)
        xp = same_pad(x, kh, stride)
        taps = [xp[:, i:i + (ho - 1) * stride + 1:stride, j:j + (wo - 1) * stride + 1:stride, :]
                for i in range(kh) for j in range(kw)]
        patches = tf.reshape(tf.stack(taps, axis=3), (n * ho * wo, kh * kw, groups, a))
        patches = tf.reshape(tf.transpose(patches, (2, 0, 1, 3)),
                             (groups, n * ho * wo, kh * kw * a))
        k = tf.reshape(tf.transpose(tf.reshape(kernel, (kh * kw, a, groups, b)), (2, 0, 1, 3)),
                       (groups, kh * kw * a, b))
        y = tf.matmul(patches, k)  # (groups, n*ho*wo, b)
        return tf.reshape(tf.transpose(y, (1, 0, 2)), (n, ho, wo, cout))

    return {"native": native, "native-xla": native, "split": split,
            "depthwise-sum": depthwise_sum, "block-diagonal": block_diagonal,
            "patches-matmul": patches_matmul}


def measure(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    fns = formulations(tf)
    names = [c for c in CANDIDATES if c not in args.skip]
    print(machine.describe(tf))
    print(f"ms per call, median of {args.repeats}; fwd = forward, f+b = forward and backward\n")
    header = ["shape (n,h,w,c,groups,stride)", "pass", *names, "fastest"]
    rows = []
    for shape_name in args.shapes:
        n, h, w, c, groups, stride = SHAPES[shape_name]
        x = tf.random.normal((n, h, w, c), seed=1)
        kernel = tf.random.normal((3, 3, c // groups, c), stddev=0.05, seed=2)
        reference = None
        for pass_name in ("fwd", "f+b"):
            times = {}
            for name in names:
                fn = fns[name]
                if pass_name == "fwd":
                    def call(x, k, fn=fn, groups=groups, stride=stride):
                        return fn(x, k, groups, stride)
                else:
                    def call(x, k, fn=fn, groups=groups, stride=stride):
                        with tf.GradientTape() as tape:
                            tape.watch([x, k])
                            y = fn(x, k, groups, stride)
                            loss = tf.reduce_sum(y * y)
                        return (y, *tape.gradient(loss, [x, k]))
                compiled = tf.function(call, jit_compile=(name == "native-xla"))
                try:
                    out = compiled(x, kernel)
                except Exception as e:  # noqa: BLE001 - a candidate that cannot run is a result
                    times[name] = None
                    print(f"  {shape_name} {pass_name} {name}: fails ({type(e).__name__})")
                    continue
                out = out if isinstance(out, tuple) else (out,)
                if name == "split":
                    reference = out
                elif reference is not None and len(reference) == len(out):
                    for got, want in zip(out, reference):
                        np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3 * float(
                            tf.reduce_max(tf.abs(want))))
                reps = 1 if name == "native-xla" and pass_name == "f+b" else args.repeats
                samples = []
                for _ in range(reps):
                    start = time.perf_counter()
                    result = compiled(x, kernel)
                    (result[0] if isinstance(result, tuple) else result).numpy()
                    samples.append(time.perf_counter() - start)
                times[name] = 1000 * statistics.median(samples)
            best = min(t for t in times.values() if t is not None)
            fastest = min((t, k) for k, t in times.items() if t is not None)[1]
            cells = ["n/a" if times[k] is None else f"{times[k]:.1f} ({times[k] / best:.1f}x)"
                     for k in names]
            rows.append([f"{shape_name} {(n, h, w, c, groups, stride)}", pass_name, *cells,
                         fastest])
            print(" | ".join(rows[-1]), flush=True)
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--skip", nargs="*", default=[], choices=CANDIDATES)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--onednn", choices=("on", "off", "both", "inherit"), default="inherit",
                        help="run with TF_ENABLE_ONEDNN_OPTS=1/0 (in a child process)")
    args = parser.parse_args()
    machine.main_per_onednn(__file__, args.onednn, measure, args)


if __name__ == "__main__":
    main()
