"""Training recipes: the papers' settings as data, and the compile they make of a model.

A `Recipe` is a named preset (optimizer, schedule, weight decay, epochs,
augmentation, weight averaging, distillation) every field of which can be
overridden (`resolve_recipe`). `compile_model` compiles a model with one: the
optimizer that `kres.training.optimizers` makes of it (Keras's SGD, AdamW,
LAMB or Lion, its schedule, weight decay, clipping and accumulation) and the
label-smoothed cross-entropy, or the distillation loss.
"""

import dataclasses
import json
from dataclasses import dataclass

import keras

from kres import checks
from kres.models.registry import lookup
from kres.preprocessing import AUGMENTATIONS, AUTO_AUGMENTATIONS, MAX_MAGNITUDE
from kres.training.optimizers import OPTIMIZERS, make_optimizer

SCHEDULES = ("step", "cosine", "constant")
# The power of the EMA's decay warmup (timm's ModelEmaV3 with warmup_power=3/4, its value
# for runs of fewer than about 10,000 steps): the decay after t updates is
# min(ema_decay, 1 - (1 + t) ** -3/4).
EMA_WARMUP_POWER = 0.75


@dataclass(frozen=True)
class Recipe:
    """A training recipe. Every field can be overridden (`resolve_recipe`).

    Attributes:
        epochs: passes over the training set.
        batch_size: examples per step (per gradient computation; an update
            takes `accumulation_steps` of them).
        learning_rate: peak learning rate (before `scale_lr`).
        scale_lr: multiply `learning_rate` by ``batch_size *
            accumulation_steps / 256`` (Goyal et al.'s linear scaling rule,
            the ImageNet recipes).
        optimizer: ``"sgd"`` (with `momentum` and `nesterov`), ``"adamw"``,
            ``"lamb"`` or ``"lion"`` (`OPTIMIZERS`; Keras's classes with
            their default betas).
        momentum: SGD momentum.
        nesterov: Nesterov momentum (SGD).
        weight_decay: weight decay: coupled L2 with SGD, the optimizer's own
            decoupled decay with the others (see the module's doc).
        clip_norm: clip the gradients to this global norm (0: no clipping;
            Keras's ``global_clipnorm``).
        accumulation_steps: average the gradients of this many batches per
            update (Keras's ``gradient_accumulation_steps``; 1: none); the
            schedule counts batches, as Keras's optimizer does.
        decay_all: decay batch-norm parameters and biases too (the papers);
            False decays convolution and dense kernels only (Bag of Tricks).
        schedule: ``"step"`` (multiply by `gamma` at each milestone),
            ``"cosine"`` or ``"constant"``.
        milestones: fractions of the run at which the step schedule decays.
        gamma: the step schedule's factor.
        warmup_epochs: linear warmup from 0 (cosine schedule).
        label_smoothing: label smoothing of the cross-entropy.
        augment: training augmentation (`kres.data.pipeline.AUGMENTATIONS`); ``None``
            for the dataset's own (the CIFAR pad-crop-flip on the small sets).
        color_jitter: brightness/contrast/saturation jitter strength for the
            ``"imagenet"`` augmentation (0: off).
        auto_augment: ``"randaugment"`` (Cubuk et al. 2020) or ``"augmix"``
            (Hendrycks et al. 2020) after `augment`'s crop and flip, Keras's
            layers (`kres.data.augment`); ``None``: neither.
        randaugment_ops: RandAugment's N, the operations per image.
        randaugment_magnitude: RandAugment's M, 0 to 10 (timm's rand-m9-n2:
            9 and 2).
        mixup_alpha: mixup's Beta parameter (0: off).
        cutmix_alpha: CutMix's Beta parameter, at most 1 (0: off; Yun et al.'s
            is 1).
        random_erasing: random-erasing probability (0: off).
        zero_init_last: zero-initialise each residual branch's last BN.
        distill_temperature: a run with a teacher (`kres.training.distill`):
            the temperature T softening both distributions.
        distill_weight: a run with a teacher: the weight w of the teacher's
            term (the labels' is 1 - w).
        ema: keep an exponential moving average of the whole model state
            (weights and batch-norm statistics; `kres.training.ema`), which
            validation, the best checkpoint and therefore the test score and
            every export use; the raw weights' validation scores are kept
            beside (``raw_val_*`` in the history).
        ema_decay: the average's decay per update, reached after its warmup
            (`EMA_WARMUP_POWER`; timm's ModelEmaV3).
        ema_warmup: warm the decay up from 0 (else `ema_decay` from the
            first update).
        test_flip: score the test set with each image's and its mirror
            image's predictions averaged (`kres.flip_averaged`; for networks
            trained with flips). The run's results keep the single-view
            score too.
        patience: early-stopping patience in epochs on validation accuracy
            (0: no early stopping).
        frozen_epochs: fine-tuning (a run with ``weights``): the first
            `frozen_epochs` of the `epochs` train the new classifier alone,
            the backbone frozen and its batch norm in inference mode; the
            rest train the network (`unfreeze`) with the schedule (0: no
            frozen phase).
        frozen_learning_rate: the frozen phase's constant learning rate
            (``None``: `learning_rate`).
        unfreeze: the stages trained after the frozen phase, as layer-name
            prefixes (``("conv4", "conv5")`` for a ResNet's last two stages);
            ``()`` for the whole network. A comma-separated string is split.
    """

    epochs: int = 164
    batch_size: int = 128
    learning_rate: float = 0.1
    scale_lr: bool = False
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    clip_norm: float = 0.0
    accumulation_steps: int = 1
    decay_all: bool = True
    schedule: str = "step"
    milestones: tuple = (0.5, 0.75)
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    augment: str | None = None
    color_jitter: float = 0.0
    auto_augment: str | None = None
    randaugment_ops: int = 2
    randaugment_magnitude: float = 9.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    random_erasing: float = 0.0
    zero_init_last: bool = False
    distill_temperature: float = 4.0
    distill_weight: float = 0.5
    ema: bool = False
    ema_decay: float = 0.9998
    ema_warmup: bool = True
    test_flip: bool = False
    patience: int = 0
    frozen_epochs: int = 0
    frozen_learning_rate: float | None = None
    unfreeze: tuple = ()

    def __post_init__(self):
        checks.tuples(self, "milestones", "unfreeze")
        if isinstance(self.unfreeze, str):  # --set-recipe unfreeze=conv4,conv5
            object.__setattr__(self, "unfreeze",
                               tuple(s.strip() for s in self.unfreeze.split(",") if s.strip()))
        checks.positive_int("epochs", self.epochs)
        checks.positive_int("batch_size", self.batch_size)
        checks.number("learning_rate", self.learning_rate, low=0, low_open=True)
        checks.number("momentum", self.momentum, low=0, high=1, high_open=True)
        checks.number("weight_decay", self.weight_decay, low=0)
        checks.choice("optimizer", self.optimizer, OPTIMIZERS)
        checks.number("clip_norm", self.clip_norm, low=0)
        checks.positive_int("accumulation_steps", self.accumulation_steps)
        checks.number("ema_decay", self.ema_decay, low=0, high=1, high_open=True)
        checks.number("distill_temperature", self.distill_temperature, low=0, low_open=True)
        checks.rate("distill_weight", self.distill_weight)
        checks.choice("schedule", self.schedule, SCHEDULES)
        if (not isinstance(self.milestones, tuple)
                or not all(checks.is_number(m) and 0 < m < 1 for m in self.milestones)
                or list(self.milestones) != sorted(self.milestones)):
            checks.fail("milestones", self.milestones,
                        "must be a tuple of increasing fractions of the run, each in (0, 1)")
        checks.number("gamma", self.gamma, low=0, high=1, low_open=True)
        checks.number("warmup_epochs", self.warmup_epochs, low=0)
        checks.rate("label_smoothing", self.label_smoothing)
        if self.augment is not None:
            checks.choice("augment", self.augment, AUGMENTATIONS)
        checks.number("color_jitter", self.color_jitter, low=0, high=1)
        if self.auto_augment is not None:
            checks.choice("auto_augment", self.auto_augment, AUTO_AUGMENTATIONS)
        checks.positive_int("randaugment_ops", self.randaugment_ops)
        checks.number("randaugment_magnitude", self.randaugment_magnitude, low=0,
                      high=MAX_MAGNITUDE)
        checks.number("mixup_alpha", self.mixup_alpha, low=0)
        # Keras's CutMix takes its Beta parameter in [0, 1] (the paper's is 1).
        checks.number("cutmix_alpha", self.cutmix_alpha, low=0, high=1)
        checks.number("random_erasing", self.random_erasing, low=0, high=1)
        for field in ("scale_lr", "nesterov", "decay_all", "zero_init_last",
                      "test_flip", "ema", "ema_warmup"):
            checks.boolean(field, getattr(self, field))
        checks.integer("patience", self.patience, minimum=0)
        checks.integer("frozen_epochs", self.frozen_epochs, minimum=0)
        if self.frozen_epochs >= self.epochs:
            checks.fail("frozen_epochs", self.frozen_epochs,
                        f"must leave at least one of the {self.epochs} epochs to train the "
                        "whole network")
        if self.warmup_epochs >= self.epochs - self.frozen_epochs:
            checks.fail("warmup_epochs", self.warmup_epochs,
                        f"must be shorter than the {self.epochs - self.frozen_epochs} epochs "
                        + ("after the frozen phase" if self.frozen_epochs else
                           "of the run: set more epochs or fewer warmup_epochs"))
        if self.frozen_learning_rate is not None:
            checks.number("frozen_learning_rate", self.frozen_learning_rate, low=0,
                          low_open=True)
        if not isinstance(self.unfreeze, tuple) or not all(
                isinstance(s, str) and s for s in self.unfreeze):
            checks.fail("unfreeze", self.unfreeze,
                        "must be a tuple of layer-name prefixes such as ('conv5',)")

    def frozen_phase(self):
        """The recipe of the frozen phase: `frozen_epochs` at the constant
        `frozen_learning_rate`, no warmup, no early stopping."""
        return dataclasses.replace(
            self, epochs=self.frozen_epochs, frozen_epochs=0, schedule="constant",
            learning_rate=self.frozen_learning_rate or self.learning_rate, warmup_epochs=0.0,
            patience=0)

    def unfrozen_phase(self):
        """The recipe of the epochs after the frozen phase: the schedule over
        ``epochs - frozen_epochs``."""
        return dataclasses.replace(self, epochs=self.epochs - self.frozen_epochs,
                                   frozen_epochs=0)
    def to_json(self):
        """The recipe as a JSON-ready dict."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


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
    # Short runs on small datasets on a CPU (tens of epochs, not hundreds): a linear
    # warmup into a cosine decay to zero, as Smith & Topin's one-cycle policy
    # (arXiv:1708.07120) and Bag of Tricks' warmup + cosine do; Nesterov momentum;
    # label smoothing 0.1 (Szegedy et al. 2016); zero-initialised last BN of each
    # residual branch and no decay on BN and biases (Bag of Tricks); wd 5e-4 as the
    # WRN and ResNeXt CIFAR recipes. Batch 128 and the peak learning rate were
    # chosen by measurement on Fashion-MNIST (docs/results.md).
    "fast-cpu": Recipe(epochs=20, batch_size=128, learning_rate=0.2, nesterov=True,
                       weight_decay=5e-4, decay_all=False, schedule="cosine",
                       warmup_epochs=2, label_smoothing=0.1, zero_init_last=True,
                       test_flip=True),
    # fast-cpu's shape cut to 10 epochs (1 of warmup) with the weight average of the
    # whole model state (timm's ModelEmaV3, torchvision's --model-ema; Polyak &
    # Juditsky 1992): validation, best.keras, early stopping and exports use the
    # average, which stays usable while the raw weights swing at a high learning
    # rate. Batch 128 against 64 (at lr 0.1) measured on Fashion-MNIST
    # (docs/results.md).
    "small-cpu": Recipe(epochs=10, batch_size=128, learning_rate=0.2, nesterov=True,
                        weight_decay=5e-4, decay_all=False, schedule="cosine",
                        warmup_epochs=1, label_smoothing=0.1, zero_init_last=True,
                        test_flip=True, ema=True),
    # fast-cpu's shape stretched to 80 epochs, with random erasing (Zhong et al.
    # 2020: p 0.5, 2% to 40% of the area; on Fashion-MNIST it cut WRN-28-10's
    # error from 4.01% to 3.65%) to hold the longer run off overfitting. No weight
    # average: at the end of a cosine schedule to zero it scored below the raw
    # weights in every small-cpu seed (docs/results.md). 80 epochs of ResNet-20 on
    # Fashion-MNIST fit in two hours on a 2-core CPU.
    "long-cpu": Recipe(epochs=80, batch_size=128, learning_rate=0.2, nesterov=True,
                       weight_decay=5e-4, decay_all=False, schedule="cosine",
                       warmup_epochs=2, label_smoothing=0.1, zero_init_last=True,
                       random_erasing=0.5, test_flip=True),
    # Fine-tuning pretrained weights (Keras's transfer-learning guide; Kornblith
    # et al. 2019, "Do Better ImageNet Models Transfer Better?"): the new classifier
    # alone first, the backbone frozen with its batch norm in inference mode, then
    # the whole network at a tenth of that learning rate, cosine to zero; label
    # smoothing. AdamW (keras-hub's tasks compile with it by default) with
    # decoupled decay 0.05 on kernels only: on a folder of images it beat SGD at
    # every rate tried, best at 3e-3 (docs/results.md).
    "transfer": Recipe(epochs=10, batch_size=64, optimizer="adamw", learning_rate=3e-3,
                       frozen_epochs=2, frozen_learning_rate=3e-2, schedule="cosine",
                       weight_decay=0.05, decay_all=False, label_smoothing=0.1),
}


def resolve_recipe(name, **overrides):
    """A named recipe with some fields replaced, validated.

    Raises:
        ValueError: for an unknown recipe or field, or an invalid value.

    Example:

    >>> from kres.training.recipes import resolve_recipe
    >>> resolve_recipe("wrn-cifar", epochs=30).milestones
    (0.3, 0.6, 0.8)
    """
    if name not in RECIPES:
        raise ValueError(f"Unknown recipe.{checks.did_you_mean(name, RECIPES, cutoff=0.4)} "
                         f"Known: {', '.join(RECIPES)}. Received: recipe={name!r}")
    fields = {f.name for f in dataclasses.fields(Recipe)}
    for key in overrides:
        if key not in fields:
            raise ValueError(f"Unknown recipe field.{checks.did_you_mean(key, fields, 0.6)} "
                             f"Fields: {', '.join(sorted(fields))}. "
                             f"Received: {key}={overrides[key]!r}")
    return dataclasses.replace(RECIPES[name], **overrides)


def spec_overrides(recipe, model, overrides=()):
    """The spec fields a run of `recipe` changes in `model`: `overrides`, plus the
    recipe's zero-init (for the families that have a residual branch).

    Example:

    >>> from kres.training.recipes import RECIPES, spec_overrides
    >>> spec_overrides(RECIPES["fast-cpu"], "cifar_resnet20")
    {'zero_init_last': True}
    >>> spec_overrides(RECIPES["fast-cpu"], "vgg11")
    {}
    """
    overrides = dict(overrides)
    if recipe.zero_init_last and hasattr(lookup(model).spec, "zero_init_last"):
        overrides.setdefault("zero_init_last", True)
    return overrides


def monitored(threshold=None):
    """The validation metric a run keeps its best model by: ``"accuracy"``, or a
    multi-label run's (`threshold` given) ``"pr_auc"``."""
    return "accuracy" if threshold is None else "pr_auc"


