"""Training: a `TrainConfig` resolved into a run directory and one call of `model.fit`.

`train` validates the configuration, loads the data, builds the model in the
run's precision, compiles it with its recipe (`kres.recipes`) and fits it
with the run directory's callbacks (`kres.fitting.fit`, shared with
`kres.tuning`): best
checkpoint, CSV history, TensorBoard, early stopping, a NaN guard, and
`keras.callbacks.BackupAndRestore`, so a killed run resumes where it was.
The files it leaves are described in `kres.runs`.
"""

import contextlib
import dataclasses
import json
import os
import shutil
from dataclasses import dataclass

import keras
import numpy as np

from kres import checks, finetune, multiworker, runs, stats
from kres import cluster as kcluster
from kres import datasets as kdatasets
from kres import splits as ksplits
from kres.augment import FLIPPING, pipeline
from kres.devices import PRECISIONS, STRATEGIES, make_strategy, resolve_precision
from kres.fitting import fit, pipelines
from kres.models.base import (
    flip_averaged,
    image_input,
    load_model,
    preprocessing_layer,
    with_preprocessing,
)
from kres.preprocessing import Preprocessing
from kres.recipes import (
    Recipe,
    as_config,
    build_state,
    compile_model,
    metrics,
    resolve_recipe,
    spec_overrides,
)
from kres.registry import build_model, lookup, resolve_spec

