"""Training: a `TrainConfig` resolved into a run directory and one call of `model.fit`.

`train` is five named steps: open the run (config, cluster, resume),
prepare it (`kres.training.preparation`: data, input, pretrained weights),
build the model (in the run's precision, with its own preprocessing and the
pretrained weights), fit it (`fit_run`: the recipe's phases through
`kres.training.fit.fit`, shared with `kres.tuning`: best checkpoint, CSV
history, TensorBoard, early stopping, a NaN guard and
`keras.callbacks.BackupAndRestore`, so a killed run resumes where it was),
then score the best model on the test split and record the results. The
files it leaves are described in `kres.rundir`.
"""

import contextlib
import os
import shutil
from dataclasses import dataclass

import keras
import numpy as np

from kres import checks, rundir
from kres.data import splits as ksplits
from kres.data.batches import make_pipeline as pipeline
from kres.models.counting import count_macs, count_params
from kres.models.saving import load_model
from kres.training import cluster as kcluster
from kres.training import finetune, lr_range, multiworker, report
from kres.training.config import TrainConfig, as_config
from kres.training.devices import make_strategy, resolve_precision
from kres.training.evaluation import scored, scores
from kres.training.fit import RAW_WEIGHTS, fit, pipelines, trained
from kres.training.preparation import build, prepare
from kres.training.recipes import compile_model, monitored, resolve_recipe


@dataclass
class Run:
    """Where a run writes, and how it started.

    Attributes:
        config: its `TrainConfig`.
        run_dir: the run directory (the chief's, on every worker).
        own_dir: this process's directory: `run_dir`, or a worker's own copy.
        resuming: whether `own_dir` holds an unfinished run of this config.
        worker: the multi-worker `kres.training.cluster.Cluster`, or None.
        backup: a multi-worker run's chief backup, or None (the default one).
    """

    config: TrainConfig
    run_dir: str
    own_dir: str
    resuming: bool
    worker: object = None
    backup: object = None


def train(model, dataset=None, *, run_dir=None, data=None, callbacks=(), verbose="auto",
          cluster_timeout=None, worker_restarts=3, **settings):
    """Trains a model on a dataset with one call of `model.fit`, in a run directory.

    If `run_dir` holds an unfinished run of the same config, training resumes
    from its last completed epoch (weights, optimizer state and iteration
    count restored by `keras.callbacks.BackupAndRestore`). Everything is
    checked before any work starts. Keras's global settings (the dtype
    policy among them) are left as they were, with one exception: with a
    `seed`, `keras.utils.set_random_seed` seeds Python's, NumPy's and the
    backend's global random generators, for the rest of the process.

    With ``strategy="multi-worker"``, every worker calls `train` with the
    same arguments (its own `TF_CONFIG`); the recipe's batch size is the
    global batch, split evenly among the workers. Only the chief (worker 0)
    writes `run_dir`; the others keep their copy in
    `kres.training.multiworker.worker_dir` and remove it when the run
    completes. Every worker resumes from the chief's backup; a worker that
    loses another restarts itself to wait for it (`worker_restarts`).

    Args:
        model: a registry name, or a whole `TrainConfig` (then no `dataset`
            and no `settings`).
        dataset: a dataset name or image folder.
        run_dir: the run directory (default ``runs/<model>-<dataset>-<time>``).
        data: a `kres.data.sources.Data` to use instead of loading the
            dataset (e.g. `kres.data.sources.from_arrays`).
        callbacks: extra Keras callbacks.
        verbose: Keras's `fit` verbosity (0 for quiet; ``"auto"``: a progress
            bar in a terminal, a line per epoch elsewhere).
        cluster_timeout: multi-worker only: seconds to wait for the other
            workers (default `kres.training.cluster.DEFAULT_TIMEOUT`).
        worker_restarts: multi-worker only: when another worker is lost,
            this process restarts itself (the same command) to wait for it
            and resume from the chief's backup, at most this many times in
            a row without a finished epoch
            (`kres.training.multiworker.restart_after_loss`).
        **settings: `TrainConfig` fields (``recipe="wrn-cifar"``,
            ``precision="mixed_bfloat16"``, ``subset=5000``, ...) and recipe
            fields (``epochs=30``, ``batch_size=64``, ``learning_rate=0.05``;
            ``learning_rate="auto"`` runs the range test first in the run
            directory, `kres.training.lr_range`, and trains with its rate).

    Returns:
        The results dict written to ``results.json`` (on a worker other than
        the chief: ``{"worker": rank, "run_dir": run_dir, "epochs_run": n}``).

    Raises:
        ValueError: for an invalid configuration, before training starts
            (for a multi-worker run also a malformed `TF_CONFIG`, a missing
            `run_dir`, a batch that does not split evenly among the workers).
        RuntimeError: if the loss becomes NaN or infinite (the last backup is
            kept, and finite).

    Example:

    Training takes minutes, so this example is not run as a test::

        results = kres.train("cifar_resnet20", "fashion_mnist", epochs=2, subset=5000)
        results["test_accuracy"]  # e.g. 0.87
    """
    config = as_config(TrainConfig, model, dataset, settings)
    checks.integer("worker_restarts", worker_restarts, minimum=0)
    if config.recipe_overrides.get("learning_rate") == "auto":  # the range test, in the run
        run_dir = run_dir or rundir.default_dir(config.model, config.dataset)
        config = lr_range.with_found_rate(config, run_dir, data, 0 if verbose == 0 else "auto")
    run = open_run(config, run_dir)
    try:
        strategy = make_strategy(config.strategy, run.worker, cluster_timeout)
        p = prepare(config, data, run_dir=run.own_dir, resuming=run.resuming)
        precision = resolve_precision(config.precision)
        model = build(config, p, strategy, precision[0])
        jit_compile = fit_run(model, run, p, strategy, callbacks=callbacks, verbose=verbose)
    except Exception as error:
        if run.worker is None or not multiworker.is_worker_lost(error):
            raise
        multiworker.restart_after_loss(error, run.worker, run.backup.epoch, worker_restarts)
    if run.worker is not None and not run.worker.is_chief:
        shutil.rmtree(run.own_dir, ignore_errors=True)
        return {"worker": run.worker.rank, "run_dir": run.run_dir,
                "epochs_run": run.backup.epoch}
    return record(run, p, precision, jit_compile, model)


