"""Grouped convolution on Keras's JAX backend: the formulations `GroupedConv2D` chooses between.

For ResNeXt layer shapes, the forward and backward pass (gradients for the
input and the kernel) of one grouped 3x3 convolution, compiled by XLA
(`jax.jit`), on JAX's default device:

- ``native``: XLA's grouped convolution (``feature_group_count``; what
  ``keras.layers.Conv2D(groups=g)`` runs on JAX),
- ``split``: one ordinary convolution per group, concatenated (kres's
  ``split`` formulation),
- ``block-diagonal``: one dense convolution whose kernel is zero outside the
  groups (g times the arithmetic).

Every candidate is checked against ``split`` first. Prints milliseconds per
call (median of ``--repeats``) and each one's time over the fastest, and the
compile time of each.

    KERAS_BACKEND=jax python benchmarks/jax_grouped_conv.py
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import machine
import numpy as np

# name: (batch, height, width, channels, groups); channels in = out, stride 1.
SHAPES = {
    "r29-8x64d-s1": (16, 32, 32, 512, 8),
    "r50-32x4d-s1": (8, 56, 56, 128, 32),
    "cifar-32x4d": (64, 32, 32, 128, 32),
}


def _conv(x, k, groups=1):
    return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", feature_group_count=groups,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def native(x, k, groups):
    return _conv(x, k, groups)


def split(x, k, groups):
    xs, ks = jnp.split(x, groups, axis=-1), jnp.split(k, groups, axis=-1)
    return jnp.concatenate([_conv(a, b) for a, b in zip(xs, ks)], axis=-1)


def block_diagonal(x, k, groups):
    kh, kw, per_group, out = k.shape
    width = out // groups
    dense = jnp.zeros((kh, kw, per_group * groups, out), k.dtype)
    for g in range(groups):
        dense = dense.at[:, :, g * per_group:(g + 1) * per_group,
                         g * width:(g + 1) * width].set(k[..., g * width:(g + 1) * width])
    return _conv(x, dense)


CANDIDATES = {"native": native, "split": split, "block-diagonal": block_diagonal}


def step(function, groups):
    def loss(x, k):
        return jnp.sum(function(x, k, groups) ** 2)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"JAX {jax.__version__} on {jax.devices()}; {machine.cpu_name()}")
    rng = np.random.default_rng(0)
    for name in args.shapes:
        batch, height, width, channels, groups = SHAPES[name]
        x = jnp.asarray(rng.normal(size=(batch, height, width, channels)), jnp.float32)
        k = jnp.asarray(rng.normal(size=(3, 3, channels // groups, channels)) * 0.05,
                        jnp.float32)
        reference = step(split, groups)(x, k)
        times, compiled = {}, {}
        for label, function in CANDIDATES.items():
            run = step(function, groups)
            start = time.perf_counter()
            value, grads = jax.block_until_ready(run(x, k))
            compiled[label] = time.perf_counter() - start
            np.testing.assert_allclose(value, reference[0], rtol=1e-3)
            for mine, theirs in zip(grads, reference[1]):
                np.testing.assert_allclose(mine, theirs, rtol=1e-3, atol=1e-3)
            calls = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                jax.block_until_ready(run(x, k))
                calls.append(time.perf_counter() - start)
            times[label] = statistics.median(calls) * 1000
        fastest = min(times.values())
        print(f"{name} (batch {batch}, {height}x{width}, {channels} channels, {groups} groups): "
              + "; ".join(f"{label} {ms:.1f} ms ({ms / fastest:.2f}x, compiled in "
                          f"{compiled[label]:.1f} s)" for label, ms in times.items()),
              flush=True)


if __name__ == "__main__":
    main()
