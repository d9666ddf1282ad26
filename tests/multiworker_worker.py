"""One process of the multi-worker tests (tests/test_multiworker.py).

`python multiworker_worker.py JOB`, where JOB is a JSON object: ``kind``
(``"train"``: `kres.train` with ``settings``, killing itself at the
``die_at`` ``[epoch, batch]`` if given;
``"reference"``: the same run in one process, MirroredStrategy over two
logical CPUs, with Keras as it is (none of kres's multi-worker fixes);
``"overflow"``: a small Keras model whose batch overflows float16 on
worker 1 only), ``tf_config`` (for the workers) and ``out`` (a
JSON file of results to write).
"""

import json
import os
import sys

job = json.loads(sys.argv[1])
if job.get("tf_config"):
    os.environ["TF_CONFIG"] = json.dumps(job["tf_config"])
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def weights_of(model):
    return [w.tolist() for w in model.get_weights()]


def die_at(epoch, batch):
    """A callback that SIGKILLs its own process at ``(epoch, batch)``: a worker lost mid-epoch."""
    import keras

    class Die(keras.callbacks.Callback):
        def on_epoch_begin(self, e, logs=None):
            self.epoch = e

        def on_train_batch_begin(self, b, logs=None):
            if (self.epoch, b) == (epoch, batch):
                os.kill(os.getpid(), 9)

    return Die()


def recorder():
    """A callback noting this process's epochs, their logs and the final weights
    (after the batch-norm statistics are averaged)."""
    import keras

    class Record(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.record = {"epochs_begun": [], "logs": {}, "weights": None}

        def on_epoch_begin(self, epoch, logs=None):
            self.record["epochs_begun"].append(epoch)

        def on_epoch_end(self, epoch, logs=None):
            self.record["logs"][str(epoch)] = {k: float(v) for k, v in (logs or {}).items()}

        def on_train_end(self, logs=None):
            self.record["weights"] = weights_of(self.model)

    return Record()


def train():
    import kres

    record = recorder()
    callbacks = [die_at(*job["die_at"])] if job.get("die_at") else []
    results = kres.train(**job["settings"], verbose=0, cluster_timeout=job.get("timeout", 60),
                         callbacks=[*callbacks, record])
    return {"results": results, **record.record}


def reference():
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import kres
    from kres.training import run as training_run

    # The workers split each global batch in two, each normalising its half;
    # a MirroredStrategy over two devices does the same in one process.
    training_run.make_strategy = lambda *args: tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"])
    settings = {k: v for k, v in job["settings"].items() if k != "strategy"}
    record = recorder()
    results = kres.train(**settings, verbose=0, callbacks=[record])
    return {"results": results, **record.record}


def overflow():
    import keras

    from kres.training import cluster, multiworker

    strategy = cluster.make_strategy(cluster.from_environment(), timeout=60)
    rank = strategy.cluster_resolver.task_id
    keras.utils.set_random_seed(0)
    x = np.random.RandomState(0).rand(64, 6).astype("float32")
    x[63] = 1e30  # float16 overflow in the last row of batch 0: worker 1's half
    y = np.arange(64) % 2
    ds = multiworker.shard_by_data(tf.data.Dataset.from_tensor_slices((x, y)).batch(16))
    with strategy.scope():
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, dtype="mixed_float16"),
                                  keras.layers.Dense(2, dtype="float32")])
        model.compile(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1)),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with multiworker.keras_fixes():
        model.fit(ds, epochs=1, verbose=0)
    return {"rank": rank, "scale": float(model.optimizer.dynamic_scale.numpy()),
            "iterations": int(model.optimizer.iterations.numpy()), "weights": weights_of(model)}


result = {"train": train, "reference": reference, "overflow": overflow}[job["kind"]]()
with open(job["out"], "w") as f:
    json.dump(result, f)
