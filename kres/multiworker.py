"""`model.fit` under `tf.distribute.MultiWorkerMirroredStrategy`: a contained fix for Keras 3.

Keras 3's TensorFlow trainer fails with more than one worker
(keras-team/keras#20585, tensorflow/tensorflow#72388). Three places break,
each checked by a test in `tests/test_multiworker.py`:

1. `TensorFlowTrainer._maybe_symbolic_build` hands the nested ``(x, y)``
   batch of a distributed dataset to `strategy.reduce`, which takes one
   tensor: "Attempt to convert a value (PerReplica...)". To learn the
   input's shapes it also makes an iterator and takes a batch, so the first
   epoch of a shuffled dataset sees its second order (under any strategy).
   The fix builds from the dataset's `element_spec`: the same shapes, no
   iterator made.
2. `reduce_per_replica` reduces each step's logs with
   ``strategy.reduce("MEAN", v, axis=0)``, which for a scalar loss or metric
   is "Invalid reduction dimension 0"; with one device per worker the value
   is a plain tensor, which `strategy.reduce` would not send to the other
   workers at all. Each worker's metric results are its own, so the fix
   averages them over all replicas in one all-reduce: every worker logs the
   same numbers, the mean over the workers, as one process with
   `MirroredStrategy` logs the mean over its devices.
3. `LossScaleOptimizer` (``mixed_float16``) decides from each worker's own
   gradients whether they are finite and skips the all-reduce when they are
   not, so a worker that sees an overflow alone leaves the others waiting
   for it forever. The fix all-reduces the decision: a step is skipped on
   every worker or on none.

`keras_fixes()` applies the three while a multi-worker fit runs and puts
the originals back after it; models, layers and saved files are untouched.
It refuses a Keras version it was not tested with, saying how to override.
"""

import contextlib
import os

import keras

TESTED_KERAS = ("3.15",)
OVERRIDE = "KRES_MULTI_WORKER_ANY_KERAS"


def check_keras_version(version=None, environ=None):
    """Raises unless the Keras version is one the fix was tested with (or overridden).

    Raises:
        RuntimeError: naming the version, the tested ones and the override.
    """
    version = version or keras.__version__
    environ = os.environ if environ is None else environ
    if ".".join(version.split(".")[:2]) in TESTED_KERAS or environ.get(OVERRIDE) == "1":
        return
    raise RuntimeError(
        f"strategy='multi-worker' relies on a fix of Keras's TensorFlow trainer that was "
        f"tested with Keras {', '.join(v + '.x' for v in TESTED_KERAS)}; this is Keras "
        f"{version}. Install a tested version (pip install 'keras~={TESTED_KERAS[-1]}.0'), "
        f"or set {OVERRIDE}=1 to try this one and check the first epoch's logs on every "
        f"worker. Received: keras=={version}"
    )


def _multi_worker(strategy):
    import tensorflow as tf

    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode())


def _symbolic_build_from_spec(original):
    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if strategy is None or iterator is None:
            return original(self, iterator=iterator, data_batch=data_batch)
        # TensorSpecs have the shape and dtype that the build needs; no
        # iterator is made, so the first epoch sees the dataset's first order.
        spec = iterator.data_adapter.get_tf_dataset().element_spec
        with strategy.scope():
            self._symbolic_build(data_batch=spec)

    return maybe_symbolic_build


def _reduce_across_replicas(original):
    import tensorflow as tf
    from keras.src import tree

    def reduce_per_replica(values, strategy, reduction):
        reduction = "mean" if reduction == "auto" else reduction
        if not _multi_worker(strategy) or reduction not in ("mean", "sum"):
            if reduction == "concat" and _multi_worker(strategy):
                return tree.map_structure(lambda v: strategy.gather(v, axis=0), values)
            return original(values, strategy, reduction)
        # Each worker's step values (metric results) are its own: average (or
        # add) them over every replica of every worker, in one all-reduce.
        flat = tree.flatten(values)
        where = [i for i, v in enumerate(flat) if tf.is_tensor(v) or
                 isinstance(v, tf.distribute.DistributedValues)]
        op = "SUM" if reduction == "sum" else "MEAN"

        def replica(*tensors):
            return tf.distribute.get_replica_context().all_reduce(op, list(tensors))

        reduced = strategy.run(replica, args=tuple(flat[i] for i in where))
        for i, value in zip(where, reduced):
            flat[i] = strategy.experimental_local_results(value)[0]
        return tree.pack_sequence_as(values, flat)

    return reduce_per_replica


