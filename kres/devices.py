"""What a run runs on: its distribution strategy and its precision.

Both are resolved for the machine at hand and passed on explicitly (the
strategy's scope, the builders' `dtype`): nothing here changes a global
setting.
"""

import tensorflow as tf

from kres import checks

STRATEGIES = ("auto", "default", "mirrored", "multi-worker")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")

MULTI_WORKER_ERROR = (
    "strategy='multi-worker' is not supported: Keras 3's model.fit under "
    "tf.distribute.MultiWorkerMirroredStrategy fails in TF 2.21 with 'Attempt to convert a "
    "value (PerReplica...)', an open upstream problem (keras-team/keras#20585, "
    "tensorflow/tensorflow#72388). Use 'mirrored' for several GPUs of one machine. "
    "Received: strategy='multi-worker'"
)


def make_strategy(name):
    """The `tf.distribute` strategy for `TrainConfig.strategy`."""
    checks.choice("strategy", name, STRATEGIES)
    if name == "multi-worker":
        raise ValueError(MULTI_WORKER_ERROR)
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