JIT_COMPILE = ("auto", True, False)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; saved as the run's config.json.

    Every field is checked when the config is made: a bad value is a
    `ValueError` naming the field and the value received.

    Attributes:
        model: a registry name (`kres.list_models`).
        dataset: a dataset name (`kres.datasets.list_datasets`) or an image
            folder (or any name, with `data=` given to `train`).
        recipe: a recipe name (`kres.recipes.RECIPES`).
        recipe_overrides: recipe fields to change, e.g. ``{"epochs": 30}``.
        model_overrides: spec fields to change, e.g. ``{"drop_path_rate": 0.1}``.
        image_size: input height and width (default: the dataset's, else the
            model's).
        channels: input channels (default: the dataset's; 3 feeds grayscale
            data to an RGB model).
        subset: train on the first `subset` examples only.
        val_size: examples held out for validation (default: the dataset's).
        seed: seed of initialisation, shuffling and augmentation (``None``:
            random).
        precision: ``"auto"`` (mixed_float16 on a GPU, mixed_bfloat16 on a
            CPU with AMX or AVX512-BF16, float32 on other CPUs:
            `kres.devices.choose_precision`) or a Keras dtype policy
            (``"float32"`` turns bfloat16 off); the model is built in it, the
            global policy is left alone. results.json records the choice
            and its reason.
        jit_compile: XLA: ``"auto"`` (Keras: on with an accelerator), True
            or False.
        strategy: ``"auto"`` (MirroredStrategy over several GPUs, else the
            default), ``"default"``, ``"mirrored"`` or ``"multi-worker"``
            (MultiWorkerMirroredStrategy over the machines of `TF_CONFIG` or
            Slurm; `kres.cluster`).
        data_dir: the dataset's tfds data directory (default
            `kres.datasets.data_dir_for`).
        weights: start from pretrained weights (`kres.finetune.load_pretrained`):
            ``"imagenet"`` or a ``.keras``, ``.weights.h5``, keras.applications
            ``.h5`` or timm ``.safetensors`` file; the classifier is new,
            sized to the dataset, and the input is normalised as the weights
            expect. ``None``: random initialisation.
        skip_bad_images: an image folder's files that do not decode are left
            out (and listed in the run's ``skipped.json``) instead of
            stopping the run before it starts.
        class_weights: weigh each class's loss by ``n / (classes * n_class)``
            of the training split (for imbalanced data).
    """

    model: str
    dataset: str
    recipe: str = "he2015-cifar"
    recipe_overrides: dict = dataclasses.field(default_factory=dict)
    model_overrides: dict = dataclasses.field(default_factory=dict)
    image_size: int | None = None
    channels: int | None = None
    subset: int | None = None
    val_size: int | None = None
    seed: int | None = 0
    precision: str = "auto"
    jit_compile: object = "auto"
    strategy: str = "auto"
    data_dir: str | None = None
    weights: str | None = None
    skip_bad_images: bool = False
    class_weights: bool = False

    def __post_init__(self):
        checks.string("model", self.model)
        lookup(self.model)
        checks.string("dataset", self.dataset)
        checks.mapping("recipe_overrides", self.recipe_overrides)
        checks.mapping("model_overrides", self.model_overrides)
        resolve_recipe(self.recipe, **self.recipe_overrides)
        resolve_spec(self.model, **self.model_overrides)
        checks.positive_int("image_size", self.image_size, optional=True)
        if self.channels is not None:
            checks.choice("channels", self.channels, (1, 3))
        for field in ("subset", "val_size"):
            checks.positive_int(field, getattr(self, field), optional=True)
        checks.integer("seed", self.seed, minimum=0, optional=True)
        checks.choice("precision", self.precision, PRECISIONS)
        checks.choice("jit_compile", self.jit_compile, JIT_COMPILE, hint=False)
        checks.choice("strategy", self.strategy, STRATEGIES)
        checks.string("data_dir", self.data_dir, optional=True)
        finetune.check_weights(self.weights)
        checks.boolean("skip_bad_images", self.skip_bad_images)
        checks.boolean("class_weights", self.class_weights)
        recipe = resolve_recipe(self.recipe, **self.recipe_overrides)
        if recipe.frozen_epochs and self.weights is None:
            checks.fail("frozen_epochs", recipe.frozen_epochs,
                        "freezes pretrained layers: give weights (--weights), or set "
                        "frozen_epochs=0 to train from scratch")
        if recipe.frozen_epochs and self.strategy == "multi-worker":
            checks.fail("frozen_epochs", recipe.frozen_epochs,
                        "is not supported with strategy='multi-worker' yet")

    def to_json(self):
        """The config as a JSON-ready dict (tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


@dataclass
class Prepared:
    """What `prepare` resolved: the recipe, the spec, the data, the input shape,
    its preprocessing, and the pretrained weights (or None)."""

    recipe: Recipe
    spec: object
    data: kdatasets.Data
    image_size: int
    channels: int
    steps_per_epoch: int
    preprocessing: object
    pretrained: finetune.Pretrained | None = None


def resolve_input(model, spec, data, *, image_size, channels, batch_sizes):
    """The input size and channels of a run (or a search's trials), checked.

    Args:
        model: the registry name (for the messages).
        spec: its spec.
        data: the loaded `kres.datasets.Data`.
        image_size: asked-for height and width, or ``None`` (the dataset's,
            else the model's default).
        channels: asked-for channels, or ``None`` (the dataset's).
        batch_sizes: every batch size the run (or search) will use.

    Returns:
        ``(image_size, channels)``.

    Raises:
        ValueError: for an image size below the network's minimum, a batch
            larger than the training set, or RGB asked of grayscale data.
    """
    image_size = image_size or data.spec.image_size or spec.default_size
    channels = channels or data.spec.channels
    if image_size < spec.min_size:
        raise ValueError(
            f"image_size is too small for {model}, which needs at least "
            f"{spec.min_size} pixels. Received: image_size={image_size}"
        )
    if channels == 1 and data.spec.channels == 3:
        raise ValueError("channels must be 3 for RGB data (1 is for grayscale data). "
                         "Received: channels=1")
    too_big = [b for b in batch_sizes if b > data.sizes["train"]]
    if too_big:
        raise ValueError(
            f"batch_size is larger than the {data.sizes['train']} training examples. "
            f"Received: batch_size={max(too_big)}"
        )
    return image_size, channels


def load_data(dataset, *, data_dir=None, subset=None, val_size=None, **folder):
    """`kres.datasets.load`, failing on unknown names before any I/O; `folder`
    settings (``skip_bad_images``, ``splits``, ``seed``, ``channels``) apply to
    image folders only."""
    if not os.path.isdir(dataset):
        kdatasets.get_dataset_spec(dataset)
        folder = {}
    return kdatasets.load(dataset, data_dir=data_dir, subset=subset, val_size=val_size,
                          **folder)


def prepare(config, data=None, run_dir=None, resuming=False):
    """Validates a config against its data, loading the data and the pretrained
    weights, before the run's model is built.

    A folder's split is read from ``run_dir/splits.json`` when resuming.

    Raises:
        ValueError: for unknown names, an image size too small for the model,
            a batch larger than the training set, labels outside the classes,
            a folder with images that do not decode (without
            `skip_bad_images`), weights that do not fit the model.
    """
    recipe = resolve_recipe(config.recipe, **config.recipe_overrides)
    spec = resolve_spec(config.model, **model_overrides(config, recipe))
    if getattr(spec, "aux_classifiers", False):
        raise ValueError(
            "kres train fits one-output models; train GoogLeNet's auxiliary classifiers with "
            "model.fit and loss_weights=[1, 0.3, 0.3] (see docs/models.md). "
            "Received: aux_classifiers=True"
        )
    weights = config.weights
    # A kres model brings its own input shape; published weights are RGB.
    pretrained = (finetune.load_pretrained(weights, config.model, input_shape=(None, None, None),
                                           overrides=model_overrides(config, recipe))
                  if weights and weights.endswith(".keras") else None)
    own_size, own_channels = (pretrained.input_shape[0], pretrained.input_shape[-1]) \
        if pretrained else (None, 3 if weights and not weights.endswith(".weights.h5") else None)
    if data is None:
        splits_path = os.path.join(run_dir, "splits.json") if run_dir else None
        data = load_data(config.dataset, data_dir=config.data_dir, subset=config.subset,
                         val_size=config.val_size, skip_bad_images=config.skip_bad_images,
                         seed=config.seed or 0, channels=config.channels or own_channels,
                         splits=ksplits.read_splits(splits_path)
                         if resuming and os.path.isfile(splits_path) else None)
    image_size, channels = resolve_input(config.model, spec, data,
                                         image_size=config.image_size or own_size,
                                         channels=config.channels or own_channels,
                                         batch_sizes=[recipe.batch_size])
    if weights and pretrained is None:
        pretrained = finetune.load_pretrained(weights, config.model,
                                              input_shape=(image_size, image_size, channels),
                                              overrides=model_overrides(config, recipe))
    augment = recipe.augment or data.spec.augment
    if recipe.test_flip and augment not in FLIPPING:
        if not config.recipe_overrides.get("test_flip"):  # the recipe's: off for this data
            recipe = dataclasses.replace(recipe, test_flip=False)
        else:
            raise ValueError(
                f"test_flip averages each test image's predictions with its mirror image's, but "
                f"this run's augmentation ({augment!r}) never shows the network a mirror image; "
                f"train with one of {', '.join(FLIPPING)} or leave test_flip off. "
                f"Received: test_flip=True")
    input_shape = (image_size, image_size, channels)
    preprocessing = data.spec.preprocessing(input_shape)
    if pretrained is not None:
        preprocessing = pretrained.preprocessing(image_size, image_size,
                                                 preprocessing.resize) or preprocessing
    return Prepared(recipe, spec, data, image_size, channels,
                    steps_per_epoch=data.sizes["train"] // recipe.batch_size,
                    preprocessing=preprocessing, pretrained=pretrained)


def model_overrides(config, recipe):
    """The spec fields a run changes: the config's, plus the recipe's zero-init
    (for the residual networks, the families that have a residual branch)."""
    return spec_overrides(recipe, config.model, config.model_overrides)


def train(model, dataset=None, *, run_dir=None, data=None, callbacks=(), verbose="auto",
          cluster_timeout=None, worker_restarts=3, **settings):
    """Trains a model on a dataset with one call of `model.fit`, in a run directory.

    If `run_dir` holds an unfinished run of the same config, training resumes
    from its last completed epoch (weights, optimizer state and iteration
    count restored by `keras.callbacks.BackupAndRestore`). Everything is
    checked before any work starts; the process's Keras settings (the global
    dtype policy among them) are left as they were.

    With ``strategy="multi-worker"``, every worker calls `train` with the
    same arguments (its own `TF_CONFIG`); the recipe's batch size is the
    global batch, split evenly among the workers. Only the chief (worker 0)
    writes `run_dir`; the others keep their copy in
    `kres.multiworker.worker_dir` and remove it when the run completes.
    Every worker resumes from the chief's backup; a worker that loses
    another restarts itself to wait for it (`worker_restarts`).

    Args:
        model: a registry name, or a whole `TrainConfig` (then no `dataset`
            and no `settings`).
        dataset: a dataset name or image folder.
        run_dir: the run directory (default ``runs/<model>-<dataset>-<time>``).
        data: a `kres.datasets.Data` to use instead of loading the dataset
            (e.g. `kres.datasets.from_arrays`).
        callbacks: extra Keras callbacks.
        verbose: Keras's `fit` verbosity (0 for quiet).
        cluster_timeout: multi-worker only: seconds to wait for the other
            workers (default `kres.cluster.DEFAULT_TIMEOUT`).
        worker_restarts: multi-worker only: when another worker is lost,
            this process restarts itself (the same command) to wait for it
            and resume from the chief's backup, at most this many times in
            a row without a finished epoch (`kres.multiworker.restart_after_loss`).
        **settings: `TrainConfig` fields (``recipe="wrn-cifar"``,
            ``precision="mixed_bfloat16"``, ``subset=5000``, ...) and recipe
            fields (``epochs=30``, ``batch_size=64``, ``learning_rate=0.05``).

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

    >>> results = kres.train("cifar_resnet20", "fashion_mnist", epochs=2,
    ...                      subset=5000)  # doctest: +SKIP
    >>> results["test_accuracy"]  # doctest: +SKIP
    0.87
    """
    config = as_config(TrainConfig, model, dataset, settings)
    checks.integer("worker_restarts", worker_restarts, minimum=0)
    worker = _check_cluster(config, run_dir)
    run_dir = run_dir or runs.default_dir(config.model, config.dataset)
    own_dir = run_dir if worker is None or worker.is_chief else multiworker.worker_dir(
        run_dir, worker.rank)
    resuming = runs.check_saved_config(own_dir, "config.json", config)
    if resuming and os.path.isfile(os.path.join(run_dir, "results.json")):
        raise ValueError(f"The run in {run_dir} has finished already (results.json exists). "
                         f"Received: run_dir={run_dir!r}")
    backup = None if worker is None else multiworker.ChiefBackupAndRestore(
        os.path.join(own_dir, "backup"), worker.is_chief)
    try:
        strategy = make_strategy(config.strategy, worker, cluster_timeout)
        p = prepare(config, data, run_dir=own_dir, resuming=resuming)
        precision, precision_reason = resolve_precision(config.precision)
        if config.seed is not None:
            keras.utils.set_random_seed(config.seed)
        recipe, d = p.recipe, p.data
        overrides = {**model_overrides(config, recipe),
                     **(p.pretrained.overrides if p.pretrained else {})}
        with strategy.scope():
            # The model normalises its own pixels: the .keras file alone serves it.
            model = build_model(config.model, classes=d.spec.num_classes,
                                input_tensor=image_input(p.preprocessing, d.class_names),
                                dtype=precision, **overrides)
            if p.pretrained is not None:  # weights that do not fit fail before any file
                finetune.transfer_weights(p.pretrained.model, model)
                p.pretrained = None  # the copy is all the run needs
        os.makedirs(own_dir, exist_ok=True)
        if not resuming:
            runs.write_config(own_dir, "config.json", config)
        _write_data_records(own_dir, d)
        runs.write_model_description(own_dir, model=config.model, spec=p.spec,
                                     preprocessing=p.preprocessing,
                                     class_names=d.class_names, dataset=d.name)
        train_ds, val_ds = pipelines(d, recipe, p.image_size, p.channels, seed=config.seed,
                                     deterministic=worker is not None,
                                     preprocessing=p.preprocessing)
        fixes = contextlib.nullcontext()
        if strategy.num_replicas_in_sync > 1:
            callbacks = [multiworker.AverageBatchNormStatistics(), *callbacks]
        if worker is not None:
            train_ds = multiworker.shard_by_data(train_ds)
            val_ds = multiworker.shard_by_data(val_ds)
            fixes = multiworker.keras_fixes()
        common = dict(train_examples=d.sizes["train"], callbacks=callbacks, verbose=verbose,
                      class_weight=_class_weights(config, d))
        with fixes:
            jit_compile = _fit_phases(model, own_dir, train_ds, val_ds, config, p, strategy,
                                      resuming=resuming, backup=backup, **common)
    except Exception as error:
        if worker is None or not multiworker.is_worker_lost(error):
            raise
        multiworker.restart_after_loss(error, worker, backup.epoch, worker_restarts)
    if worker is not None and not worker.is_chief:
        shutil.rmtree(own_dir, ignore_errors=True)
        return {"worker": worker.rank, "run_dir": run_dir, "epochs_run": backup.epoch}

    history = runs.read_history(os.path.join(run_dir, "history.csv"))
    best_path = os.path.join(run_dir, "best.keras")
    if os.path.isfile(best_path):
        model = load_model(best_path)
    test_ds = pipeline(d.test, d.spec, training=False, cache=False, image_size=p.image_size,
                       channels=p.channels, num_classes=d.spec.num_classes,
                       batch_size=recipe.batch_size)
    scores = model.evaluate(test_ds, verbose=0, return_dict=True)
    single_view = {}
    if recipe.test_flip:
        single_view = {f"{key}_single_view": value for key, value in scores.items()}
        scores = _scores(model, test_ds, d.spec.num_classes, loss=model.loss, flip=True)
    results = {
        "model": config.model, "dataset": d.name, "precision": precision,
        "precision_reason": precision_reason,
        "jit_compile": jit_compile,
        "test_accuracy": scores["accuracy"], "test_loss": scores["loss"],
        **({"test_top5": scores["top5"]} if "top5" in scores else {}),
        "test_flip": recipe.test_flip,
        **{f"test_{key}": value for key, value in single_view.items()},
        "best_val_accuracy": max((float(r["val_accuracy"]) for r in history), default=None),
        "epochs_run": len(history),
        "params": stats.count_params(model),
        "macs": stats.count_macs(model),
        "epoch_times": [float(r["epoch_time"]) for r in history],
        "train_images_per_second": float(np.median(
            [float(r["images_per_second"]) for r in history])) if history else None,
        "train_examples": d.sizes["train"], "class_names": d.class_names,
        "image_size": p.image_size, "channels": p.channels,
    }
    runs.write_json(os.path.join(run_dir, "results.json"), results)
    runs.plot_history(history, os.path.join(run_dir, "curves.png"),
                      title=os.path.basename(os.path.normpath(run_dir)))
    return results


def _scores(model, ds, num_classes, *, loss, flip=False):
    """`model`'s loss and metrics on `ds`, compiled anew with `loss`; with
    `flip`, of each image's and its mirror image's probabilities averaged."""
    if flip:
        model = flip_averaged(model)
    model.compile(loss=loss, metrics=metrics(num_classes))
    build_state(model, num_classes)
    return model.evaluate(ds, verbose=0, return_dict=True)


def _fit_phases(model, run_dir, train_ds, val_ds, config, p, strategy, *, resuming, backup,
                **common):
    """Compiles and fits `model`: in one phase, or, with the recipe's
    `frozen_epochs`, first the classifier alone and then the network.

    The frozen phase keeps its backup in ``backup-frozen/`` and, once done,
    its weights in ``frozen.npz``; a run killed in either phase, or between
    them, resumes where it was. Returns whether Keras compiled with XLA.
    """
    recipe = p.recipe

    def compile_phase(phase_recipe):
        with strategy.scope():
            compile_model(model, phase_recipe, p.steps_per_epoch, p.data.spec.num_classes,
                          jit_compile=config.jit_compile)

    if not recipe.frozen_epochs:
        compile_phase(recipe)
        fit(model, run_dir, train_ds, val_ds, recipe=recipe, resume=resuming, backup=backup,
            **common)
        return bool(model.jit_compile)
    frozen_path = os.path.join(run_dir, "frozen.npz")
    frozen_done = resuming and os.path.isfile(frozen_path)
    if frozen_done:
        finetune.load_weights_array(model, frozen_path)
    else:
        finetune.freeze_backbone(model)
        compile_phase(recipe.frozen_phase())
        # The frozen phase's weights are saved at its last epoch's end, before its
        # backup is removed: a crash between the phases loses nothing.
        saver = finetune.SaveWeightsAt(frozen_path, recipe.frozen_epochs)
        fit(model, run_dir, train_ds, val_ds, recipe=recipe.frozen_phase(), resume=resuming,
            backup_dir=os.path.join(run_dir, "backup-frozen"),
            **{**common, "callbacks": [*common["callbacks"], saver]})
    finetune.unfreeze(model, recipe.unfreeze)
    later = recipe.unfrozen_phase()
    compile_phase(later)
    fit(model, run_dir, train_ds, val_ds, recipe=later, resume=frozen_done,
        initial_epoch=recipe.frozen_epochs, epochs=recipe.epochs, **common)
    return bool(model.jit_compile)


def _class_weights(config, d):
    """``{class: weight}`` for `model.fit` when the config asks for class weights."""
    if not config.class_weights:
        return None
    if d.splits is None:
        raise ValueError("class_weights needs the training labels of an image folder "
                         f"(kres.splits); {d.name!r} is none. Received: class_weights=True")
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
    runs.write_json(os.path.join(run_dir, "skipped.json"),
                    [{"path": path, "reason": reason} for path, reason in d.skipped])


def _check_cluster(config, run_dir):
    """A multi-worker run's `kres.cluster.Cluster`, checked before TensorFlow starts; else None."""
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
    if recipe.batch_size % worker.num_workers:
        raise ValueError(
            f"batch_size is the global batch of a multi-worker run and must split evenly "
            f"among its {worker.num_workers} workers. Received: batch_size={recipe.batch_size}")
    return worker


def evaluate(model_path, dataset, *, split="test", data_dir=None, batch_size=256, flip=False):
    """Scores a saved ``.keras`` model on a dataset split.

    A model kres trained normalises its own pixels
    (`kres.layers.InputPreprocessing`), wherever its file was moved. For
    another model (a run of kres before 0.2, a model built by hand), the
    normalisation is the ``model.json`` beside it, else the dataset's
    statistics. Beside a run's model, the run directory also gives an image
    folder's split (``splits.json``), the validation size and whether bad
    images were skipped (``config.json``).

    Args:
        model_path: a ``.keras`` file (e.g. a run's ``best.keras``).
        dataset: a dataset name or image folder.
        split: ``"test"``, ``"val"`` or ``"train"``.
        data_dir: the dataset's tfds data directory.
        batch_size: evaluation batch size.
        flip: average each image's and its mirror image's predictions
            (`kres.flip_averaged`; a recipe's ``test_flip``).

    Returns:
        A dict with ``loss``, ``accuracy`` (and ``top5`` for many classes).

    Raises:
        ValueError: for a missing model file, an unknown dataset or split, or
            a model whose classes or input do not fit the dataset.

    Example:

    >>> kres.evaluate("runs/demo/best.keras", "fashion_mnist")  # doctest: +SKIP
    {'accuracy': 0.899, 'loss': 0.28}
    """
    checks.choice("split", split, ("train", "val", "test"))
    checks.positive_int("batch_size", batch_size)
    checks.boolean("flip", flip)
    if not os.path.isfile(model_path):
        raise ValueError(f"No model file at model_path. Received: model_path={model_path!r}")
    run = os.path.dirname(os.path.abspath(model_path))
    saved = runs.read_json(os.path.join(run, "config.json"))
    same = saved.get("dataset") is not None and os.path.abspath(saved["dataset"]) == \
        os.path.abspath(dataset)
    model = load_model(model_path)
    _, height, width, channels = model.input_shape
    folder = {}
    if os.path.isdir(dataset):
        splits_path = os.path.join(run, "splits.json")
        folder = dict(channels=channels, seed=saved.get("seed") or 0,
                      skip_bad_images=bool(same and saved.get("skip_bad_images")),
                      splits=ksplits.read_splits(splits_path)
                      if same and os.path.isfile(splits_path) else None)
    data = load_data(dataset, data_dir=data_dir,
                     val_size=saved.get("val_size") if same else None, **folder)
    if preprocessing_layer(model) is None:
        described = runs.read_json(os.path.join(run, "model.json")).get("preprocessing")
        prep = Preprocessing.from_json(described) if described else None
        if prep is None or (prep.height, prep.width, prep.channels) != (height, width, channels):
            prep = data.spec.preprocessing((height, width, channels))  # none, or another model's
        model = with_preprocessing(model, prep)
    classes = model.output_shape[-1]
    if classes != data.spec.num_classes:
        raise ValueError(
            f"The model predicts {classes} classes, the dataset has {data.spec.num_classes}. "
            f"Received: dataset={dataset!r}"
        )
    ds = pipeline(getattr(data, split), data.spec, training=False, batch_size=batch_size,
                  image_size=height, channels=channels, num_classes=classes, cache=False)
    return _scores(model, ds, classes, loss="categorical_crossentropy", flip=flip)

