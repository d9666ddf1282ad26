"""What a run runs on: its distribution strategy and its precision.

Both are resolved for the machine at hand and passed on explicitly (the
strategy's scope, the builders' `dtype`), not set globally. One exception: a
multi-worker strategy writes the process's ``TF_CONFIG`` environment
variable, which is where TensorFlow reads its cluster
(`kres.training.cluster.make_strategy`); TensorFlow's strategy itself lives
for the rest of the process.
"""

import tensorflow as tf

from kres import checks
from kres.training import cluster as kcluster

STRATEGIES = ("auto", "default", "mirrored", "multi-worker")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


def make_strategy(name, cluster=None, timeout=None):
    """The `tf.distribute` strategy for `TrainConfig.strategy`.

    For ``"multi-worker"``, `cluster` is the `kres.training.cluster.Cluster` of this
    process (`kres.training.cluster.from_environment`); the strategy is created once
    every worker is up, waiting at most `timeout` seconds
    (`kres.training.cluster.make_strategy`).
    """
    checks.choice("strategy", name, STRATEGIES)
    if name == "multi-worker":
        return kcluster.make_strategy(cluster or kcluster.from_environment(),
                                      timeout or kcluster.DEFAULT_TIMEOUT)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


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


def choose_precision(gpus, flags):
    """The dtype policy ``precision="auto"`` gives, and why, for a machine's features.

    A pure function of what it is given, so any machine can be described to
    it (the tests pass made-up feature sets):

    - one or more GPUs: ``mixed_float16``;
    - a CPU with AMX (``amx_bf16``): ``mixed_bfloat16``, whose matrix tiles
      multiply bfloat16 at 16 times the AVX-512 float32 rate;
    - a CPU with AVX512-BF16 and no AMX: ``mixed_bfloat16``;
    - any other CPU: ``float32`` (bfloat16 would be emulated, and slower).

    Either mixed policy keeps float32 variables, batch-norm statistics and
    classifier, and trains to the float32 accuracy (docs/results.md).

    Args:
        gpus: how many GPUs TensorFlow sees.
        flags: the CPU's feature flags (`cpu_flags`).

    Returns:
        ``(policy, reason)``.

    Example:

    >>> from kres.training.devices import choose_precision
    >>> choose_precision(0, {"avx512f", "amx_bf16", "avx512_bf16"})
    ('mixed_bfloat16', 'the CPU has AMX (bfloat16 matrix tiles)')
    """
    if gpus:
        return "mixed_float16", f"{gpus} GPU{'s' * (gpus > 1)}: float16 tensor cores"
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
    return choose_precision(len(tf.config.list_physical_devices("GPU")), cpu_flags())
