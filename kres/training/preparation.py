"""A run's configuration checked against its data, then its model built (`build`).

`prepare` resolves everything a run needs once: the recipe (its flip rule
applied to the data), the spec fields it changes, the data, the input size
and channels, the preprocessing the model will carry, and the pretrained
weights (loaded once).
"""

import dataclasses
import os
from dataclasses import dataclass

from kres import checks
from kres.data import sources
from kres.data import splits as ksplits
from kres.data.catalog import get_dataset_spec
from kres.models.inputs import image_input
from kres.models.registry import build_model, resolve_spec
from kres.preprocessing import FLIPPING
from kres.training import distill, finetune
from kres.training.recipes import Recipe, resolve_recipe, spec_overrides


@dataclass
class Prepared:
    """What `prepare` resolved.

    Attributes:
        recipe: the `Recipe`, with ``test_flip`` off where the data never
            show the network a mirror image.
        spec: the network's spec.
        overrides: every spec field the run's network changes (the config's,
            the recipe's zero-init, the pretrained weights' layout).
        data: the loaded `kres.data.sources.Data`.
        image_size: input height and width.
        channels: input channels.
        steps_per_epoch: training batches per epoch.
        preprocessing: the `kres.preprocessing.Preprocessing` the model
            carries: the pretrained weights', else the dataset's.
        pretrained: the `kres.training.finetune.Pretrained` weights, or None.
        teacher: the distillation teacher (`kres.training.distill`), frozen, or None.
        threshold: a multi-label run's label threshold (the config's), or
            ``None`` for a run of one class per image.
    """

    recipe: Recipe
    spec: object
    overrides: dict
    data: sources.Data
    image_size: int
    channels: int
    steps_per_epoch: int
    preprocessing: object
    pretrained: finetune.Pretrained | None = None
    teacher: object = None
    threshold: float | None = None

    @property
    def input_shape(self):
        """``(height, width, channels)``."""
        return (self.image_size, self.image_size, self.channels)