def open_run(config, run_dir):
    """The `Run` of `config` in `run_dir`: the cluster checked (before TensorFlow
    starts one), the directory's saved config checked if it holds one.

    Raises:
        ValueError: for a directory of another config or a finished run, and
            a multi-worker run without a run directory or a seed, or whose
            batch does not split among its workers.
    """
    worker = _check_cluster(config, run_dir)
    run_dir = run_dir or rundir.default_dir(config.model, config.dataset)
    own_dir = run_dir if worker is None or worker.is_chief else multiworker.worker_dir(
        run_dir, worker.rank)
    resuming = rundir.check_saved_config(own_dir, "config.json", config)
    if resuming and os.path.isfile(os.path.join(run_dir, "results.json")):
        raise ValueError(f"The run in {run_dir} has finished already (results.json exists). "
                         f"Received: run_dir={run_dir!r}")
    backup = None if worker is None else multiworker.ChiefBackupAndRestore(
        os.path.join(own_dir, "backup"), worker.is_chief)
    return Run(config, run_dir, own_dir, resuming, worker, backup)


def fit_run(model, run, p, strategy, *, callbacks, verbose):
    """Writes the run's files and fits `model` on its pipelines (the recipe's phases).

    Returns:
        Whether Keras compiled the steps with XLA.
    """
    d, config = p.data, run.config
    os.makedirs(run.own_dir, exist_ok=True)
    if not run.resuming:
        rundir.write_config(run.own_dir, "config.json", config)
    _write_data_records(run.own_dir, d)
    rundir.write_model_description(run.own_dir, model=config.model, spec=p.spec,
                                   preprocessing=p.preprocessing,
                                   class_names=d.class_names, dataset=d.name)
    done = trained(run.own_dir) if run.resuming and run.worker is None else None
    if done is not None:  # killed after its training, before its test: the test alone
        return done["jit_compile"]
    train_from, val_ds = pipelines(d, p.recipe, p.image_size, p.channels, seed=config.seed,
                                 deterministic=run.worker is not None,
                                 preprocessing=p.preprocessing, teacher=p.teacher)
    fixes = contextlib.nullcontext()
    # TensorFlow's replicas each keep batch-norm statistics of their own part of
    # the batch; Keras's DataParallel on JAX computes one global batch (no need).
    if strategy.num_replicas_in_sync > 1 and keras.backend.backend() == "tensorflow":
        callbacks = [multiworker.AverageBatchNormStatistics(), *callbacks]
    if run.worker is not None:
        train_from = multiworker.sharded(train_from)
        val_ds = multiworker.shard_by_data(val_ds)
        fixes = multiworker.keras_fixes()
    common = dict(train_examples=d.sizes["train"], callbacks=callbacks, verbose=verbose,
                  class_weight=_class_weights(config, d), monitor=monitored(p.threshold))
    with fixes:
        return _fit_phases(model, run, train_from, val_ds, p, strategy, **common)