def metrics(num_classes, threshold=None):
    """Accuracy, and top-5 accuracy beyond 10 classes (one-hot labels); with a
    `threshold` (multi-label, multi-hot labels): the area under each class's
    precision-recall curve, averaged (``pr_auc``, Keras's estimate of the mean
    average precision), and the micro-averaged F1 at `threshold` (``f1``)."""
    if threshold is not None:
        return [keras.metrics.AUC(curve="PR", multi_label=True, num_labels=num_classes,
                                  name="pr_auc"),
                keras.metrics.F1Score(average="micro", threshold=threshold, name="f1")]
    metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    if num_classes > 10:
        metrics.append(keras.metrics.TopKCategoricalAccuracy(5, name="top5"))
    return metrics


def compile_model(model, recipe, steps_per_epoch, num_classes, jit_compile="auto",
                  distilled=False, learning_rate=None, threshold=None):
    """Compiles `model` with a recipe: its optimizer (`make_optimizer`: schedule,
    weight decay, clipping, accumulation), cross-entropy with label smoothing,
    accuracy (and top-5 beyond 10 classes). `distilled`: the student of a
    teacher, whose training labels carry the teacher's probabilities
    (`kres.training.distill`): the distillation loss with the recipe's
    temperature and weight, and metrics on the labels alone. `learning_rate`: a
    schedule in place of the recipe's (the range test's ramp). `threshold`: a
    multi-label model (sigmoid outputs, multi-hot labels): binary cross-entropy
    summed over the classes (`kres.losses.SummedBinaryCrossentropy`, at the
    softmax cross-entropy's scale the recipes are set for) with the label
    smoothing, and `metrics` at that threshold."""
    optimizer = make_optimizer(recipe, model, steps_per_epoch, learning_rate)
    if distilled:
        from kres.training import distill

        loss = distill.DistillationLoss(num_classes, recipe.distill_temperature,
                                        recipe.distill_weight, recipe.label_smoothing)
        found = distill.metrics(num_classes)
    elif threshold is not None:
        from kres.losses import SummedBinaryCrossentropy

        loss = SummedBinaryCrossentropy(label_smoothing=recipe.label_smoothing)
        found = metrics(num_classes, threshold)
    else:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing)
        found = metrics(num_classes)
    model.compile(optimizer=optimizer, loss=loss, metrics=found, jit_compile=jit_compile)
    build_state(model, num_classes)


def build_state(model, num_classes):
    """Creates a compiled model's optimizer and metric variables now, eagerly.

    Outside a distribution strategy's scope Keras creates them while it
    traces the first training (or evaluation) step, and TensorFlow traces a
    function again whenever its first trace created variables: every fit
    paid for two traces of its training step. Built here, the step is traced
    once (measured in ``docs/benchmarks.md``). Under a strategy Keras builds
    them itself, before tracing.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if tf.distribute.has_strategy():
            return
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    y = keras.ops.zeros((1, num_classes))
    model.compute_metrics(None, y, y)
    model.reset_metrics()

