"""`model.fit` under `tf.distribute.MultiWorkerMirroredStrategy`: a contained fix for Keras 3.

Keras 3's TensorFlow trainer fails with more than one worker
(keras-team/keras#20585, tensorflow/tensorflow#72388). Three places break,
each checked by a test in `tests/test_multiworker.py`:

1. `TensorFlowTrainer._maybe_symbolic_build` hands the nested ``(x, y)``
   batch of a distributed dataset to `strategy.reduce`, which takes one
   tensor: "Attempt to convert a value (PerReplica...)". The fix builds
   from the dataset's `element_spec`: the same shapes, no batch taken.
   (Upstream takes a batch from an iterator of its own; kres's training
   pipelines give the same epochs whatever iterators were made before, see
   `kres.data.pipeline.pipeline`.)
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

The rest is what a run on several machines needs around `model.fit`: data
sharded in the same order everywhere, batch-norm statistics averaged,
the chief's backup as the one every worker resumes from, and a worker that
restarts itself when another is lost.
"""

import contextlib
import os
import re
import sys

import keras

from kres import checks

TESTED_KERAS = ("3.15",)
OVERRIDE = "KRES_MULTI_WORKER_ANY_KERAS"


def check_keras_version(version=None, environ=None):
    """Raises unless the Keras version is one the fix was tested with (or overridden).

    Raises:
        RuntimeError: naming the version, the tested ones and the override.
    """
    checks.tested_version(
        "keras", version or keras.__version__, TESTED_KERAS, OVERRIDE, environ=environ,
        relies_on="strategy='multi-worker' relies on a fix of Keras's TensorFlow trainer "
                  "that was tested with",
        advice=" and check the first epoch's logs on every worker", display="Keras")


def _multi_worker(strategy):
    import tensorflow as tf

    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode())


def _symbolic_build_from_spec(original):
    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if strategy is None or iterator is None:
            return original(self, iterator=iterator, data_batch=data_batch)
        # TensorSpecs have the shape and dtype that the build needs: no batch
        # is taken from the distributed dataset.
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
    Each worker keeps every n-th element of its own copy of the pipeline, so
    `ds` must give its elements in the same order everywhere: seeded
    shuffles and deterministic maps (`kres.data.pipeline.pipeline(...,
    deterministic=True)`); otherwise the shares overlap and some examples
    are never seen.
    """
    import tensorflow as tf

    if ds.options().deterministic is False:
        raise ValueError("shard_by_data needs a dataset whose order is deterministic (its "
                         "options have deterministic=False): the workers' shares would overlap")
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def sharded(train_from):
    """`train_from` (epoch -> training pipeline) with each pipeline `shard_by_data`."""
    return lambda epoch: shard_by_data(train_from(epoch))


class ChiefBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` for a multi-worker run: the chief's backup is the run's.

    The chief (rank 0) backs up and restores as in one process. The other
    workers write no backup: when training starts, each takes every model
    and optimizer variable and the epoch from the chief (an all-reduce per dtype).
    So a worker restarted on a fresh machine, or one killed between the
    chief's backup and its own, continues exactly where the chief does, and
    no file system needs to be shared.

    Args:
        backup_dir: the backup directory (used by the chief only).
        is_chief: whether this worker is rank 0.
    """

    def __init__(self, backup_dir, is_chief):
        super().__init__(backup_dir, double_checkpoint=True)  # as one process's (kres.training.fit)
        self.is_chief = is_chief
        self.epoch = 0  # the epoch training is in (resumed at, then reached)

    def on_train_begin(self, logs=None):
        if self.is_chief:
            super().on_train_begin(logs)
        self.epoch = take_from_chief(self.model, self.model._initial_epoch or 0)
        self.model._initial_epoch = self.epoch

    def agreed_epoch(self, model, epoch):
        """The chief's `epoch` (the one its backup resumes at), on every worker:
        the epoch the training pipelines start at."""
        import tensorflow as tf

        strategy = model.distribute_strategy

        def replica():
            return _chief_values([tf.constant(epoch, tf.float64)])[0]

        return int(strategy.experimental_local_results(
            tf.function(lambda: strategy.run(replica))())[0].numpy())

    def on_epoch_end(self, epoch, logs=None):
        self.epoch = epoch + 1
        if self.is_chief:
            super().on_epoch_end(epoch, logs)

    def on_train_batch_end(self, batch, logs=None):
        if self.is_chief:
            super().on_train_batch_end(batch, logs)

    def on_train_end(self, logs=None):
        if self.is_chief:
            super().on_train_end(logs)