def _finite_everywhere(original):
    import tensorflow as tf

    def check_finite(self, grads):
        finite = original(self, grads)
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return finite
        not_finite = context.all_reduce("SUM", tf.cast(tf.logical_not(finite), tf.float32))
        return tf.equal(not_finite, 0.0)

    return check_finite


@contextlib.contextmanager
def keras_fixes():
    """Applies the three fixes for the duration of the block, then restores Keras.

    Raises:
        RuntimeError: for a Keras version outside `TESTED_KERAS` (unless
            overridden with ``KRES_MULTI_WORKER_ANY_KERAS=1``).
    """
    check_keras_version()
    from keras.src.backend.tensorflow import trainer
    from keras.src.optimizers import loss_scale_optimizer

    patches = [
        (trainer.TensorFlowTrainer, "_maybe_symbolic_build", _symbolic_build_from_spec),
        (trainer, "reduce_per_replica", _reduce_across_replicas),
        (loss_scale_optimizer.LossScaleOptimizer, "check_finite", _finite_everywhere),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    try:
        for (owner, name, make), (_, _, original) in zip(patches, saved):
            setattr(owner, name, make(original))
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def worker_dir(run_dir, rank):
    """Where worker `rank` (not the chief) writes its copy of the run.

    A fixed place in the temporary directory, derived from the absolute
    `run_dir`, so that a worker restarted with the same command finds its
    backup there; removed when the run completes.
    """
    import hashlib
    import tempfile

    absolute = os.path.abspath(run_dir)
    digest = hashlib.sha1(absolute.encode()).hexdigest()[:10]
    name = f"{os.path.basename(absolute)}-{digest}-worker{rank}"
    return os.path.join(tempfile.gettempdir(), "kres-workers", name)


def shard_by_data(ds):
    """`ds` with its elements split among the workers (each reads the whole input).

    tfds datasets of one file, arrays and folders cannot be sharded by file.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def gather(strategy, value):
    """`value` (a number) from every replica of `strategy`, in replica order."""
    import tensorflow as tf

    @tf.function
    def run():
        def replica():
            return tf.distribute.get_replica_context().all_gather(
                tf.constant([value], tf.float64), axis=0)
        return strategy.experimental_local_results(strategy.run(replica))[0]

    return [float(v) for v in run().numpy()]


def check_same_epoch(strategy, epoch):
    """Raises unless every worker resumes at the same epoch (their backups agree).

    Raises:
        RuntimeError: naming the epochs of the workers' backups.
    """
    epochs = [int(e) for e in gather(strategy, epoch)]
    if len(set(epochs)) > 1:
        raise RuntimeError(
            f"The workers' backups are at different epochs ({epochs}, by worker): a worker "
            f"stopped between the chief's backup and its own. Restart the run from scratch "
            f"in a new directory, or copy the backup of the one most behind to the others. "
            f"Received: epochs={epochs}"
        )


class AverageBatchNormStatistics(keras.callbacks.Callback):
    """Gives every replica the average of the replicas' batch-norm moving statistics.

    Each replica updates its own moving mean and variance from the part of
    the batch it sees (Keras's batch norm, as in the papers' multi-GPU
    training); without this, each worker would validate, save and back up a
    model with statistics of its own. Averaging them (all non-trainable
    float variables; frozen weights, the same everywhere, stay as they are)
    before each validation and at the end of training makes every copy the
    same model.
    """

    def __init__(self):
        super().__init__()
        self._average = None

    def _run(self):
        import tensorflow as tf

        if self._average is None:
            strategy = self.model.distribute_strategy
            variables = [v for v in self.model.non_trainable_variables
                         if v.dtype.startswith("float")]

            @tf.function
            def average():
                def replica():
                    context = tf.distribute.get_replica_context()
                    means = context.all_reduce(
                        "MEAN", [tf.identity(v.value) for v in variables])
                    for variable, mean in zip(variables, means):
                        variable.assign(mean)
                strategy.run(replica)

            self._average = average
        self._average()

    def on_test_begin(self, logs=None):
        self._run()

    def on_train_end(self, logs=None):
        self._run()
