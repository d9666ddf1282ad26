"""Training: the papers' recipes around one call of `model.fit`.

A `Recipe` is a named preset (optimizer, schedule, weight decay, epochs,
augmentation) that every field of which can be overridden. `train` resolves a
`TrainConfig` into a run directory and fits the model there:

    runs/<model>-<dataset>-<time>/
        config.json      the resolved configuration (resume checks against it)
        history.csv      one row per epoch (loss, accuracy, learning rate, time)
        best.keras       the best model by validation accuracy
        backup/          Keras BackupAndRestore state while a run is unfinished
        tensorboard/     TensorBoard logs
        curves.png       loss, accuracy and learning rate per epoch
        results.json     test accuracy, size, speed

Weight decay is coupled L2, as in the papers' SGD (and PyTorch's
``weight_decay``): each decayed variable carries an L2 regularizer of
``weight_decay / 2 * ||w||^2``, so its gradient gains ``weight_decay * w``
before momentum. Learning-rate schedules are `keras.optimizers.schedules`
objects stepped every iteration.
"""

import csv
import dataclasses
import datetime
import json
import math
import os
import shutil
import time
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

import kres
from kres import data as kdata
from kres.errors import did_you_mean
from kres.registry import resolve_spec

SCHEDULES = ("step", "cosine")
STRATEGIES = ("auto", "default", "mirrored", "multi-worker")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


@dataclass(frozen=True)
class Recipe:
    """A training recipe. Every field can be overridden (`resolve_recipe`).

    Attributes:
        epochs: passes over the training set.
        batch_size: examples per step.
        learning_rate: peak learning rate (before `scale_lr`).
        scale_lr: multiply `learning_rate` by ``batch_size / 256`` (Goyal et
            al.'s linear scaling rule, the ImageNet recipes).
        momentum: SGD momentum.
        nesterov: Nesterov momentum.
        weight_decay: coupled L2 weight decay.
        decay_all: decay batch-norm parameters and biases too (the papers);
            False decays convolution and dense kernels only (Bag of Tricks).
        schedule: ``"step"`` (multiply by `gamma` at each milestone) or
            ``"cosine"``.
        milestones: fractions of the run at which the step schedule decays.
        gamma: the step schedule's factor.
        warmup_epochs: linear warmup from 0 (cosine schedule).
        label_smoothing: label smoothing of the cross-entropy.
        augment: training augmentation (`kres.data.AUGMENTATIONS`); ``None``
            for the dataset's own (the CIFAR pad-crop-flip on the small sets).
        color_jitter: brightness/contrast/saturation jitter strength for the
            ``"imagenet"`` augmentation (0: off).
        mixup_alpha: mixup's Beta parameter (0: off).
        cutmix_alpha: CutMix's Beta parameter (0: off).
        random_erasing: random-erasing probability (0: off).
        zero_init_last: zero-initialise each residual branch's last BN.
        patience: early-stopping patience in epochs on validation accuracy
            (0: no early stopping).
    """

    epochs: int = 164
    batch_size: int = 128
    learning_rate: float = 0.1
    scale_lr: bool = False
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    decay_all: bool = True
    schedule: str = "step"
    milestones: tuple = (0.5, 0.75)
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    augment: str | None = None
    color_jitter: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    random_erasing: float = 0.0
    zero_init_last: bool = False
    patience: int = 0


