"""Search spaces over residual networks, and the keras-tuner HyperModel that walks them.

A `Space` names a registered residual model and the choices of its spec
fields (depths, cardinality, width per group, widen factor);
`ResidualHyperModel.build(hp)` maps keras-tuner hyperparameters (named as the
spec and recipe fields) onto a network of the space and builds it through
`kres.build_model`; `ResidualHyperModel.fit` trains it with the same
pipelines, recipe and callbacks as `kres train` (`kres.training.fit`). The
hypermodel also knows each point's cost, the compute budget and the ResNeXt
paper's equal-complexity widths.
"""

import dataclasses
import datetime
import json
import os
import time
from dataclasses import dataclass

import keras
import keras_tuner as kt

from kres import checks
from kres import rundir as runs
from kres.models import counting as stats
from kres.models.inputs import image_input
from kres.models.registry import build_model, resolve_spec
from kres.training.fit import fit, pipelines
from kres.training.preparation import model_preprocessing
from kres.training.recipes import compile_model, resolve_recipe


@dataclass(frozen=True)
class Space:
    """A search space over one residual family.

    Attributes:
        model: the registry model whose spec the trials change.
        depths: named stage depths, e.g. ``{"29": (3, 3, 3)}``; the choice is
            the hyperparameter ``depths``.
        cardinality: choices of ``cardinality`` (empty: not searched).
        width_per_group: choices of ``width_per_group``, active only when
            cardinality > 1 (empty: not searched).
        widen_factor: choices of ``widen_factor`` (empty: not searched).
        fixed: spec fields every network of the space shares, changed from
            the model's (a search's ``model_overrides``: e.g. ``{"widths":
            (16, 32, 64), "stem_width": 16}`` for ResNeXts at the CIFAR
            ResNets' width).
    """

    model: str
    depths: dict
    cardinality: tuple = ()
    width_per_group: tuple = ()
    widen_factor: tuple = ()
    fixed: dict = dataclasses.field(default_factory=dict)

    def searched(self):
        """The spec fields a search of the space sets (the width per group with
        the cardinality: searched, or derived under equal complexity)."""
        return ("depths", *(("widen_factor",) if self.widen_factor else ()),
                *(("cardinality", "width_per_group") if self.cardinality else ()))

    def __post_init__(self):
        checks.tuples(self, "cardinality", "width_per_group", "widen_factor")
        checks.string("model", self.model)
        if (not isinstance(self.depths, dict) or not self.depths
                or not all(isinstance(k, str) and isinstance(v, tuple) for k, v in
                           self.depths.items())):
            checks.fail("depths", self.depths,
                        "must be a non-empty dict of depth names to blocks per stage")
        for field in ("cardinality", "width_per_group", "widen_factor"):
            value = getattr(self, field)
            if value:
                checks.int_tuple(field, value)


SPACES = {
    # He et al. 2015: 6n+2 layers (ResNet-8 ... ResNet-56).
    "cifar-resnet": Space("cifar_resnet20", {str(6 * n + 2): (n,) * 3 for n in (1, 2, 3, 5, 7, 9)}),
    # Xie et al. 2017 on CIFAR: ResNeXt-11/20/29 (9n+2), cardinality x width.
    "resnext-cifar": Space("resnext29_32x4d", {str(9 * n + 2): (n,) * 3 for n in (1, 2, 3)},
                           cardinality=(1, 2, 4, 8, 16, 32), width_per_group=(4, 8, 16, 32, 64)),
    # Xie et al. 2017, ImageNet: ResNeXt-26/50/101.
    "resnext-imagenet": Space("resnext50_32x4d",
                              {"26": (2, 2, 2, 2), "50": (3, 4, 6, 3), "101": (3, 4, 23, 3)},
                              cardinality=(1, 2, 4, 8, 16, 32, 64),
                              width_per_group=(4, 8, 14, 24, 40, 64)),
    # Zagoruyko & Komodakis 2016: WRN-d-k, (d - 4) / 6 blocks per stage.
    "wrn-cifar": Space("wrn16_4", {str(6 * n + 4): (n,) * 3 for n in (2, 3, 4, 6)},
                       widen_factor=(1, 2, 4, 8, 10)),
}


