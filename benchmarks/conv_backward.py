"""TensorFlow's convolution backward kernels against the same maths in other ops.

For ResNet-50's convolution shapes (batch 16, 224x224 input, stride 1,
'same' padding) it times:

- the forward convolution (``Conv2D``),
- the input gradient: ``Conv2DBackpropInput`` against a forward convolution
  of the output gradient with the kernel flipped and transposed,
- the kernel gradient: ``Conv2DBackpropFilter`` against one matrix product
  (of the stacked shifted inputs, for 3x3 kernels, with the output gradient).

Each alternative is checked against TensorFlow's kernel first. Milliseconds
per call, median of ``--repeats``.

    python benchmarks/conv_backward.py              # ~1 min on 2 CPU cores
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import machine  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# (batch, height, width, in channels, out channels, kernel size)
SHAPES = [(16, 56, 56, 64, 256, 1), (16, 56, 56, 256, 64, 1), (16, 56, 56, 64, 64, 3),
          (16, 28, 28, 128, 128, 3), (16, 14, 14, 256, 256, 3), (16, 7, 7, 512, 512, 3)]


def timed(fn, args, repeats):
    fn(*args)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args).numpy()
        samples.append(time.perf_counter() - start)
    return 1000 * statistics.median(samples)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{machine.describe(tf)}; ms per call\n")
    print("| shape (n,h,w,cin,cout,k) | forward | input grad: TF | as a forward conv "
          "| kernel grad: TF | as a matmul |")
    print("|---|---:|---:|---:|---:|---:|")
    for n, h, w, cin, cout, k in SHAPES:
        x = tf.random.normal((n, h, w, cin))
        kernel = tf.random.normal((k, k, cin, cout)) * 0.05
        dy = tf.random.normal((n, h, w, cout))
        forward = tf.function(lambda x, kernel: tf.nn.conv2d(x, kernel, 1, "SAME"))
        input_grad = tf.function(lambda dy, kernel, n=n, h=h, w=w, cin=cin: (
            tf.raw_ops.Conv2DBackpropInput(input_sizes=[n, h, w, cin], filter=kernel,
                                           out_backprop=dy, strides=[1, 1, 1, 1], padding="SAME")))
        input_grad_conv = tf.function(lambda dy, kernel: tf.nn.conv2d(
            dy, tf.transpose(tf.reverse(kernel, [0, 1]), [0, 1, 3, 2]), 1, "SAME"))
        kernel_grad = tf.function(lambda x, dy, k=k, cin=cin, cout=cout: (
            tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=[k, k, cin, cout],
                                            out_backprop=dy, strides=[1, 1, 1, 1], padding="SAME")))

        def kernel_grad_matmul(x, dy, k=k, h=h, w=w, cin=cin, cout=cout):
            if k > 1:
                p = k // 2
                padded = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])
                x = tf.concat([padded[:, i:i + h, j:j + w, :]
                               for i in range(k) for j in range(k)], -1)
            grad = tf.matmul(tf.reshape(x, (-1, k * k * cin)), tf.reshape(dy, (-1, cout)),
                             transpose_a=True)
            return tf.reshape(grad, (k, k, cin, cout))

        kernel_grad_matmul = tf.function(kernel_grad_matmul)
        for got, want in ((input_grad_conv(dy, kernel), input_grad(dy, kernel)),
                          (kernel_grad_matmul(x, dy), kernel_grad(x, dy))):
            scale = float(tf.reduce_max(tf.abs(want)))
            np.testing.assert_allclose(got, want, atol=1e-4 * scale)
        r = args.repeats
        print(f"| {(n, h, w, cin, cout, k)} | {timed(forward, (x, kernel), r):.0f} | "
              f"{timed(input_grad, (dy, kernel), r):.0f} | "
              f"{timed(input_grad_conv, (dy, kernel), r):.0f} | "
              f"{timed(kernel_grad, (x, dy), r):.0f} | "
              f"{timed(kernel_grad_matmul, (x, dy), r):.0f} |", flush=True)


if __name__ == "__main__":
    main()