RECIPES = {
    # He et al. 2015, Sec. 4.2: lr 0.1, /10 at 32k and 48k of 64k iterations
    # (50% and 75%), wd 1e-4, batch 128, about 164 epochs.
    "he2015-cifar": Recipe(),
    # Xie et al. 2017, Sec. 5.3: wd 5e-4, 300 epochs, /10 at 150 and 225.
    "xie2016-cifar": Recipe(epochs=300, weight_decay=5e-4),
    # Zagoruyko & Komodakis 2016: Nesterov, wd 5e-4, x0.2 at 60/120/160 of 200.
    "wrn-cifar": Recipe(epochs=200, weight_decay=5e-4, nesterov=True, gamma=0.2,
                        milestones=(0.3, 0.6, 0.8)),
    # torchvision's reference: lr 0.1 per 256, /10 every 30 of 90 epochs.
    "imagenet-step": Recipe(epochs=90, batch_size=256, scale_lr=True,
                            milestones=(1 / 3, 2 / 3)),
    # Bag of Tricks (He et al. 2018): 5-epoch warmup, cosine, label smoothing,
    # zero-init last BN, no decay on BN and biases.
    "imagenet-cosine": Recipe(epochs=120, batch_size=256, scale_lr=True, schedule="cosine",
                              warmup_epochs=5, label_smoothing=0.1, decay_all=False,
                              zero_init_last=True),
}


def resolve_recipe(name, **overrides):
    """A named recipe with some fields replaced.

    Raises:
        ValueError: for an unknown recipe or field, or an invalid value.
    """
    if name not in RECIPES:
        raise ValueError(f"Unknown recipe.{did_you_mean(name, RECIPES, cutoff=0.4)} Known: "
                         f"{', '.join(RECIPES)}. Received: recipe={name!r}")
    fields = {f.name for f in dataclasses.fields(Recipe)}
    for key in overrides:
        if key not in fields:
            raise ValueError(f"Unknown recipe field. Fields: {', '.join(sorted(fields))}. "
                             f"Received: {key}={overrides[key]!r}")
    recipe = dataclasses.replace(RECIPES[name], **overrides)
    _check_recipe(recipe)
    return recipe


def _check_recipe(r):
    checks = [
        ("epochs", r.epochs, isinstance(r.epochs, int) and r.epochs >= 1),
        ("batch_size", r.batch_size, isinstance(r.batch_size, int) and r.batch_size >= 1),
        ("learning_rate", r.learning_rate, r.learning_rate > 0),
        ("weight_decay", r.weight_decay, r.weight_decay >= 0),
        ("schedule", r.schedule, r.schedule in SCHEDULES),
        ("milestones", r.milestones, all(0 < m < 1 for m in r.milestones)),
        ("label_smoothing", r.label_smoothing, 0 <= r.label_smoothing < 1),
        ("warmup_epochs", r.warmup_epochs, 0 <= r.warmup_epochs < r.epochs),
        ("patience", r.patience, isinstance(r.patience, int) and r.patience >= 0),
        ("augment", r.augment, r.augment is None or r.augment in kdata.AUGMENTATIONS),
    ]
    for field, value, ok in checks:
        if not ok:
            raise ValueError(f"Invalid recipe value. Received: {field}={value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; saved as the run's config.json.

    Attributes:
        model: a registry name (`kres.list_models`).
        dataset: a dataset name (`kres.data.list_datasets`) or an image folder.
        recipe: a recipe name (`RECIPES`).
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
        precision: ``"auto"`` (mixed_float16 on GPU, float32 on CPU) or a
            Keras dtype policy.
        jit_compile: XLA: ``"auto"`` (Keras: on with an accelerator), True
            or False.
        strategy: ``"auto"`` (MirroredStrategy over several GPUs, else the
            default), ``"default"``, ``"mirrored"`` or ``"multi-worker"``.
        data_dir: the dataset's tfds data directory (default
            `kres.data.data_dir_for`).
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

    def to_json(self):
        """The config as a JSON-ready dict (tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


MULTI_WORKER_ERROR = (
    "strategy='multi-worker' is not supported: Keras 3's model.fit under "
    "tf.distribute.MultiWorkerMirroredStrategy fails in TF 2.21 with 'Attempt to convert a "
    "value (PerReplica...)', an open upstream problem (keras-team/keras#20585, "
    "tensorflow/tensorflow#72388). Use 'mirrored' for several GPUs of one machine. "
    "Received: strategy='multi-worker'"
)


def make_strategy(name):
    """The `tf.distribute` strategy for `TrainConfig.strategy`."""
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}. Received: strategy={name!r}")
    if name == "multi-worker":
        raise ValueError(MULTI_WORKER_ERROR)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def set_precision(precision):
    """Sets Keras's global dtype policy; returns its name."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}. "
                         f"Received: precision={precision!r}")
    if precision == "auto":
        precision = "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"
    keras.config.set_dtype_policy(precision)
    return precision


