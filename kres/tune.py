"""Hyperparameter search over depth and cardinality, with keras-tuner as the engine.

`ResidualHyperModel.build(hp)` only maps hyperparameters onto spec fields of a
registered residual network (their names are the spec field names) and
builds it through `kres.build_model`; each trial trains through
`kres.train.fit` with the same pipelines, recipe and callbacks as `kres
train`. `search` runs a keras-tuner tuner (random, Hyperband, Bayesian
optimisation or grid), resumable and distributable (keras-tuner's chief and
workers), and writes a report: a table of every trial (CSV and Markdown),
plots of accuracy against depth, cardinality and MACs, and the best model,
ready for `kres export`.

    runs/tune-<space>-<dataset>-<time>/
        search.json     the search's settings (resume checks against them)
        project/        keras-tuner's oracle and trials; trial_<id>/run/ holds
                        each trial's kres run (history, best.keras, backup/)
        trials.csv  trials.md  accuracy.png  best.keras  best.json
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
import keras_tuner as kt
import tensorflow as tf

import kres
from kres import data as kdata
from kres import train as ktrain
from kres.errors import did_you_mean
from kres.registry import resolve_spec

TUNERS = ("random", "hyperband", "bayesian", "grid")


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
    """

    model: str
    depths: dict
    cardinality: tuple = ()
    width_per_group: tuple = ()
    widen_factor: tuple = ()


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


@dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a search; saved as ``search.json``.

    Attributes:
        space: a name of `SPACES`.
        dataset: a dataset name or image folder.
        tuner: one of `TUNERS`.
        recipe: the training recipe of every trial.
        recipe_overrides: recipe fields to change for every trial.
        max_epochs: epochs per trial (Hyperband: the most any trial gets).
        max_trials: trials to run (ignored by Hyperband, which plans its own).
        depths, cardinalities, widths_per_group, widen_factors: restrict
            the space's choices (``None``: all of the space's).
        tune_training: also search learning rate (log scale), weight decay
            (log scale) and label smoothing.
        batch_sizes: also search the batch size among these (``None``: no).
        budget_mmacs: networks over this many million multiply-accumulates
            are not trained (random and Bayesian search draw another point;
            grid search and Hyperband fail the trial at once).
        budget_mparams: likewise for millions of parameters.
        equal_complexity: choose `width_per_group` for each depth and
            cardinality so that all have about the MACs of cardinality 1 at
            width 64 (the ResNeXt paper's comparison); `width_per_group` is
            then not searched.
        subset, val_size, image_size, channels, seed, data_dir: as in
            `kres.train.TrainConfig`.
        objective: the metric to maximise.
    """

    space: str
    dataset: str
    tuner: str = "random"
    recipe: str = "he2015-cifar"
    recipe_overrides: dict = dataclasses.field(default_factory=dict)
    max_epochs: int = 10
    max_trials: int = 10
    depths: tuple | None = None
    cardinalities: tuple | None = None
    widths_per_group: tuple | None = None
    widen_factors: tuple | None = None
    tune_training: bool = False
    batch_sizes: tuple | None = None
    budget_mmacs: float | None = None
    budget_mparams: float | None = None
    equal_complexity: bool = False
    subset: int | None = None
    val_size: int | None = None
    image_size: int | None = None
    channels: int | None = None
    seed: int | None = 0
    data_dir: str | None = None
    objective: str = "val_accuracy"

    def to_json(self):
        """The config as a JSON-ready dict."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def get_space(config):
    """The `Space` of a search, restricted to the config's choices.

    Raises:
        ValueError: for an unknown space, an empty choice, a choice outside
            the space, or a space none of whose points is a valid network.
    """
    if config.space not in SPACES:
        raise ValueError(f"Unknown search space.{did_you_mean(config.space, SPACES, 0.4)} "
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
        if not chosen or not all(isinstance(v, int) and v >= 1 for v in chosen):
            raise ValueError(f"{name} must be a non-empty list of positive integers. "
                             f"Received: {name}={chosen!r}")
        changes[field] = tuple(chosen)
    space = dataclasses.replace(space, **changes)
    if not any(_valid(space, point) for point in _points(space)):
        raise ValueError(
            f"No point of the search space is a valid network (for example, every width per "
            f"group is too small for the narrowest stage). Received: space={config.space!r}, "
            f"cardinality={space.cardinality}, width_per_group={space.width_per_group}"
        )
    return space


def _points(space):
    """Every combination of the space's choices (spec overrides)."""
    points = [{"depths": d} for d in space.depths.values()]
    for field in ("widen_factor", "cardinality"):
        choices = getattr(space, field)
        if choices:
            points = [{**p, field: v} for p in points for v in choices]
    if space.width_per_group:
        # Cardinality 1 is the plain bottleneck, width per group 64 (as in trials).
        points = [{**p, "width_per_group": w}
                  for p in points
                  for w in (space.width_per_group if p.get("cardinality", 1) > 1 else (64,))]
    return points


def _valid(space, overrides):
    try:
        resolve_spec(space.model, **overrides)
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
        data: the loaded `kres.data.Data`.
        image_size, channels: the input.
        out_dir: the search directory (trial runs go under its project).
    """

    def __init__(self, config, space, data, image_size, channels, out_dir):
        super().__init__(name="kres")
        self.config, self.space, self.data = config, space, data
        self.image_size, self.channels, self.out_dir = image_size, channels, out_dir
        self.costs = {}
        self.discovering = False

    def overrides(self, hp):
        """Declares the space's hyperparameters on `hp`; returns the spec overrides."""
        depth = hp.Choice("depths", list(self.space.depths))
        overrides = {"depths": self.space.depths[depth]}
        if self.space.widen_factor:
            overrides["widen_factor"] = hp.Choice("widen_factor", list(self.space.widen_factor))
        if self.space.cardinality:
            cardinality = hp.Choice("cardinality", list(self.space.cardinality))
            overrides["cardinality"] = cardinality
            if self.config.equal_complexity:
                overrides["width_per_group"] = self.equal_complexity_width(
                    overrides["depths"], cardinality)
            elif self.space.width_per_group:
                # Active only for grouped convolutions; keras-tuner returns None
                # when the condition does not hold.
                with hp.conditional_scope("cardinality", [c for c in self.space.cardinality
                                                          if c > 1]):
                    width = hp.Choice("width_per_group", list(self.space.width_per_group))
                overrides["width_per_group"] = width if cardinality > 1 else 64
        return overrides

    def recipe(self, hp):
        """The recipe of a trial: the config's, with searched training knobs."""
        fields = dict(self.config.recipe_overrides, epochs=self.config.max_epochs)
        if self.config.tune_training:
            fields["learning_rate"] = hp.Float("learning_rate", 0.01, 0.4, sampling="log")
            fields["weight_decay"] = hp.Float("weight_decay", 1e-5, 1e-3, sampling="log")
            fields["label_smoothing"] = hp.Choice("label_smoothing", [0.0, 0.1])
        if self.config.batch_sizes:
            fields["batch_size"] = hp.Choice("batch_size", list(self.config.batch_sizes))
        return ktrain.resolve_recipe(self.config.recipe, **fields)

    def _build_model(self, overrides):
        return kres.build_model(self.space.model, classes=self.data.spec.num_classes,
                                input_shape=(self.image_size, self.image_size, self.channels),
                                **overrides)

    def cost(self, overrides):
        """(MACs, parameters) of the network with these spec overrides (cached)."""
        key = tuple(sorted(overrides.items()))
        if key not in self.costs:
            model = self._build_model(overrides)
            self.costs[key] = kres.count_macs(model), kres.count_params(model)
            del model
        return self.costs[key]

    def equal_complexity_width(self, depths, cardinality):
        """The width per group whose MACs are closest to cardinality 1 at width 64.

        Every integer width from 1 to 64 is a candidate, not only the searched
        ones (the ResNeXt paper's 2x40d, 4x24d, 8x14d, 32x4d). MACs grow with
        the width, so a bisection finds the two widths around the target.
        """
        target, _ = self.cost({"depths": depths, "cardinality": 1, "width_per_group": 64})

        def point(width):
            return {"depths": depths, "cardinality": cardinality, "width_per_group": width}

        if not _valid(self.space, point(1)):
            raise kt.errors.FailedTrialError(
                f"Cardinality {cardinality} does not make a valid network at depths {depths}")
        low, high = 1, 64  # the smallest width whose MACs reach the target lies in [low, high]
        while low < high:
            middle = (low + high) // 2
            if self.cost(point(middle))[0] < target:
                low = middle + 1
            else:
                high = middle
        return min({max(low - 1, 1), low},
                   key=lambda width: abs(math.log(self.cost(point(width))[0] / target)))

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
        macs, params = self.cost(overrides)
        model = self._build_model(overrides)
        steps = self.data.sizes["train"] // recipe.batch_size
        ktrain.compile_model(model, recipe, steps, self.data.spec.num_classes)
        model._kres_trial = {"overrides": overrides, "macs": macs, "params": params}
        return model

    def why_not(self, overrides):
        """Why the network of these spec overrides cannot be a trial, or ``None``."""
        try:
            resolve_spec(self.space.model, **overrides)
        except ValueError as error:
            return f"Invalid point of the space: {error}"
        return over_budget(*self.cost(overrides), self.config)

    def fit(self, hp, model, *args, callbacks=(), epochs=None, initial_epoch=0, **kwargs):
        recipe = self.recipe(hp)
        train_ds, val_ds = ktrain.pipelines(self.data, recipe, self.image_size, self.channels,
                                            seed=self.config.seed)
        trial_id = _trial_id(callbacks)
        run_dir = trial_run_dir(self.out_dir, trial_id)
        start = time.perf_counter()
        # A fresh run every time: a trial interrupted mid-way is retried from scratch.
        history = ktrain.fit(model, run_dir, train_ds, val_ds, recipe=recipe,
                             train_examples=self.data.sizes["train"], epochs=epochs,
                             initial_epoch=initial_epoch, callbacks=list(callbacks),
                             verbose=kwargs.get("verbose", 0))
        info = {**getattr(model, "_kres_trial", {}), "trial_id": trial_id,
                "hyperparameters": dict(hp.values), "seconds": time.perf_counter() - start,
                "epochs": len(history.history.get("loss", [])),
                "best_val_accuracy": max(history.history.get("val_accuracy", [0.0]))}
        with open(os.path.join(run_dir, "trial.json"), "w") as f:
            json.dump(info, f, indent=2, default=list)
        return history


def trial_run_dir(out_dir, trial_id):
    """The kres run directory of one trial."""
    return os.path.join(out_dir, "project", f"trial_{trial_id}", "run")


def _trial_id(callbacks):
    for callback in callbacks:
        trial = getattr(callback, "trial", None)
        if trial is not None:
            return trial.trial_id
    return datetime.datetime.now().strftime("%H%M%S%f")


def over_budget(macs, params, config):
    """Why a network breaks the search's budget, or ``None``."""
    if config.budget_mmacs is not None and macs > config.budget_mmacs * 1e6:
        return (f"Over budget: {macs / 1e6:.1f} MMACs > budget_mmacs={config.budget_mmacs}")
    if config.budget_mparams is not None and params > config.budget_mparams * 1e6:
        return (f"Over budget: {params / 1e6:.2f} M parameters > "
                f"budget_mparams={config.budget_mparams}")
    return None


def is_worker():
    """Whether this process is a worker of a distributed search."""
    return ("KERASTUNER_ORACLE_IP" in os.environ
            and os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief")


def _make_tuner(config, hypermodel, project_dir, resume, strategy):
    # keras-tuner's overwrite deletes the project in whichever process asks:
    # only the chief (or a lone process) may start the project afresh.
    overwrite = not resume and not is_worker()
    common = dict(objective=kt.Objective(config.objective, "max"), directory=project_dir,
                  project_name="project", overwrite=overwrite, seed=config.seed,
                  distribution_strategy=strategy,
                  # Over-budget points fail at once; they must not end the search.
                  max_consecutive_failed_trials=max(3, config.max_trials * 3))
    tuners = {"hyperband": lambda: kt.Hyperband(hypermodel, max_epochs=config.max_epochs,
                                                factor=3, **common),
              "bayesian": lambda: kt.BayesianOptimization(hypermodel,
                                                          max_trials=config.max_trials, **common),
              "grid": lambda: kt.GridSearch(hypermodel, max_trials=config.max_trials, **common),
              "random": lambda: kt.RandomSearch(hypermodel, max_trials=config.max_trials,
                                                **common)}
    hypermodel.discovering = True
    try:
        tuner = tuners[config.tuner]()
    finally:
        hypermodel.discovering = False
    # A worker's oracle is a client of the chief's, which does the drawing.
    if config.tuner in ("random", "bayesian") and isinstance(tuner.oracle, kt.Oracle):
        _draw_again_when_untrainable(tuner.oracle, hypermodel)
    return tuner


def _draw_again_when_untrainable(oracle, hypermodel, attempts=200):
    """Makes a sampling oracle draw again instead of proposing a point that cannot train.

    Invalid or over-budget points would otherwise become failed trials and
    use up `max_trials`. A rejected point is marked as tried (keras-tuner
    keeps that set in its saved state), so random sampling never draws it
    again and stops by itself once every trainable point has been tried.
    Grid search walks its points in order from the trials it has made, so it
    keeps failing such points as trials; Hyperband plans its brackets from
    the trials, so it is left alone too.
    """
    populate = oracle.populate_space

    def populate_space(trial_id):
        for _ in range(attempts):
            proposal = populate(trial_id)
            if proposal.get("status") != kt.engine.trial.TrialStatus.RUNNING:
                return proposal
            hp = oracle.hyperparameters.copy()
            hp.values = dict(proposal["values"])
            try:
                why_not = hypermodel.why_not(hypermodel.overrides(hp))
            except kt.errors.FailedTrialError as error:  # no equal-complexity width
                why_not = str(error)
            if why_not is None:
                return proposal
            oracle._tried_so_far.add(oracle._compute_values_hash(proposal["values"]))
        return proposal  # the oracle insists (Bayesian optimum): it fails as a trial

    oracle.populate_space = populate_space


def default_out_dir(config, root="runs"):
    """``runs/tune-<space>-<dataset>-<YYYYmmdd-HHMMSS>``."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    dataset = os.path.basename(os.path.normpath(config.dataset))
    return os.path.join(root, f"tune-{config.space}-{dataset}-{stamp}")


def search(config, out_dir=None, *, data=None, verbose=0):
    """Runs (or resumes) a search and writes its report.

    Rerunning with the same `out_dir` and config continues an interrupted
    search: completed trials are kept, a trial that was running is retried
    from scratch. With the keras-tuner environment variables set
    (``KERASTUNER_TUNER_ID``, ``KERASTUNER_ORACLE_IP``,
    ``KERASTUNER_ORACLE_PORT``), this process is the chief (which serves the
    oracle and writes the report) or a worker of a distributed search.

    Args:
        config: a `SearchConfig`.
        out_dir: the search directory (default `default_out_dir(config)`).
        data: loaded data to use instead of `config.dataset`.
        verbose: verbosity of each trial's `fit`.

    Returns:
        The report: a list of trial rows, best first (empty on a worker).

    Raises:
        ValueError: for an invalid config, before any trial.
    """
    out_dir = out_dir or default_out_dir(config)
    resume = ktrain.check_saved_config(out_dir, "search.json", config)
    if config.tuner not in TUNERS:
        raise ValueError(f"Unknown tuner.{did_you_mean(config.tuner, TUNERS, 0.4)} Known: "
                         f"{', '.join(TUNERS)}. Received: tuner={config.tuner!r}")
    for field in ("max_epochs", "max_trials"):
        value = getattr(config, field)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{field} must be a positive integer. Received: {field}={value!r}")
    space = get_space(config)
    ktrain.resolve_recipe(config.recipe, **config.recipe_overrides)
    if data is None:
        data = kdata.load(config.dataset, data_dir=config.data_dir, subset=config.subset,
                          val_size=config.val_size)
    base = kres.get_spec(space.model)
    image_size = config.image_size or data.spec.image_size or base.default_size
    channels = config.channels or data.spec.channels
    hypermodel = ResidualHyperModel(config, space, data, image_size, channels, out_dir)
    _check_budget(config, space, hypermodel)
    ktrain.set_precision("auto")
    strategy = ktrain.make_strategy("auto")
    if not isinstance(strategy, tf.distribute.MirroredStrategy):
        strategy = None
    os.makedirs(out_dir, exist_ok=True)
    if not resume:
        with open(os.path.join(out_dir, "search.json"), "w") as f:
            json.dump(config.to_json(), f, indent=2)
    try:
        tuner = _make_tuner(config, hypermodel, out_dir, resume, strategy)
    except (ValueError, KeyError, RuntimeError) as error:
        raise ValueError(f"The tuner state in {os.path.join(out_dir, 'project')} cannot be "
                         f"read ({error}); remove that directory to start the search "
                         f"again. Received: out_dir={out_dir!r}") from error
    tuner.search(epochs=config.max_epochs, verbose=verbose)
    if is_worker():
        return []
    return write_report(out_dir, tuner)


def _check_budget(config, space, hypermodel):
    """Fails before the search when no point of the space meets the budget."""
    if config.budget_mmacs is None and config.budget_mparams is None:
        return
    # Cost grows with depth, widen factor and width per group, so the cheapest
    # network of each cardinality is its shallowest and narrowest point.
    shallowest = min(space.depths.values(), key=sum)
    candidates = [p for p in _points(space) if p["depths"] == shallowest
                  and p.get("widen_factor") == min(space.widen_factor, default=None)
                  and p.get("width_per_group") in (None, 64, min(space.width_per_group,
                                                                  default=64))]
    cheapest = None
    for point in candidates:
        if not _valid(space, point):
            continue
        macs, params = hypermodel.cost(point)
        if over_budget(macs, params, config) is None:
            return
        cheapest = min(cheapest or (macs, params), (macs, params))
    raise ValueError(
        f"No point of the search space meets the budget: the cheapest network needs "
        f"{cheapest[0] / 1e6:.1f} MMACs and {cheapest[1] / 1e6:.2f} M parameters. Received: "
        f"budget_mmacs={config.budget_mmacs}, budget_mparams={config.budget_mparams}"
    )


REPORT_COLUMNS = ("trial_id", "status", "depths", "cardinality", "width_per_group",
                  "widen_factor", "learning_rate", "weight_decay", "label_smoothing",
                  "batch_size", "params", "mmacs", "best_val_accuracy", "epochs", "seconds")


def write_report(out_dir, tuner):
    """Writes trials.csv, trials.md, accuracy.png, best.keras and best.json.

    Returns:
        The trial rows, best first.
    """
    rows = []
    for trial in tuner.oracle.trials.values():
        info_path = os.path.join(trial_run_dir(out_dir, trial.trial_id), "trial.json")
        info = {}
        if os.path.isfile(info_path):
            with open(info_path) as f:
                info = json.load(f)
        values = trial.hyperparameters.values
        overrides = info.get("overrides", {})
        rows.append({
            "trial_id": trial.trial_id, "status": trial.status,
            "depths": values.get("depths"),
            "cardinality": values.get("cardinality", overrides.get("cardinality")),
            "width_per_group": overrides.get("width_per_group", values.get("width_per_group")),
            "widen_factor": values.get("widen_factor"),
            "learning_rate": values.get("learning_rate"),
            "weight_decay": values.get("weight_decay"),
            "label_smoothing": values.get("label_smoothing"),
            "batch_size": values.get("batch_size"),
            "params": info.get("params"),
            "mmacs": None if info.get("macs") is None else round(info["macs"] / 1e6, 1),
            "best_val_accuracy": None if trial.score is None else float(trial.score),
            "epochs": info.get("epochs"),
            "seconds": None if info.get("seconds") is None else round(info["seconds"], 1),
            "message": (trial.message or "").strip().splitlines()[-1:] or [""],
        })
    rows.sort(key=lambda r: -(r["best_val_accuracy"] or -1))
    with open(os.path.join(out_dir, "trials.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=REPORT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    used = [c for c in REPORT_COLUMNS if any(r.get(c) not in (None, "") for r in rows)]
    lines = ["| " + " | ".join(used) + " |", "|" + "---|" * len(used)]
    def cell(column, value):
        if value is None:
            return ""
        if column in ("best_val_accuracy", "learning_rate", "weight_decay"):
            return f"{float(value):.4g}"
        return str(value)

    for row in rows:
        lines.append("| " + " | ".join(cell(c, row.get(c)) for c in used) + " |")
    failed = [r for r in rows if r["status"] == "FAILED"]
    if failed:
        lines += ["", "Failed trials:"] + [f"- {r['trial_id']}: {r['message'][0]}"
                                           for r in failed]
    with open(os.path.join(out_dir, "trials.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    plot_report(rows, os.path.join(out_dir, "accuracy.png"))
    done = [r for r in rows if r["best_val_accuracy"] is not None]
    if done:
        best = done[0]
        source = os.path.join(trial_run_dir(out_dir, best["trial_id"]), "best.keras")
        if os.path.isfile(source):
            shutil.copyfile(source, os.path.join(out_dir, "best.keras"))
        with open(os.path.join(out_dir, "best.json"), "w") as f:
            json.dump(best, f, indent=2, default=str)
    return rows


def plot_report(rows, path):
    """Validation accuracy against depth, cardinality and MACs, one PNG."""
    done = [r for r in rows if r["best_val_accuracy"] is not None and r["mmacs"] is not None]
    if not done:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    accuracy = [100 * r["best_val_accuracy"] for r in done]
    depth = [int(r["depths"]) for r in done]
    cardinality = [r["cardinality"] or 1 for r in done]
    scatter = axes[0].scatter(depth, accuracy, c=[math.log2(c) for c in cardinality],
                              cmap="viridis")
    axes[0].set_xlabel("depth (layers)")
    fig.colorbar(scatter, ax=axes[0], label="log2 cardinality")
    axes[1].scatter(cardinality, accuracy, c=depth, cmap="plasma")
    axes[1].set_xscale("log", base=2)
    axes[1].xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes[1].set_xlabel("cardinality")
    by_depth = axes[2].scatter([r["mmacs"] for r in done], accuracy, c=depth, cmap="plasma")
    axes[2].set_xscale("log")
    axes[2].xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes[2].xaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
    axes[2].set_xlabel("million multiply-accumulates")
    fig.colorbar(by_depth, ax=axes[2], label="depth (layers), middle and right")
    for ax in axes:
        ax.set_ylabel("best validation accuracy (%)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{len(done)} trials")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
