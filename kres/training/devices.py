"""What a run runs on: its distribution strategy and its precision.

Both are resolved for the machine at hand and passed on explicitly (the
strategy's scope, the builders' `dtype`), not set globally. Exceptions: a
multi-worker strategy writes the process's ``TF_CONFIG`` environment
variable, which is where TensorFlow reads its cluster
(`kres.training.cluster.make_strategy`), and TensorFlow's strategy itself lives
for the rest of the process; on JAX, several GPUs are Keras's
`keras.distribution.DataParallel`, which Keras reads as the process's
distribution.
"""

import contextlib

import keras

from kres import checks

STRATEGIES = ("auto", "default", "mirrored", "multi-worker")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


def make_strategy(name, cluster=None, timeout=None):
    """The `tf.distribute` strategy for `TrainConfig.strategy` (on JAX, Keras's distribution).

    For ``"multi-worker"``, `cluster` is the `kres.training.cluster.Cluster` of this
    process (`kres.training.cluster.from_environment`); the strategy is created once
    every worker is up, waiting at most `timeout` seconds
    (`kres.training.cluster.make_strategy`). On Keras's JAX backend,
    ``"mirrored"`` (or ``"auto"`` with several GPUs) is
    `keras.distribution.DataParallel` over the GPUs (``"multi-worker"`` is
    TensorFlow's: `kres.training.config.TrainConfig` refuses it on JAX).
    """
    checks.choice("strategy", name, STRATEGIES)
    if keras.backend.backend() == "jax":
        return _jax_strategy(name)
    import tensorflow as tf

    from kres.training import cluster as kcluster

    if name == "multi-worker":
        return kcluster.make_strategy(cluster or kcluster.from_environment(),
                                      timeout or kcluster.DEFAULT_TIMEOUT)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


class KerasDistribution:
    """What a run needs of a strategy, on JAX: its scope and its replicas.

    `distribution` is None (one device) or a `keras.distribution.DataParallel`,
    set as the process's distribution: Keras splits each batch over the
    devices and keeps the weights the same on each.
    """

    def __init__(self, distribution=None):
        self.distribution = distribution
        self.num_replicas_in_sync = 1 if distribution is None else len(
            distribution.device_mesh.devices.flatten())
        if distribution is not None:
            keras.distribution.set_distribution(distribution)

    def scope(self):
        return contextlib.nullcontext()


def _jax_strategy(name):
    # strategy="multi-worker" is refused on JAX by `kres.training.config.TrainConfig`.
    gpus = keras.distribution.list_devices("gpu") if gpu_count() else []
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return KerasDistribution(keras.distribution.DataParallel(
            devices=gpus or keras.distribution.list_devices()))
    return KerasDistribution()


def gpu_count():
    """The GPUs the Keras backend sees."""
    if keras.backend.backend() == "jax":
        import jax

        return sum(d.platform == "gpu" for d in jax.devices())
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def cpu_flags(path="/proc/cpuinfo"):
    """The CPU's feature flags: the first ``flags`` line of `path` (``/proc/cpuinfo``);
    an empty set where there is none (no such file, or a processor, such as an
    ARM one, whose file names its features otherwise)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def choose_precision(gpus, flags, backend="tensorflow"):
    """The dtype policy ``precision="auto"`` gives, and why, for a machine's features.

    A pure function of what it is given, so any machine can be described to
    it (the tests pass made-up feature sets):

    - one or more GPUs: ``mixed_float16``;
    - a CPU with AMX (``amx_bf16``): ``mixed_bfloat16``, whose matrix tiles
      multiply bfloat16 at 16 times the AVX-512 float32 rate;
    - a CPU with AVX512-BF16 and no AMX: ``mixed_bfloat16``;
    - any other CPU: ``float32`` (bfloat16 would be emulated, and slower);
    - on Keras's JAX backend, any CPU: ``float32`` (XLA's CPU backend trained
      bfloat16 no faster than float32 with AVX512-BF16 and at half its speed
      with AMX, docs/benchmarks.md).

    Either mixed policy keeps float32 variables, batch-norm statistics and
    classifier, and trains to the float32 accuracy (docs/results.md).

    Args:
        gpus: how many GPUs TensorFlow sees.
        flags: the CPU's feature flags (`cpu_flags`).
        backend: the Keras backend.

    Returns:
        ``(policy, reason)``.

    Example:

    >>> from kres.training.devices import choose_precision
    >>> choose_precision(0, {"avx512f", "amx_bf16", "avx512_bf16"})
    ('mixed_bfloat16', 'the CPU has AMX (bfloat16 matrix tiles)')
    """
    if gpus:
        return "mixed_float16", f"{gpus} GPU{'s' * (gpus > 1)}: float16 tensor cores"
    if backend == "jax":
        return "float32", "JAX on a CPU (XLA's CPU backend gained nothing from bfloat16)"
    if "amx_bf16" in flags:
        return "mixed_bfloat16", "the CPU has AMX (bfloat16 matrix tiles)"
    if "avx512_bf16" in flags:
        return "mixed_bfloat16", "the CPU has AVX512-BF16 (bfloat16 dot products)"
    return "float32", "the CPU has neither AMX nor AVX512-BF16"


def resolve_precision(precision):
    """``(policy, reason)``: the Keras dtype policy of `TrainConfig.precision` here.

    An explicit precision is used as given; ``"auto"`` is `choose_precision`
    for this machine.
    """
    checks.choice("precision", precision, PRECISIONS)
    if precision != "auto":
        return precision, "asked for"
    return choose_precision(gpu_count(), cpu_flags(), keras.backend.backend())