def learning_rate_schedule(recipe, steps_per_epoch):
    """The recipe's per-iteration schedule (a `keras.optimizers.schedules` object).

    Example:

    >>> schedule = learning_rate_schedule(RECIPES["he2015-cifar"], steps_per_epoch=100)
    >>> float(schedule(8200)), float(schedule(8201))
    (0.1, 0.01)
    """
    lr = recipe.learning_rate * (recipe.batch_size / 256 if recipe.scale_lr else 1.0)
    total = recipe.epochs * steps_per_epoch
    if recipe.schedule == "cosine":
        warmup = int(round(recipe.warmup_epochs * steps_per_epoch))
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup else lr, decay_steps=max(total - warmup, 1),
            warmup_target=lr if warmup else None, warmup_steps=warmup)
    boundaries = [int(round(m * total)) for m in recipe.milestones]
    values = [lr * recipe.gamma ** i for i in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def apply_weight_decay(model, weight_decay, decay_all=True):
    """Adds coupled L2 weight decay to `model`'s trainable variables.

    Each decayed variable gets the regularizer ``weight_decay / 2 * sum(w^2)``,
    whose gradient is ``weight_decay * w``. Regularizers set on variables are
    not part of the model's config, so saved models carry no training setting.

    Args:
        model: a Keras model.
        weight_decay: the decay coefficient.
        decay_all: decay every trainable variable; False decays only kernels
            (variables of rank > 1), sparing batch norm and biases.

    Returns:
        The number of decayed variables.
    """
    if weight_decay <= 0:
        return 0
    regularizer = keras.regularizers.L2(weight_decay / 2)
    decayed = [v for v in model.trainable_weights if decay_all or len(v.shape) > 1]
    for variable in decayed:
        variable.regularizer = regularizer
    return len(decayed)


class _EpochStats(keras.callbacks.Callback):
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


def _read_history(path):
    if not os.path.isfile(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _trim_history(path, epochs):
    """Keeps the first `epochs` rows: the ones the backup's weights have seen."""
    rows = _read_history(path)
    if len(rows) <= epochs:
        return rows
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows[:epochs])
    return rows[:epochs]


def default_run_dir(config, root="runs"):
    """``runs/<model>-<dataset>-<YYYYmmdd-HHMMSS>``."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    dataset = os.path.basename(os.path.normpath(config.dataset))
    return os.path.join(root, f"{config.model}-{dataset}-{stamp}")


@dataclass
class Prepared:
    """What `prepare` resolved: the recipe, the data, the input shape."""

    recipe: Recipe
    data: kdata.Data
    image_size: int
    channels: int
    steps_per_epoch: int


def prepare(config, data=None):
    """Validates a config and loads its data, before any model is built.

    Raises:
        ValueError: for unknown names, an image size too small for the model,
            a batch larger than the training set, labels outside the classes.
    """
    recipe = resolve_recipe(config.recipe, **config.recipe_overrides)
    spec = resolve_spec(config.model, **model_overrides(config, recipe))
    if getattr(spec, "aux_classifiers", False):
        raise ValueError(
            "kres train fits one-output models; train GoogLeNet's auxiliary classifiers with "
            "model.fit and loss_weights=[1, 0.3, 0.3] (see docs/models.md). "
            "Received: aux_classifiers=True"
        )
    if data is None:
        if not os.path.isdir(config.dataset):
            kdata.get_dataset_spec(config.dataset)  # unknown names fail before any I/O
        data = kdata.load(config.dataset, data_dir=config.data_dir, subset=config.subset,
                          val_size=config.val_size)
    image_size = config.image_size or data.spec.image_size or spec.default_size
    channels = config.channels or data.spec.channels
    if image_size < spec.min_size:
        raise ValueError(
            f"image_size is too small for {config.model}, which needs at least "
            f"{spec.min_size} pixels. Received: image_size={image_size}"
        )
    if recipe.batch_size > data.sizes["train"]:
        raise ValueError(
            f"batch_size is larger than the {data.sizes['train']} training examples. "
            f"Received: batch_size={recipe.batch_size}"
        )
    return Prepared(recipe, data, image_size, channels,
                    steps_per_epoch=data.sizes["train"] // recipe.batch_size)


def model_overrides(config, recipe):
    """The spec fields a run changes: the config's, plus the recipe's zero-init
    (for the residual networks, the families that have a residual branch)."""
    overrides = dict(config.model_overrides)
    if recipe.zero_init_last and hasattr(kres.get_spec(config.model), "zero_init_last"):
        overrides.setdefault("zero_init_last", True)
    return overrides


def _metrics(num_classes):
    metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    if num_classes > 10:
        metrics.append(keras.metrics.TopKCategoricalAccuracy(5, name="top5"))
    return metrics


def pipelines(d, recipe, image_size, channels, seed=None):
    """The training and validation pipelines of a recipe on loaded data `d`."""
    common = dict(image_size=image_size, channels=channels, num_classes=d.spec.num_classes,
                  batch_size=recipe.batch_size)
    train_ds = kdata.pipeline(d.train, d.spec, training=True, seed=seed,
                              cache=kdata.fits_in_memory(d.spec, d.sizes["train"]),
                              augment=recipe.augment, color_jitter=recipe.color_jitter,
                              mixup_alpha=recipe.mixup_alpha, cutmix_alpha=recipe.cutmix_alpha,
                              random_erasing=recipe.random_erasing, **common)
    val_ds = kdata.pipeline(d.val, d.spec, training=False,
                            cache=kdata.fits_in_memory(d.spec, d.sizes["val"]), **common)
    return train_ds, val_ds


def compile_model(model, recipe, steps_per_epoch, num_classes, jit_compile="auto"):
    """Compiles `model` with a recipe: SGD, its schedule, coupled weight decay,
    cross-entropy with label smoothing, accuracy (and top-5 beyond 10 classes)."""
    apply_weight_decay(model, recipe.weight_decay, recipe.decay_all)
    optimizer = keras.optimizers.SGD(
        learning_rate=learning_rate_schedule(recipe, steps_per_epoch),
        momentum=recipe.momentum, nesterov=recipe.nesterov)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.CategoricalCrossentropy(
                      label_smoothing=recipe.label_smoothing),
                  metrics=_metrics(num_classes), jit_compile=jit_compile)


def fit(model, run_dir, train_ds, val_ds, *, recipe, train_examples, epochs=None,
        initial_epoch=0, resume=False, callbacks=(), verbose="auto"):
    """The one call of `model.fit` in kres, with the run directory's callbacks.

    Writes ``history.csv``, ``best.keras``, ``tensorboard/`` and ``backup/``
    in `run_dir`. With `resume`, continues from the backup (dropping history
    rows newer than it); without, any old backup is discarded so the run
    starts from scratch.

    Returns:
        The Keras `History`.
    """
    os.makedirs(run_dir, exist_ok=True)
    history_path = os.path.join(run_dir, "history.csv")
    best_path = os.path.join(run_dir, "best.keras")
    backup_dir = os.path.join(run_dir, "backup")
    if not resume:
        shutil.rmtree(backup_dir, ignore_errors=True)
        for path in (history_path, best_path):
            if os.path.exists(path):
                os.remove(path)
    previous = _trim_history(history_path, _backup_epoch(backup_dir)) if resume else []
    best_so_far = max((float(r["val_accuracy"]) for r in previous), default=None)

    all_callbacks = [
        # Raises at the first non-finite loss, before any epoch-end callback can
        # save NaN weights; the backup of the last good epoch stays.
        keras.callbacks.TerminateOnNaN(raise_error=True),
        _EpochStats(train_examples),
        keras.callbacks.ModelCheckpoint(best_path, monitor="val_accuracy", mode="max",
                                        save_best_only=True,
                                        initial_value_threshold=best_so_far),
        keras.callbacks.CSVLogger(history_path, append=True),
        keras.callbacks.TensorBoard(os.path.join(run_dir, "tensorboard")),
        *callbacks,
    ]
    if recipe.patience:
        all_callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_accuracy", mode="max", patience=recipe.patience,
            restore_best_weights=True))
    # Last: an epoch is backed up only after its row and checkpoint are written.
    all_callbacks.append(keras.callbacks.BackupAndRestore(backup_dir))
    # The pipeline shuffles (seeded); Keras's own shuffle does not apply to datasets.
    return model.fit(train_ds, validation_data=val_ds, epochs=epochs or recipe.epochs,
                     initial_epoch=initial_epoch, shuffle=False, callbacks=all_callbacks,
                     verbose=verbose)


def check_saved_config(directory, filename, config):
    """Whether `directory` holds `config` already (a run or search to resume).

    Returns:
        True if ``directory/filename`` holds the same config, False if absent.

    Raises:
        ValueError: if it holds another config: resuming would mix two.
    """
    path = os.path.join(directory, filename)
    if not os.path.isfile(path):
        return False
    with open(path) as f:
        saved = json.load(f)
    current = config.to_json()
    if saved != current:
        changed = sorted(k for k in saved.keys() | current.keys()
                         if saved.get(k) != current.get(k))
        raise ValueError(
            f"The directory {directory} belongs to another configuration (differs in "
            f"{', '.join(changed)}); resume it with its own configuration or use a new "
            f"directory. Received: {directory!r}"
        )
    return True


def train(config, run_dir=None, *, data=None, callbacks=(), verbose="auto"):
    """Trains `config.model` on `config.dataset` with one call of `model.fit`.

    If `run_dir` holds an unfinished run of the same config, training resumes
    from its last completed epoch (weights, optimizer state and iteration
    count restored by `keras.callbacks.BackupAndRestore`).

    Args:
        config: a `TrainConfig`.
        run_dir: the run directory (default `default_run_dir(config)`).
        data: a `kres.data.Data` to use instead of loading `config.dataset`
            (e.g. `kres.data.from_arrays`).
        callbacks: extra Keras callbacks.
        verbose: Keras's `fit` verbosity (0 for quiet).

    Returns:
        The results dict written to ``results.json``.

    Raises:
        ValueError: for an invalid configuration, before training starts.
        RuntimeError: if the loss becomes NaN or infinite (the last backup is
            kept, and finite).

    Example:

    >>> config = TrainConfig("cifar_resnet20", "fashion_mnist",
    ...                      recipe_overrides={"epochs": 2}, subset=5000)
    >>> results = train(config)  # doctest: +SKIP
    """
    run_dir = run_dir or default_run_dir(config)
    resuming = check_saved_config(run_dir, "config.json", config)
    if resuming and os.path.isfile(os.path.join(run_dir, "results.json")):
        raise ValueError(f"The run in {run_dir} has finished already (results.json exists). "
                         f"Received: run_dir={run_dir!r}")
    strategy = make_strategy(config.strategy)
    p = prepare(config, data)
    precision = set_precision(config.precision)
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    os.makedirs(run_dir, exist_ok=True)
    if not resuming:
        with open(os.path.join(run_dir, "config.json"), "w") as f:
            json.dump(config.to_json(), f, indent=2)

    recipe, d = p.recipe, p.data
    train_ds, val_ds = pipelines(d, recipe, p.image_size, p.channels, seed=config.seed)

    with strategy.scope():
        model = kres.build_model(config.model, classes=d.spec.num_classes,
                                 input_shape=(p.image_size, p.image_size, p.channels),
                                 **model_overrides(config, recipe))
        compile_model(model, recipe, p.steps_per_epoch, d.spec.num_classes,
                      jit_compile=config.jit_compile)
    fit(model, run_dir, train_ds, val_ds, recipe=recipe, train_examples=d.sizes["train"],
        resume=resuming, callbacks=callbacks, verbose=verbose)

    history_path = os.path.join(run_dir, "history.csv")
    best_path = os.path.join(run_dir, "best.keras")
    history = _read_history(history_path)
    if os.path.isfile(best_path):
        model = keras.saving.load_model(best_path)
    test_ds = kdata.pipeline(d.test, d.spec, training=False, cache=False,
                             image_size=p.image_size, channels=p.channels,
                             num_classes=d.spec.num_classes, batch_size=recipe.batch_size)
    scores = model.evaluate(test_ds, verbose=0, return_dict=True)
    results = {
        "model": config.model, "dataset": d.name, "precision": precision,
        "test_accuracy": scores["accuracy"], "test_loss": scores["loss"],
        **({"test_top5": scores["top5"]} if "top5" in scores else {}),
        "best_val_accuracy": max((float(r["val_accuracy"]) for r in history), default=None),
        "epochs_run": len(history),
        "params": kres.count_params(model),
        "macs": kres.count_macs(model),
        "epoch_times": [float(r["epoch_time"]) for r in history],
        "train_images_per_second": float(np.median(
            [float(r["images_per_second"]) for r in history])) if history else None,
        "train_examples": d.sizes["train"], "class_names": d.class_names,
        "image_size": p.image_size, "channels": p.channels,
    }
    with open(os.path.join(run_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    plot_history(history, os.path.join(run_dir, "curves.png"), title=os.path.basename(run_dir))
    return results


def _backup_epoch(backup_dir):
    path = os.path.join(backup_dir, "training_metadata.json")
    if not os.path.isfile(path):
        return 0
    with open(path) as f:
        return int(json.load(f)["epoch"])


def plot_history(history, path, title=""):
    """Plots loss, accuracy and learning rate per epoch to a PNG.

    Args:
        history: rows of ``history.csv`` (dicts).
        path: the PNG to write.
        title: the figure's title.
    """
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [int(r["epoch"]) + 1 for r in history]

    def column(key):
        return [float(r[key]) if r.get(key) not in (None, "") else math.nan for r in history]

    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for key, label in (("loss", "train (running mean)"), ("val_loss", "validation")):
        axes[0].plot(epochs, column(key), "o-", label=label)
    for key, label in (("accuracy", "train (running mean)"), ("val_accuracy", "validation")):
        axes[1].plot(epochs, [100 * (1 - a) for a in column(key)], "o-", label=label)
    axes[2].plot(epochs, column("learning_rate"), "o")
    for ax, name in zip(axes, ("loss", "error (%)", "learning rate at the epoch's end")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend()
    axes[1].legend()
    axes[2].set_yscale("log")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evaluate(model_path, dataset, *, split="test", data_dir=None, batch_size=256):
    """Scores a saved ``.keras`` model on a dataset split.

    Args:
        model_path: a ``.keras`` file (e.g. a run's ``best.keras``).
        dataset: a dataset name or image folder.
        split: ``"test"``, ``"val"`` or ``"train"``.
        data_dir: the dataset's tfds data directory.
        batch_size: evaluation batch size.

    Returns:
        A dict with ``loss``, ``accuracy`` (and ``top5`` for many classes).
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test'. Received: split={split!r}")
    if not os.path.isfile(model_path):
        raise ValueError(f"No model file at model_path. Received: model_path={model_path!r}")
    model = keras.saving.load_model(model_path)
    d = kdata.load(dataset, data_dir=data_dir)
    _, height, width, channels = model.input_shape
    classes = model.output_shape[-1]
    if classes != d.spec.num_classes:
        raise ValueError(
            f"The model predicts {classes} classes, the dataset has {d.spec.num_classes}. "
            f"Received: dataset={dataset!r}"
        )
    ds = kdata.pipeline(getattr(d, split), d.spec, training=False, batch_size=batch_size,
                        image_size=height, channels=channels, num_classes=classes,
                        cache=False)
    model.compile(loss="categorical_crossentropy", metrics=_metrics(classes))
    return model.evaluate(ds, verbose=0, return_dict=True)