def resolve_input(model, spec, data, *, image_size, channels, batch_sizes):
    """The input size and channels of a run (or a search's trials), checked.

    Args:
        model: the registry name (for the messages).
        spec: its spec.
        data: the loaded `kres.data.sources.Data`.
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


def model_preprocessing(spec, input_shape, augment=None):
    """The `kres.preprocessing.Preprocessing` a model trained on a dataset carries:
    the dataset's statistics, and the ImageNet centre crop as its evaluation
    resize only when it is trained with the random-resized crop (`augment`, else
    the dataset's ``"imagenet"``); trained on whole images brought to the input
    size, it is evaluated and served so, not through a crop that would cut off
    the sides of an image of another shape."""
    preprocessing = spec.preprocessing(input_shape)
    if (augment or spec.augment) != "imagenet":
        preprocessing = dataclasses.replace(preprocessing, resize="resize")
    return preprocessing


def load_data(dataset, *, data_dir=None, subset=None, val_size=None, **folder):
    """`kres.data.sources.load`, failing on unknown names before any I/O; `folder`
    settings (``skip_bad_images``, ``splits``, ``seed``, ``channels``,
    ``labels``, ``class_names``) apply to image folders only (``labels`` is
    refused for a named dataset)."""
    if not os.path.isdir(dataset):
        get_dataset_spec(dataset)
        folder = {"labels": folder["labels"]} if folder.get("labels") is not None else {}
    return sources.load(dataset, data_dir=data_dir, subset=subset, val_size=val_size,
                        **folder)


def prepare(config, data=None, run_dir=None, resuming=False):
    """Validates a config against its data, loading the data and the pretrained
    weights, before the run's model is built.

    A folder's split is read from ``run_dir/splits.json`` when resuming.

    Raises:
        ValueError: for unknown names, an image size too small for the model,
            a batch larger than the training set, labels outside the classes,
            a folder with images that do not decode (without
            `skip_bad_images`), weights that do not fit the model, a teacher
            of other classes or input.
    """
    recipe = resolve_recipe(config.recipe, **config.recipe_overrides)
    overrides = spec_overrides(recipe, config.model, config.model_overrides)
    spec = resolve_spec(config.model, **overrides)
    if getattr(spec, "aux_classifiers", False):
        raise ValueError(
            "kres train fits one-output models; train GoogLeNet's auxiliary classifiers with "
            "model.fit and loss_weights=[1, 0.3, 0.3] (see docs/models.md). "
            "Received: aux_classifiers=True"
        )
    own_size, own_channels = finetune.weights_input(config.weights)
    data = data or _load(config, config.channels or own_channels, run_dir, resuming)
    if data.multi_label:
        _check_multi_label(config)
    image_size, channels = resolve_input(config.model, spec, data,
                                         image_size=config.image_size or own_size,
                                         channels=config.channels or own_channels,
                                         batch_sizes=[recipe.batch_size])
    pretrained = None
    if config.weights:
        pretrained = finetune.load_pretrained(config.weights, config.model,
                                              input_shape=(image_size, image_size, channels),
                                              overrides=overrides)
        overrides = {**overrides, **pretrained.overrides}
    preprocessing = model_preprocessing(data.spec, (image_size, image_size, channels),
                                        recipe.augment)
    if pretrained is not None:
        preprocessing = pretrained.preprocessing(image_size, image_size,
                                                 preprocessing.resize) or preprocessing
    recipe = _flip_rule(recipe, config, data)
    teacher = None if config.teacher is None else distill.load_teacher(
        config.teacher, data.spec.num_classes, (image_size, image_size, channels))
    return Prepared(recipe, spec, overrides, data, image_size, channels,
                    steps_per_epoch=data.sizes["train"] // recipe.batch_size,
                    preprocessing=preprocessing, pretrained=pretrained, teacher=teacher,
                    threshold=config.threshold if data.multi_label else None)


def _check_multi_label(config):
    """What a multi-label run cannot do yet, refused before any work."""
    if config.class_weights:
        checks.fail("class_weights", True, "weigh single-label classes; the labels of "
                                           f"{config.labels} give several classes per image")
    if config.teacher is not None:
        checks.fail("teacher", config.teacher, "distils single-label classifiers; the labels "
                                               f"of {config.labels} give several classes "
                                               f"per image")


def _load(config, channels, run_dir, resuming):
    splits_path = os.path.join(run_dir, "splits.json") if run_dir else None
    return load_data(config.dataset, data_dir=config.data_dir, subset=config.subset,
                     val_size=config.val_size, skip_bad_images=config.skip_bad_images,
                     seed=config.seed or 0, channels=channels, labels=config.labels,
                     splits=ksplits.read_splits(splits_path)
                     if resuming and os.path.isfile(splits_path) else None)


def _flip_rule(recipe, config, data):
    """The recipe with its test-time flip kept only for data trained with flips."""
    augment = recipe.augment or data.spec.augment
    if not recipe.test_flip or augment in FLIPPING:
        return recipe
    if not config.recipe_overrides.get("test_flip"):  # the recipe's: off for this data
        return dataclasses.replace(recipe, test_flip=False)
    raise ValueError(
        f"test_flip averages each test image's predictions with its mirror image's, but "
        f"this run's augmentation ({augment!r}) never shows the network a mirror image; "
        f"train with one of {', '.join(FLIPPING)} or leave test_flip off. "
        f"Received: test_flip=True")


def build(config, p, strategy, precision):
    """The run's model: the network in `precision`, normalising its own pixels
    (`kres.models.inputs.image_input`), with the pretrained weights copied in.

    With a seed, the global random generators are seeded first (the initial
    weights): see `train`.
    """
    import keras

    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        # The model normalises its own pixels: the .keras file alone serves it.
        model = build_model(config.model, classes=p.data.spec.num_classes,
                            input_tensor=image_input(p.preprocessing, p.data.class_names,
                                                     threshold=p.threshold),
                            dtype=precision, **p.overrides,
                            **({"classifier_activation": "sigmoid"} if p.threshold else {}))
        if p.pretrained is not None:  # weights that do not fit fail before any file
            finetune.transfer_weights(p.pretrained.model, model)
            p.pretrained = None  # the copy is all the run needs
    return model