def take_from_chief(model, epoch):
    """Gives every worker the chief's model and optimizer variables; returns its `epoch`.

    One broadcast (`_chief_values`). Integer variables (the iteration count)
    travel as float64, exact to 2**53.
    """
    import tensorflow as tf

    strategy = model.distribute_strategy
    variables = [*model.variables, *model.optimizer.variables]

    @tf.function
    def broadcast():
        def replica():
            values = [tf.constant(epoch, tf.float64)]
            for v in variables:
                value = tf.identity(v.value)
                values.append(value if value.dtype.is_floating else tf.cast(value, tf.float64))
            return _chief_values(values)

        results = [strategy.experimental_local_results(r)[0]
                   for r in strategy.run(replica)]
        for v, value in zip(variables, results[1:]):
            v.assign(tf.cast(value, v.dtype))
        return results[0]

    return int(broadcast().numpy())


def _chief_values(values):
    """In a replica context: replica 0's `values`, on every replica.

    A broadcast as all-reduces: each replica sends its values where it is
    replica 0 and zeros elsewhere, one all-reduce per dtype (a packed
    all-reduce needs one dtype).
    """
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    first = tf.equal(context.replica_id_in_sync_group, 0)
    sent = [tf.where(first, value, tf.zeros_like(value)) for value in values]
    received = [None] * len(sent)
    for dtype in {value.dtype for value in sent}:
        indices = [i for i, value in enumerate(sent) if value.dtype == dtype]
        for i, value in zip(indices, context.all_reduce("SUM", [sent[i] for i in indices])):
            received[i] = value
    return received


RESTARTS = "KRES_WORKER_RESTARTS"


def is_worker_lost(error):
    """Whether `error` is TensorFlow reporting that another worker stopped answering."""
    import tensorflow as tf

    return isinstance(error, (tf.errors.UnavailableError, tf.errors.AbortedError))


def lost_addresses(error, worker):
    """The addresses of the tasks a TensorFlow cluster error names, in rank order."""
    from kres.training.cluster import JOBS

    named = {(job, int(index)) for job, index in
             re.findall(r"/job:(\w+)(?:/replica:\d+)?/task:(\d+)", str(error))}
    return [a for job in JOBS for index, a in enumerate(worker.jobs.get(job, ()))
            if (job, index) in named and a != worker.address]


def restart_after_loss(error, worker, epoch, restarts, environ=None, execv=None):
    """Restarts this process (the same command) after another worker was lost.

    TensorFlow cannot rebuild a cluster inside a process ("Restart your
    program to reset"), so the process replaces itself: the new one waits
    for the others again (the cluster timeout) and resumes from the chief's
    last backup. At most `restarts` times in a row without a finished epoch
    in between (``KRES_WORKER_RESTARTS`` carries the count); then it raises.

    Raises:
        RuntimeError: when the restarts are used up (or `restarts` is 0),
            naming the lost addresses.
    """
    environ = os.environ if environ is None else environ
    last_epoch, _, count = environ.get(RESTARTS, "-1:0").partition(":")
    count = int(count) if int(last_epoch) == epoch else 0
    lost = ", ".join(lost_addresses(error, worker)) or "another worker"
    first_line = (str(error).strip().splitlines() or [""])[0][:300]
    if count >= restarts:
        raise RuntimeError(
            f"Worker {worker.rank} ({worker.address}) lost {lost} in epoch {epoch + 1} and has "
            f"restarted {count} time(s) in a row already (worker_restarts={restarts}). Start "
            f"every worker again with the same command: the run resumes from the chief's last "
            f"backup. TensorFlow said: {first_line}") from error
    environ[RESTARTS] = f"{epoch}:{count + 1}"
    print(f"kres: worker {worker.rank} ({worker.address}) lost {lost} in epoch {epoch + 1}; "
          f"restarting this worker ({count + 1}/{restarts}) to wait for the others and resume "
          f"from the chief's last backup.", file=sys.stderr, flush=True)
    sys.stdout.flush()
    (execv or os.execv)(sys.executable, [sys.executable, *sys.orig_argv[1:]])


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
