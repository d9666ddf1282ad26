"""What a run runs on: its distribution strategy and its precision.

Both are resolved for the machine at hand and passed on explicitly (the
strategy's scope, the builders' `dtype`): nothing here changes a global
setting.
"""

import tensorflow as tf

from kres import checks
from kres import cluster as kcluster

STRATEGIES = ("auto", "default", "mirrored", "multi-worker")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


def make_strategy(name, cluster=None, timeout=None):
    """The `tf.distribute` strategy for `TrainConfig.strategy`.

    For ``"multi-worker"``, `cluster` is the `kres.cluster.Cluster` of this
    process (`kres.cluster.from_environment`); the strategy is created once
    every worker is up, waiting at most `timeout` seconds
    (`kres.cluster.make_strategy`).
    """
    checks.choice("strategy", name, STRATEGIES)
    if name == "multi-worker":
        return kcluster.make_strategy(cluster or kcluster.from_environment(),
                                      timeout or kcluster.DEFAULT_TIMEOUT)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def resolve_precision(precision):
    """The Keras dtype policy name of `TrainConfig.precision` on this machine."""
    checks.choice("precision", precision, PRECISIONS)
    if precision == "auto":
        return "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"
    return precision
