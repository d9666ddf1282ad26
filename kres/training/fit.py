"""The one call of `model.fit` in kres, shared by training and tuning.

`pipelines` makes a recipe's training and validation `tf.data` pipelines;
`fit` runs `model.fit` on them with the run directory's callbacks: a NaN
guard, per-epoch statistics, the best checkpoint, the CSV history,
TensorBoard, early stopping and `keras.callbacks.BackupAndRestore`, in the
order that keeps a crash from losing or corrupting anything.
"""

import os
import shutil
import sys
import time

import keras

from kres import rundir as runs
from kres.backends import has_tensorflow
from kres.training import distill
from kres.training.ema import WeightAverage

# A run with a weight average: the raw weights its last fit ended with (`fit`).
RAW_WEIGHTS = "last-raw.npz"
# Written when the last fit of a run ends, before Keras deletes the backup.
TRAINED = "trained.json"


class EpochStats(keras.callbacks.Callback):
    """Adds the learning rate, the epoch's wall time and images/s to the logs."""

    def __init__(self, train_examples):
        super().__init__()
        self.train_examples = train_examples

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        seconds = time.perf_counter() - self._start
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(
            self.model.optimizer.learning_rate))
        logs["epoch_time"] = seconds
        logs["images_per_second"] = self.train_examples / seconds


def pipelines(d, recipe, image_size, channels, seed=None, deterministic=False,
              preprocessing=None, teacher=None):
    """The training and validation pipelines of a recipe on loaded data `d`.

    Returns ``(train_from, val_ds)``: ``train_from(epoch)`` makes the
    training pipeline that starts at `epoch` (endless; each epoch's order and
    augmentation a function of `seed` and its number, so a resumed run sees
    an uninterrupted run's batches), `fit` calls it with the epoch it starts
    at. `deterministic` fixes the element order of both whatever the thread
    timing: needed when workers each read the whole input and keep their
    share of it (`kres.training.multiworker.shard_by_data`), or the shares overlap.
    The batches hold pixels, which the model normalises; `preprocessing` is
    its normalisation (pretrained weights' own; default: the dataset's),
    whose statistics random erasing draws its noise with. With a `teacher`
    (`kres.training.distill`), the training labels carry its probabilities.
    """
    from kres.data.batches import fits_in_memory
    from kres.data.batches import make_pipeline as pipeline

    common = dict(image_size=image_size, channels=channels, num_classes=d.spec.num_classes,
                  batch_size=recipe.batch_size, deterministic=deterministic,
                  preprocessing=preprocessing)

    def train_from(epoch):
        ds = pipeline(d.train, d.spec, training=True, seed=seed, first_epoch=epoch,
                        cache=fits_in_memory(d.spec, d.sizes["train"]),
                        augment=recipe.augment, color_jitter=recipe.color_jitter,
                        auto_augment=recipe.auto_augment,
                        randaugment_ops=recipe.randaugment_ops,
                        randaugment_magnitude=recipe.randaugment_magnitude,
                        mixup_alpha=recipe.mixup_alpha, cutmix_alpha=recipe.cutmix_alpha,
                        random_erasing=recipe.random_erasing, **common)
        return ds if teacher is None else distill.with_teacher(ds, teacher)

    val_ds = pipeline(d.val, d.spec, training=False,
                      cache=fits_in_memory(d.spec, d.sizes["val"]), **common)
    return train_from, val_ds