def record(run, p, precision, jit_compile, model):
    """Scores the run's best model (its ``best.keras``; `model` if there is none) on
    the test split and writes ``results.json``, ``curves.png`` and the test split's
    per-class report (``report.json``, ``confusion.png``, ``mistakes.png``: of the
    model the test accuracy is of, flip-averaged with the recipe's ``test_flip``);
    returns the results."""
    d, recipe = p.data, p.recipe
    history = rundir.read_history(os.path.join(run.run_dir, "history.csv"))
    best_path = os.path.join(run.run_dir, "best.keras")
    if os.path.isfile(best_path):
        model = load_model(best_path)
    test_ds = pipeline(d.test, d.spec, training=False, cache=False, image_size=p.image_size,
                       channels=p.channels, num_classes=d.spec.num_classes,
                       batch_size=recipe.batch_size, preprocessing=p.preprocessing)
    score = dict(loss=model.loss, threshold=p.threshold)
    single, predicted = scored(model, test_ds, d.spec.num_classes, **score)
    final = single
    if recipe.test_flip:
        final, predicted = scored(model, test_ds, d.spec.num_classes, flip=True, **score)
    raw = _raw_scores(model, os.path.join(run.run_dir, RAW_WEIGHTS), test_ds, recipe,
                      d.spec.num_classes, p.threshold) if recipe.ema else {}
    metric = monitored(p.threshold)
    results = {
        "model": run.config.model, "dataset": d.name, "precision": precision[0],
        "precision_reason": precision[1], "jit_compile": jit_compile,
        **{f"test_{key}": value for key, value in final.items()},
        **({"multi_label": True, "threshold": p.threshold} if p.threshold is not None else {}),
        "test_flip": recipe.test_flip,
        **({"teacher": run.config.teacher} if run.config.teacher else {}),
        **({f"test_{key}_single_view": value for key, value in single.items()}
           if recipe.test_flip else {}),
        f"best_val_{metric}": max((float(r[f"val_{metric}"]) for r in history), default=None),
        **raw,
        **({"lr_find_learning_rate": found.learning_rate}
           if (found := lr_range.read(run.run_dir)) is not None else {}),
        **({"ema": True, f"best_raw_val_{metric}": max(
            float(r[f"raw_val_{metric}"]) for r in history)} if recipe.ema and history else {}),
        "epochs_run": len(history), "params": count_params(model), "macs": count_macs(model),
        "epoch_times": [float(r["epoch_time"]) for r in history],
        "train_images_per_second": float(np.median(
            [float(r["images_per_second"]) for r in history])) if history else None,
        "train_examples": d.sizes["train"], "class_names": d.class_names,
        "image_size": p.image_size, "channels": p.channels,
    }
    names = [path for path, _ in d.splits["test"]] if d.splits is not None else None
    graded = report.from_predictions(*predicted, d.class_names, names=names,
                                     threshold=p.threshold)
    report.write_report(graded, run.run_dir,
                        title=f"{os.path.basename(os.path.normpath(run.run_dir))}, test")
    rundir.write_json(os.path.join(run.run_dir, "results.json"), results)
    rundir.plot_history(history, os.path.join(run.run_dir, "curves.png"),
                        title=os.path.basename(os.path.normpath(run.run_dir)))
    return results


def _raw_scores(model, path, test_ds, recipe, num_classes, threshold=None):
    """A run with a weight average: the test scores of the raw weights its training
    ended with (`kres.training.fit.RAW_WEIGHTS`), beside the average's."""
    if not os.path.isfile(path):
        return {}
    raw = keras.models.clone_model(model)
    raw.set_weights(rundir.load_arrays(path))
    key = "accuracy" if threshold is None else "map"
    single = scores(raw, test_ds, num_classes, loss=model.loss, threshold=threshold)
    if not recipe.test_flip:
        return {f"test_{key}_raw": single[key]}
    flipped = scores(raw, test_ds, num_classes, loss=model.loss, flip=True, threshold=threshold)
    return {f"test_{key}_raw": flipped[key], f"test_{key}_raw_single_view": single[key]}