def get_space(config):
    """The `Space` of a search, restricted to the config's choices.

    Raises:
        ValueError: for an unknown space, an empty choice, a choice outside
            the space, or a space none of whose points is a valid network.
    """
    if config.space not in SPACES:
        raise ValueError(f"Unknown search space.{checks.did_you_mean(config.space, SPACES, 0.4)} "
                         f"Known: {', '.join(SPACES)}. Received: space={config.space!r}")
    space = SPACES[config.space]
    changes = {}
    if config.depths is not None:
        unknown = [d for d in config.depths if str(d) not in space.depths]
        if unknown or not config.depths:
            raise ValueError(f"depths must be a non-empty selection of {sorted(space.depths)} "
                             f"for space {config.space!r}. Received: depths={config.depths!r}")
        changes["depths"] = {str(d): space.depths[str(d)] for d in config.depths}
    for field, name in (("cardinality", "cardinalities"), ("width_per_group", "widths_per_group"),
                        ("widen_factor", "widen_factors")):
        chosen = getattr(config, name)
        if chosen is None:
            continue
        if not getattr(space, field):
            raise ValueError(f"Space {config.space!r} does not search {field}. "
                             f"Received: {name}={chosen!r}")
        if not chosen or not all(checks.is_int(v) and v >= 1 for v in chosen):
            raise ValueError(f"{name} must be a non-empty list of positive integers. "
                             f"Received: {name}={chosen!r}")
        changes[field] = tuple(chosen)
    space = dataclasses.replace(space, **changes)
    fixed = {field: checks.as_tuple(value) for field, value in config.model_overrides.items()}
    clash = sorted(set(fixed) & set(space.searched()))
    if clash:
        raise ValueError(
            f"model_overrides fixes {', '.join(clash)}, which the search chooses; restrict "
            f"the choices instead (depths, cardinalities, widths_per_group, widen_factors). "
            f"Received: model_overrides={fixed!r}")
    if fixed:
        resolve_spec(space.model, **fixed)  # unknown fields and bad values, named
        space = dataclasses.replace(space, fixed=fixed)
    # Cardinality 1 is the plain bottleneck, width per group 64 (as in trials).
    plain = {"width_per_group": 64} if space.width_per_group else {}
    if not any(valid(space, {**plain, **v, "depths": space.depths[v["depths"]]})
               for v in architectures(space)):
        raise ValueError(
            f"No point of the search space is a valid network (for example, every width per "
            f"group is too small for the narrowest stage). Received: space={config.space!r}, "
            f"cardinality={space.cardinality}, width_per_group={space.width_per_group}"
        )
    return space


def architectures(space, equal_complexity=False):
    """Every network of the space as keras-tuner hyperparameter values.

    The names and order are those `ResidualHyperModel.overrides` declares:
    ``depths`` (a depth's name), ``widen_factor``, ``cardinality``, and
    ``width_per_group`` only where it is active (cardinality above 1, and not
    under `equal_complexity`, which derives it).
    """
    values = [{"depths": name} for name in space.depths]
    if space.widen_factor:
        values = [{**v, "widen_factor": k} for v in values for k in space.widen_factor]
    if space.cardinality:
        values = [{**v, "cardinality": c} for v in values for c in space.cardinality]
        if space.width_per_group and not equal_complexity:
            values = [{**v, "width_per_group": w} if v["cardinality"] > 1 else v
                      for v in values
                      for w in (space.width_per_group if v["cardinality"] > 1 else (None,))]
    return values


def valid(space, overrides):
    """Whether these spec overrides (and the space's fixed fields) make a network."""
    try:
        resolve_spec(space.model, **{**space.fixed, **overrides})
        return True
    except ValueError:
        return False