def fit(model, run_dir, train_from, val_ds, *, recipe, train_examples, epochs=None,
        initial_epoch=0, resume=False, callbacks=(), verbose="auto",
        backup=None, backup_dir=None, class_weight=None, last=True, monitor="accuracy"):
    """The one call of `model.fit` in kres, with the run directory's callbacks.

    `train_from(epoch)` makes the training pipeline starting at `epoch`
    (`pipelines`); it is called with the epoch the fit starts at, which the
    backup decides (`start_epoch`).

    Writes ``history.csv``, ``best.keras``, ``tensorboard/`` and ``backup/``
    in `run_dir`, and for the `last` fit of a run (not a frozen phase)
    ``trained.json`` as it ends, before Keras deletes the backup: a run
    killed after it resumes with its test alone. With `resume`, continues
    from the backup (dropping history rows newer than it); without, any old
    backup is discarded so the run starts from scratch. `backup` replaces the
    `keras.callbacks.BackupAndRestore` of ``backup/`` (a multi-worker run's
    `kres.training.multiworker.ChiefBackupAndRestore`); `backup_dir` moves it. The
    backup keeps the previous epoch's copy too, so a kill in the middle of
    writing it still resumes (from the epoch before). A fit
    with an `initial_epoch` continues a run's history (a later phase):
    the rows and the best checkpoint of the epochs before it stay.
    `class_weight` is `model.fit`'s. `monitor` names the validation metric
    the best checkpoint and early stopping follow (higher is better; a
    multi-label run's ``"pr_auc"``). `verbose` is too, except that
    ``"auto"`` is Keras's progress bar only in a terminal, and one line per
    epoch (``2``) where the output goes to a file or a pipe (`progress`).
    With the recipe's `ema`, validation, the best checkpoint and early
    stopping use the weight average (`kres.training.ema`), saved with the
    backup, and the model ends holding it; the raw weights it ended with are
    kept in `RAW_WEIGHTS` (scored on the test set beside the average).

    Returns:
        The Keras `History`.
    """
    os.makedirs(run_dir, exist_ok=True)
    history_path = os.path.join(run_dir, "history.csv")
    best_path = os.path.join(run_dir, "best.keras")
    backup_dir = backup_dir or os.path.join(run_dir, "backup")
    if not resume:
        shutil.rmtree(backup_dir, ignore_errors=True)
        if os.path.exists(trained_path := os.path.join(run_dir, TRAINED)):
            os.remove(trained_path)
        if not initial_epoch:
            for path in (history_path, best_path):
                if os.path.exists(path):
                    os.remove(path)
    elif runs.discard_torn_backup(backup_dir):
        print(f"kres: the first backup in {backup_dir} was cut short by the kill; the run "
              f"starts again from its first epoch", file=sys.stderr)
    first_epoch = start_epoch(model, backup_dir, initial_epoch, backup)
    previous = runs.trim_history(history_path, first_epoch) if resume or initial_epoch else []
    best_so_far = max((float(r[f"val_{monitor}"]) for r in previous), default=None)
    # The weight average (recipe.ema): in the model from the first callback's epoch end
    # to the last's, so the checkpoint and early stopping between them see it.
    average = WeightAverage(model, recipe.ema_decay, recipe.ema_warmup) if recipe.ema else None
    average_in, average_out = ([], []) if average is None else (
        [c] for c in average.callbacks(val_ds, backup_dir, first_epoch, initial_epoch))

    all_callbacks = [
        # Raises at the first non-finite loss, before any epoch-end callback can
        # save NaN weights; the backup of the last good epoch stays.
        keras.callbacks.TerminateOnNaN(raise_error=True),
        *average_in,
        EpochStats(train_examples),
        keras.callbacks.ModelCheckpoint(best_path, monitor=f"val_{monitor}", mode="max",
                                        save_best_only=True,
                                        initial_value_threshold=best_so_far),
        keras.callbacks.CSVLogger(history_path, append=True),
        # Keras's TensorBoard writer is TensorFlow's (tf.summary): none without it.
        *([keras.callbacks.TensorBoard(os.path.join(run_dir, "tensorboard"))]
          if has_tensorflow() else []),
        *callbacks,
    ]
    if recipe.patience:
        all_callbacks.append(keras.callbacks.EarlyStopping(
            monitor=f"val_{monitor}", mode="max", patience=recipe.patience,
            restore_best_weights=True))
    all_callbacks.extend(average_out)
    if last:
        all_callbacks.append(_Trained(run_dir, average))
    # Last: an epoch is backed up only after its row and checkpoint are written.
    # double_checkpoint: a kill while the weights are written leaves a truncated
    # file; the resume then takes the copy made before the write.
    all_callbacks.append(backup or keras.callbacks.BackupAndRestore(
        backup_dir, double_checkpoint=True))
    # The pipeline shuffles (seeded); Keras's own shuffle does not apply to datasets.
    history = model.fit(train_from(first_epoch), validation_data=val_ds,
                        epochs=epochs or recipe.epochs,
                        steps_per_epoch=train_examples // recipe.batch_size,
                        initial_epoch=initial_epoch, shuffle=False, callbacks=all_callbacks,
                        verbose=progress(verbose), class_weight=class_weight)
    return history


class _Trained(keras.callbacks.Callback):
    """At the end of a run's last fit, before the backup callback after it
    deletes the backup: the raw weights of a run with a weight average, then
    ``trained.json``. A run killed from there to its ``results.json`` (the
    test) resumes with the test alone (`trained`), not from epoch 0."""

    def __init__(self, run_dir, average):
        super().__init__()
        self.run_dir, self.average = run_dir, average

    def on_train_end(self, logs=None):
        if self.average is not None and self.average.last_raw is not None:
            runs.save_arrays(os.path.join(self.run_dir, RAW_WEIGHTS), self.average.last_raw)
        runs.write_json(os.path.join(self.run_dir, TRAINED),
                        {"jit_compile": bool(self.model.jit_compile)})


def trained(run_dir):
    """What a run's finished training left (``{"jit_compile": ...}``), or None
    while it has not finished."""
    return runs.read_json(os.path.join(run_dir, TRAINED)) or None


def start_epoch(model, backup_dir, initial_epoch, backup=None):
    """The epoch `model.fit(..., initial_epoch=initial_epoch)` starts at.

    Where the `keras.callbacks.BackupAndRestore` in `backup_dir` will resume
    it (`kres.rundir.backup_epoch`); on a multi-worker run (`backup`, a
    `kres.training.multiworker.ChiefBackupAndRestore`), where the chief's will.
    """
    model._initial_epoch = None  # Keras leaves an earlier fit's resumed epoch there
    epoch = runs.backup_epoch(backup_dir)
    if backup is not None:
        epoch = backup.agreed_epoch(model, epoch)
    return epoch or initial_epoch


def progress(verbose, stream=None):
    """Keras's `verbose` for a fit that prints to `stream` (default: standard output).

    ``"auto"`` becomes 1 (the progress bar, redrawn in place) in a terminal
    and 2 (one line per epoch) otherwise: in a log file or CI, Keras's bar
    writes a new line at every step, thousands per epoch. Other values are
    returned as they are.

    Example:

    >>> import io
    >>> from kres.training.fit import progress
    >>> progress("auto", io.StringIO())  # not a terminal: one line per epoch
    2
    >>> progress(1)  # a verbosity given is kept
    1
    """
    if verbose != "auto":
        return verbose
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return 1 if isatty is not None and isatty() else 2