def _fit_phases(model, run, train_from, val_ds, p, strategy, **common):
    """Compiles and fits `model`: in one phase, or, with the recipe's
    `frozen_epochs`, first the classifier alone and then the network.

    The frozen phase keeps its backup in ``backup-frozen/`` and, once done,
    its weights in ``frozen.npz``; a run killed in either phase, or between
    them, resumes where it was. Returns whether Keras compiled with XLA.
    """
    recipe, own_dir = p.recipe, run.own_dir

    def compile_phase(phase_recipe):
        with strategy.scope():
            compile_model(model, phase_recipe, p.steps_per_epoch, p.data.spec.num_classes,
                          jit_compile=run.config.jit_compile, distilled=p.teacher is not None,
                          threshold=p.threshold)

    if not recipe.frozen_epochs:
        compile_phase(recipe)
        fit(model, own_dir, train_from, val_ds, recipe=recipe, resume=run.resuming,
            backup=run.backup, **common)
        return bool(model.jit_compile)
    frozen_path = os.path.join(own_dir, "frozen.npz")
    frozen_done = run.resuming and os.path.isfile(frozen_path)
    if frozen_done:
        finetune.load_weights_array(model, frozen_path)
    else:
        finetune.freeze_backbone(model)
        compile_phase(recipe.frozen_phase())
        # The frozen phase's weights are saved at its last epoch's end, before its
        # backup is removed: a crash between the phases loses nothing.
        saver = finetune.SaveWeightsAt(frozen_path, recipe.frozen_epochs)
        fit(model, own_dir, train_from, val_ds, recipe=recipe.frozen_phase(),
            resume=run.resuming, backup_dir=os.path.join(own_dir, "backup-frozen"),
            last=False, **{**common, "callbacks": [*common["callbacks"], saver]})
    finetune.unfreeze(model, recipe.unfreeze)
    later = recipe.unfrozen_phase()
    compile_phase(later)
    fit(model, own_dir, train_from, val_ds, recipe=later, resume=frozen_done,
        initial_epoch=recipe.frozen_epochs, epochs=recipe.epochs, **common)
    return bool(model.jit_compile)


def _class_weights(config, d):
    """``{class: weight}`` for `model.fit` when the config asks for class weights."""
    if not config.class_weights:
        return None
    if d.splits is None:
        raise ValueError("class_weights needs the training labels of an image folder "
                         f"(kres.data.splits); {d.name!r} is none. Received: class_weights=True")
    return ksplits.class_weights(d.splits, d.spec.num_classes)


def _write_data_records(run_dir, d):
    """A folder's split, scan summary and skipped files, in the run directory."""
    if d.splits is None:
        return
    path = os.path.join(run_dir, "splits.json")
    if not os.path.isfile(path):
        ksplits.write_splits(path, d.splits)
    if d.folder_scan is not None:
        with open(os.path.join(run_dir, "scan.txt"), "w") as f:
            f.write(d.folder_scan.summary() + "\n")
    rundir.write_json(os.path.join(run_dir, "skipped.json"),
                      [{"path": path, "reason": reason} for path, reason in d.skipped])


def _check_cluster(config, run_dir):
    """A multi-worker run's `kres.training.cluster.Cluster`, checked before TensorFlow
    starts; else None."""
    if config.strategy != "multi-worker":
        return None
    worker = kcluster.from_environment()
    multiworker.check_keras_version()
    if run_dir is None:
        raise ValueError(
            "strategy='multi-worker' needs run_dir (--out), the same on every worker (the chief "
            "writes it; a restarted worker finds its backup by it). Received: run_dir=None")
    if config.seed is None:
        raise ValueError(
            "strategy='multi-worker' needs a seed, the same on every worker: each worker reads "
            "the whole dataset, shuffles it and keeps its share, so the shuffles must agree. "
            "Received: seed=None")
    recipe = resolve_recipe(config.recipe, **config.recipe_overrides)
    if recipe.ema:
        raise ValueError(
            "strategy='multi-worker' does not average weights yet (the average is not among "
            "what the workers take from the chief's backup). Received: ema=True")
    if recipe.batch_size % worker.num_workers:
        raise ValueError(
            f"batch_size is the global batch of a multi-worker run and must split evenly "
            f"among its {worker.num_workers} workers. Received: batch_size={recipe.batch_size}")
    return worker
