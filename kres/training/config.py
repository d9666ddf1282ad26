"""A training run's configuration: every field checked when it is made.

`TrainConfig` is what defines a run (saved as its ``config.json``, which a
resume is checked against); `as_config` turns the top-level functions'
arguments (a name, a dataset and keyword settings) into a config.
"""

import dataclasses
import json
import os
from dataclasses import dataclass

from kres import checks
from kres.backends import keras_backend
from kres.data.catalog import DATASETS
from kres.data.sources import check_readable_here
from kres.models.registry import lookup, resolve_spec
from kres.training import distill, finetune
from kres.training.devices import PRECISIONS, STRATEGIES
from kres.training.recipes import Recipe, resolve_recipe

JIT_COMPILE = ("auto", True, False)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; saved as the run's config.json.

    Every field is checked when the config is made: a bad value is a
    `ValueError` naming the field and the value received.

    Attributes:
        model: a registry name (`kres.list_models`).
        dataset: a dataset name (`kres.data.catalog.list_datasets`) or an image
            folder (or any name, with `data=` given to `train`).
        recipe: a recipe name (`kres.training.recipes.RECIPES`).
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
            `kres.training.devices.choose_precision`) or a Keras dtype policy
            (``"float32"`` turns bfloat16 off); the model is built in it, the
            global policy is left alone. results.json records the choice
            and its reason.
        jit_compile: XLA: ``"auto"`` (Keras: on with an accelerator), True
            or False.
        strategy: ``"auto"`` (MirroredStrategy over several GPUs, else the
            default), ``"default"``, ``"mirrored"`` or ``"multi-worker"``
            (MultiWorkerMirroredStrategy over the machines of `TF_CONFIG` or
            Slurm; `kres.training.cluster`).
        data_dir: the dataset's tfds data directory (default
            `kres.data.catalog.data_dir_for`).
        weights: start from pretrained weights (`kres.training.finetune.load_pretrained`):
            ``"imagenet"`` or a ``.keras``, ``.weights.h5``, keras.applications
            ``.h5`` or timm ``.safetensors`` file; the classifier is new,
            sized to the dataset, and the input is normalised as the weights
            expect. ``None``: random initialisation.
        skip_bad_images: an image folder's files that do not decode are left
            out (and listed in the run's ``skipped.json``) instead of
            stopping the run before it starts.
        class_weights: weigh each class's loss by ``n / (classes * n_class)``
            of the training split (for imbalanced data).
        teacher: distil from a teacher (`kres.training.distill`): a ``.keras``
            file of a kres run (its ``best.keras``); its classes and input
            must be the student's.
            The recipe's `distill_temperature` and `distill_weight` apply.
        labels: an image folder's labels from a CSV file of ``path,label`` or
            ``path,label1;label2`` rows (paths relative to the folder;
            `kres.data.label_file`) in place of class folders. Several labels
            on a row make the run multi-label: sigmoid outputs, binary
            cross-entropy, the best model kept by validation PR AUC, and the
            test's mean average precision and F1 at `threshold`.
        threshold: a multi-label run's: an image's labels are the classes of
            probability at least this, in (0, 1); recorded in the model
            (`kres.layers.InputPreprocessing`), so `kres predict` and the
            export use it.
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
    teacher: str | None = None
    labels: str | None = None
    threshold: float = 0.5

    def __post_init__(self):
        checks.string("model", self.model)
        lookup(self.model)
        checks.string("dataset", self.dataset)
        check_readable_here(self.dataset)
        checks.mapping("recipe_overrides", self.recipe_overrides)
        checks.mapping("model_overrides", self.model_overrides)
        recipe = resolve_recipe(self.recipe, **self.fixed_recipe_overrides())
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
        if self.strategy == "multi-worker" and keras_backend() != "tensorflow":
            checks.fail("strategy", self.strategy,
                        f"is TensorFlow's (tf.distribute); Keras's backend here is "
                        f"{keras_backend()!r}: train with KERAS_BACKEND=tensorflow, or on one "
                        f"machine's GPUs with strategy='mirrored'")
        checks.string("data_dir", self.data_dir, optional=True)
        finetune.check_weights(self.weights)
        checks.boolean("skip_bad_images", self.skip_bad_images)
        checks.boolean("class_weights", self.class_weights)
        distill.check_teacher(self.teacher)
        checks.string("labels", self.labels, optional=True)
        if self.labels is not None and not os.path.isfile(self.labels):
            checks.fail("labels", self.labels, "must be a CSV file of path,label rows (it "
                                               "names no file)")
        if self.labels is not None and self.dataset in DATASETS:
            checks.fail("labels", self.labels, f"label the images of a folder; "
                                               f"{self.dataset!r} is a named dataset with "
                                               f"labels of its own")
        checks.number("threshold", self.threshold, low=0, high=1, low_open=True,
                      high_open=True)
        if self.teacher is not None and self.strategy == "multi-worker":
            checks.fail("teacher", self.teacher,
                        "is not supported with strategy='multi-worker' yet")
        if self.recipe_overrides.get("learning_rate") == "auto" and (
                self.strategy == "multi-worker"):
            checks.fail("learning_rate", "auto", "runs the range test on one machine: run "
                        "kres lr-find first and give its rate to every worker "
                        "(strategy='multi-worker')")
        if recipe.frozen_epochs and self.weights is None:
            checks.fail("frozen_epochs", recipe.frozen_epochs,
                        "freezes pretrained layers: give weights (--weights), or set "
                        "frozen_epochs=0 to train from scratch")
        if recipe.frozen_epochs and self.strategy == "multi-worker":
            checks.fail("frozen_epochs", recipe.frozen_epochs,
                        "is not supported with strategy='multi-worker' yet")

    def fixed_recipe_overrides(self):
        """`recipe_overrides` without a ``learning_rate="auto"`` (the range test's,
        `kres.training.lr_range`, which `kres.train` resolves before the run)."""
        return {k: v for k, v in self.recipe_overrides.items()
                if not (k == "learning_rate" and v == "auto")}

    def to_json(self):
        """The config as a JSON-ready dict (tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def as_config(config_type, first, dataset, settings):
    """The config of a run or search given as the top-level functions take it.

    Either `first` is a `config_type` already (then no `dataset` and no
    `settings`), or it is the config's first field (a model or space name)
    and `settings` are fields of `config_type` or of `Recipe`; recipe fields
    (``epochs=30``) go into its `recipe_overrides`.

    Args:
        config_type: `kres.training.config.TrainConfig` or `kres.tuning.SearchConfig`.
        first: a `config_type`, or its first field.
        dataset: the dataset (``None`` with a whole config).
        settings: a dict of keyword settings.

    Raises:
        ValueError: for a setting that is neither, or an invalid value.
    """
    if isinstance(first, config_type):
        if dataset is not None or settings:
            raise ValueError(f"Give a {config_type.__name__} alone, or a name with a dataset "
                             f"and settings. Received: a {config_type.__name__} and "
                             f"dataset={dataset!r}, settings {sorted(settings)}")
        return first
    own = {f.name for f in dataclasses.fields(config_type)}
    recipe_fields = {f.name for f in dataclasses.fields(Recipe)}
    unknown = sorted(set(settings) - own - recipe_fields)
    if unknown:
        hint = checks.did_you_mean(unknown[0], own | recipe_fields, 0.6)
        raise ValueError(f"Unknown setting.{hint} Settings are the fields of "
                         f"{config_type.__name__} and Recipe. Received: {unknown[0]}="
                         f"{settings[unknown[0]]!r}")
    settings = dict(settings)
    recipe = {k: settings.pop(k) for k in list(settings) if k in recipe_fields}
    overrides = {**settings.pop("recipe_overrides", {}), **recipe}
    return config_type(first, dataset, recipe_overrides=overrides, **settings)