class ResidualHyperModel(kt.HyperModel):
    """Maps hyperparameters onto a residual spec and trains it the kres way.

    Hyperparameter names are spec field names (``depths``, ``cardinality``,
    ``width_per_group``, ``widen_factor``) and recipe field names
    (``learning_rate``, ``weight_decay``, ``label_smoothing``,
    ``batch_size``).

    Args:
        config: a `SearchConfig`.
        space: its `Space` (see `get_space`).
        data: the loaded `kres.data.sources.Data`.
        image_size, channels: the input.
        out_dir: the search directory (trial runs go under its project).
        precision: the dtype policy the trials' networks are built in.
    """

    def __init__(self, config, space, data, image_size, channels, out_dir, precision="float32"):
        super().__init__(name="kres")
        self.config, self.space, self.data = config, space, data
        self.image_size, self.channels, self.out_dir = image_size, channels, out_dir
        self.precision = precision
        self.costs = {}
        self.discovering = False
        self.execution = 0  # which of a trial's executions (seeds) is built and fitted

    def begin_trial(self):
        """A trial begins: its first execution is next (keras-tuner then builds and
        fits each execution in turn; `fit` counts them)."""
        self.execution = 0

    def seed(self):
        """The seed of the current execution: the search's, plus the execution's index."""
        return None if self.config.seed is None else self.config.seed + self.execution

    def overrides(self, hp):
        """Declares the space's hyperparameters on `hp`; returns the spec overrides."""
        depth = hp.Choice("depths", list(self.space.depths))
        overrides = {**self.space.fixed, "depths": self.space.depths[depth]}
        if self.space.widen_factor:
            overrides["widen_factor"] = hp.Choice("widen_factor", list(self.space.widen_factor))
        if self.space.cardinality:
            cardinality = hp.Choice("cardinality", list(self.space.cardinality))
            overrides["cardinality"] = cardinality
            if self.config.equal_complexity:
                overrides["width_per_group"] = self.equal_complexity_width(cardinality)
            elif self.space.width_per_group:
                # Active only for grouped convolutions; keras-tuner returns None
                # when the condition does not hold.
                with hp.conditional_scope("cardinality", [c for c in self.space.cardinality
                                                          if c > 1]):
                    width = hp.Choice("width_per_group", list(self.space.width_per_group))
                overrides["width_per_group"] = width if cardinality > 1 else 64
        return overrides

    def recipe(self, hp):
        """The recipe of a trial: the config's, with searched training knobs, its
        schedule scaled to the epochs the trial gets.

        A trial gets `max_epochs`, or in Hyperband the epochs of its rung
        (``tuner/epochs``). The schedule spans those epochs: the warmup keeps
        its share of the recipe's run (``warmup_epochs / epochs``) and the step
        schedule's milestones are fractions of the run already, so a trial's
        score is that of a finished schedule, not of one cut off at its peak
        learning rate. A Hyperband trial that continues a lower rung's network
        continues its schedule too (`fit` starts the optimizer's step count at
        ``tuner/initial_epoch``): no second warmup.
        """
        base = resolve_recipe(self.config.recipe, **self.config.recipe_overrides)
        epochs = int(hp.values.get("tuner/epochs", self.config.max_epochs))
        fields = dict(self.config.recipe_overrides, epochs=epochs,
                      warmup_epochs=base.warmup_epochs * epochs / base.epochs)
        if self.config.tune_training:
            fields["learning_rate"] = hp.Float("learning_rate", 0.01, 0.4, sampling="log")
            fields["weight_decay"] = hp.Float("weight_decay", 1e-5, 1e-3, sampling="log")
            fields["label_smoothing"] = hp.Choice("label_smoothing", [0.0, 0.1])
        if self.config.batch_sizes:
            fields["batch_size"] = hp.Choice("batch_size", list(self.config.batch_sizes))
        return resolve_recipe(self.config.recipe, **fields)

    def _build_model(self, overrides, dtype=None):
        """A trial's network, normalising its own pixels (`kres.models.inputs.image_input`)."""
        return build_model(self.space.model, classes=self.data.spec.num_classes,
                           input_tensor=image_input(self.preprocessing, self.data.class_names),
                           dtype=dtype, **overrides)

    @property
    def preprocessing(self):
        """The trials' `kres.preprocessing.Preprocessing`: the dataset's statistics, the
        evaluation resize of the config's augmentation
        (`kres.training.preparation.model_preprocessing`)."""
        augment = resolve_recipe(self.config.recipe, **self.config.recipe_overrides).augment
        return model_preprocessing(self.data.spec,
                                   (self.image_size, self.image_size, self.channels), augment)

    def cost(self, overrides):
        """(MACs, parameters) of the network with these spec overrides (cached)."""
        key = tuple(sorted(overrides.items()))
        if key not in self.costs:
            model = self._build_model(overrides)
            self.costs[key] = stats.count_macs(model), stats.count_params(model)
            del model
        return self.costs[key]

    def equal_complexity_width(self, cardinality):
        """The width per group of the ResNeXt paper's equal-complexity rule.

        Xie et al. 2017 (Sec. 3.3 and Table 2) keep the parameters of the
        template block, the first stage's bottleneck (a 1x1 convolution from
        the stage's output width, the grouped 3x3, a 1x1 back: ``C * (w_out *
        g + 9 * g * g + g * w_out)`` for ``g`` channels per group), as close as
        possible to cardinality 1 at width 64 (69,632 parameters at 256
        channels): that gives the paper's 2x40d, 4x24d, 8x14d and 32x4d. Every
        later stage scales its widths alike, so the depth does not enter.

        Raises:
            keras_tuner.errors.FailedTrialError: if no width makes a valid
                network of this cardinality.
        """
        spec = resolve_spec(self.space.model, **self.space.fixed)
        planes = spec.planes[0]
        out = planes * 4

        def template(c, width):
            g = int(planes * width / 64)
            return c * (2 * out * g + 9 * g * g)

        target = template(1, 64)
        widths = [w for w in range(1, 65) if int(planes * w / 64) >= 1
                  and valid(self.space, {"depths": next(iter(self.space.depths.values())),
                                         "cardinality": cardinality, "width_per_group": w})]
        if not widths:
            raise kt.errors.FailedTrialError(
                f"Cardinality {cardinality} does not make a valid network in this space")
        # Widths that give the same channels per group tie: the smallest names them.
        return min(widths, key=lambda w: (abs(template(cardinality, w) - target), w))

    def build(self, hp):
        if self.discovering:
            # keras-tuner calls build while the tuner is created, only to discover the
            # hyperparameters (once per condition, at default values that may be
            # invalid or over budget): declare them and skip the network.
            try:
                self.overrides(hp)
                self.recipe(hp)
            except kt.errors.FailedTrialError:
                pass
            return keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        overrides = self.overrides(hp)
        recipe = self.recipe(hp)
        why_not = self.why_not(overrides)
        if why_not:
            raise kt.errors.FailedTrialError(why_not)
        if self.seed() is not None:
            keras.utils.set_random_seed(self.seed())  # the initial weights
        model = self._build_model(overrides, dtype=self.precision)
        steps = self.data.sizes["train"] // recipe.batch_size
        compile_model(model, recipe, steps, self.data.spec.num_classes)
        return model

    def why_not(self, overrides):
        """Why the network of these spec overrides cannot be a trial, or ``None``."""
        try:
            resolve_spec(self.space.model, **overrides)
        except ValueError as error:
            return f"Invalid point of the space: {error}"
        return over_budget(*self.cost(overrides), self.config)

    def fit(self, hp, model, *args, trial_id=None, callbacks=(), epochs=None, initial_epoch=0,
            **kwargs):
        """Trains a trial's network with `kres.training.fit.fit` in the trial's run directory.

        `trial_id` comes from `kres.tuning`'s tuners, and `execution` (which
        of the trial's seeds this is) from the hypermodel's attribute, which
        moves to the next execution when the fit ends.
        """
        try:
            return self._fit_execution(hp, model, trial_id, callbacks, epochs, initial_epoch,
                                       verbose=kwargs.get("verbose", 0))
        finally:
            self.execution += 1

    def _fit_execution(self, hp, model, trial_id, callbacks, epochs, initial_epoch, verbose):
        recipe = self.recipe(hp)
        overrides = self.overrides(hp)
        macs, params = self.cost(overrides)
        train_from, val_ds = pipelines(self.data, recipe, self.image_size, self.channels,
                                     seed=self.seed(), preprocessing=self.preprocessing)
        if initial_epoch:
            # A Hyperband continuation: the schedule goes on from the lower rung's end.
            steps = self.data.sizes["train"] // recipe.batch_size
            model.optimizer.iterations.assign(initial_epoch * steps)
        trial_id = trial_id or datetime.datetime.now().strftime("%H%M%S%f")
        run_dir = trial_run_dir(self.out_dir, trial_id, self.execution)
        os.makedirs(run_dir, exist_ok=True)
        runs.write_model_description(
            run_dir, model=self.space.model,
            spec=resolve_spec(self.space.model, **overrides),
            preprocessing=self.preprocessing,
            class_names=self.data.class_names, dataset=self.data.name)
        start = time.perf_counter()
        # A fresh run every time: a trial interrupted mid-way is retried from scratch.
        history = fit(model, run_dir, train_from, val_ds, recipe=recipe,
                      train_examples=self.data.sizes["train"], epochs=epochs,
                      initial_epoch=initial_epoch, callbacks=list(callbacks),
                      verbose=verbose)
        runs.write_json(os.path.join(run_dir, "trial.json"), json.loads(json.dumps({
            "overrides": overrides, "macs": macs, "params": params, "trial_id": trial_id,
            "execution": self.execution, "seed": self.seed(),
            "hyperparameters": dict(hp.values), "seconds": time.perf_counter() - start,
            "epochs": len(history.history.get("loss", [])),
            "best_val_accuracy": max(history.history.get("val_accuracy", [0.0]))},
            default=list)))
        return history


def trial_run_dir(out_dir, trial_id, execution=0):
    """The kres run directory of one trial (``run``; ``run-2`` for its third seed)."""
    return os.path.join(out_dir, "project", f"trial_{trial_id}",
                        "run" if not execution else f"run-{execution}")


def over_budget(macs, params, config):
    """Why a network breaks the search's budget, or ``None``."""
    if config.budget_mmacs is not None and macs > config.budget_mmacs * 1e6:
        return (f"Over budget: {macs / 1e6:.1f} MMACs > budget_mmacs={config.budget_mmacs}")
    if config.budget_mparams is not None and params > config.budget_mparams * 1e6:
        return (f"Over budget: {params / 1e6:.2f} M parameters > "
                f"budget_mparams={config.budget_mparams}")
    return None
