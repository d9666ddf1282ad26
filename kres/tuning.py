"""Hyperparameter search over depth and cardinality, with keras-tuner as the engine.

`search` runs a keras-tuner tuner (random, Hyperband, Bayesian optimisation
or grid) over a space of `kres.spaces`, each trial trained exactly as `kres
train` trains; it is resumable and distributable (keras-tuner's chief and
workers), and ends with the report of `kres.tuning_report`. Before the
tuner starts, a `Plan` lists the space's networks that are valid and within
the compute budget; every oracle draws from those only (so no trial is spent
on a network that cannot train), and with a time budget no trial starts that
is not expected to finish. keras-tuner is extended through its extension
points only: the oracles are subclassed (`populate_space`, `_random_values`,
`end_trial`), and the tuners pass each trial's id and execution to the
hypermodel (`run_trial`, `_build_and_fit_model`).

    runs/tune-<space>-<dataset>-<time>/
        search.json     the search's settings (resume checks against them)
        project/        keras-tuner's oracle and trials; trial_<id>/run/ holds
                        each trial's kres run (history, best.keras, backup/),
                        run-1/, run-2/... its other seeds
        trials.csv  trials.md  accuracy.png  best.keras  model.json  best.json
        summary.json    the search's time, the networks it could train, why it stopped
"""

import dataclasses
import json
import os
import random
import time
from dataclasses import dataclass

import keras_tuner as kt
import tensorflow as tf

from kres import checks, runs
from kres.devices import make_strategy, resolve_precision
from kres.recipes import as_config, resolve_recipe
from kres.registry import get_spec
from kres.spaces import SPACES, ResidualHyperModel, architectures, get_space
from kres.training import load_data, resolve_input
from kres.tuning_report import write_report

TUNERS = ("random", "hyperband", "bayesian", "grid")


@dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a search; saved as ``search.json``.

    Every field is checked when the config is made: a bad value is a
    `ValueError` naming the field and the value received.

    Attributes:
        space: a name of `kres.spaces.SPACES`.
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
            are left out of the space before the search (no tuner spends a
            trial on them).
        budget_mparams: likewise for millions of parameters.
        time_budget: minutes for the whole search: no trial starts that is
            not expected to finish in the time left (``None``: no limit).
        executions_per_trial: seeds per configuration (the search's seed,
            plus 1, 2...): the trial's score is their mean, the report shows
            their spread.
        equal_complexity: choose `width_per_group` for each depth and
            cardinality so that all have about the MACs of cardinality 1 at
            width 64 (the ResNeXt paper's comparison); `width_per_group` is
            then not searched.
        subset, val_size, image_size, channels, seed, data_dir: as in
            `kres.training.TrainConfig`.
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
    time_budget: float | None = None
    executions_per_trial: int = 1
    equal_complexity: bool = False
    subset: int | None = None
    val_size: int | None = None
    image_size: int | None = None
    channels: int | None = None
    seed: int | None = 0
    data_dir: str | None = None
    objective: str = "val_accuracy"

    def __post_init__(self):
        checks.tuples(self, "depths", "cardinalities", "widths_per_group", "widen_factors",
                      "batch_sizes")
        checks.choice("space", self.space, tuple(SPACES))
        checks.string("dataset", self.dataset)
        checks.choice("tuner", self.tuner, TUNERS)
        checks.mapping("recipe_overrides", self.recipe_overrides)
        resolve_recipe(self.recipe, **self.recipe_overrides)
        for field in ("max_epochs", "max_trials", "executions_per_trial"):
            checks.positive_int(field, getattr(self, field))
        for field in ("tune_training", "equal_complexity"):
            checks.boolean(field, getattr(self, field))
        checks.int_tuple("batch_sizes", self.batch_sizes, optional=True)
        for field in ("budget_mmacs", "budget_mparams", "time_budget"):
            checks.number(field, getattr(self, field), low=0, low_open=True, optional=True)
        for field in ("subset", "val_size", "image_size"):
            checks.positive_int(field, getattr(self, field), optional=True)
        if self.channels is not None:
            checks.choice("channels", self.channels, (1, 3))
        checks.integer("seed", self.seed, minimum=0, optional=True)
        checks.string("data_dir", self.data_dir, optional=True)
        checks.string("objective", self.objective)
        space = get_space(self)  # the restrictions, and that some point is a network
        if self.equal_complexity and not space.cardinality:
            raise ValueError(f"equal_complexity compares cardinalities, which space "
                             f"{self.space!r} does not search. Received: equal_complexity=True")
        if self.tuner == "grid" and self.tune_training:
            raise ValueError("Grid search needs discrete choices, and tune_training searches "
                             "continuous learning rates and weight decays; use another tuner. "
                             "Received: tuner='grid', tune_training=True")

    def to_json(self):
        """The config as a JSON-ready dict."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


class Plan:
    """What a search may try: its trainable networks, and its time.

    Made once, before the tuner: `architectures` are the space's networks
    that are valid and within the compute budget (found without building
    what the budget rules out: cost grows with depth, widen factor,
    cardinality and width per group, so a point above one over the budget
    is over it too). The oracles draw from them only. With a
    `time_budget` (minutes), `fits` says whether a proposed trial can finish
    in the time left, estimated from the trials done so far (seconds per
    epoch per multiply-accumulate, times the trial's epochs and executions).

    Args:
        config: the `SearchConfig`.
        space: its `Space`.
        hypermodel: the `ResidualHyperModel` (its `why_not` and `cost`).
    """

    def __init__(self, config, space, hypermodel):
        self.config, self.hypermodel = config, hypermodel
        self.began = time.monotonic()
        self.done = []  # (seconds, epochs x executions x MACs) of finished trials
        self.stopped = None
        self.rejected = {}
        self.architectures = []
        over = []
        for values in architectures(space, config.equal_complexity):
            key = _order_key(space, values)
            if any(_below(o, key) for o in over):
                self.rejected[_key(values)] = "Over budget (a smaller network already is)"
                continue
            why = self.why_not(values)
            if why is None:
                self.architectures.append(values)
            else:
                self.rejected[_key(values)] = why
                if why.startswith("Over budget"):
                    over.append(key)

    def why_not(self, values):
        """Why the network of these hyperparameter values cannot train, or ``None``."""
        hp = kt.HyperParameters()
        hp.values = dict(values)
        try:
            return self.hypermodel.why_not(self.hypermodel.overrides(hp))
        except kt.errors.FailedTrialError as error:  # no equal-complexity width
            return str(error)

    def is_trainable(self, values):
        return _key(values) in {_key(a) for a in self.architectures}

    def work(self, values):
        """Epochs x executions x MACs of a proposed trial."""
        hp = kt.HyperParameters()
        hp.values = dict(values)
        macs, _ = self.hypermodel.cost(self.hypermodel.overrides(hp))
        epochs = (values.get("tuner/epochs", self.config.max_epochs)
                  - values.get("tuner/initial_epoch", 0))
        return epochs * self.config.executions_per_trial * macs

    def estimate(self, values):
        """Seconds the trial is expected to take (``None`` before any trial ended)."""
        if not self.done:
            return None
        seconds, work = map(sum, zip(*self.done))
        return seconds / work * self.work(values)

    def left(self):
        """Seconds of the time budget left (``None``: no time budget)."""
        if self.config.time_budget is None:
            return None
        return self.config.time_budget * 60 - (time.monotonic() - self.began)

    def fits(self, values):
        """Whether a trial of these values can finish in the time left; records why not."""
        left = self.left()
        if left is None:
            return True
        estimate = self.estimate(values)
        if left <= 0 or (estimate is not None and estimate > left):
            network = ", ".join(f"{k} {v}" for k, v in values.items()
                                if not k.startswith("tuner/"))
            self.stopped = (
                f"time budget: {self.config.time_budget:g} min, "
                f"{(time.monotonic() - self.began) / 60:.1f} min used; the next trial "
                f"({network}) would need about "
                f"{'?' if estimate is None else f'{estimate / 60:.1f}'} min, "
                f"{max(left, 0) / 60:.1f} min were left")
            return False
        return True

    def record(self, values, seconds):
        self.done.append((seconds, self.work(values)))

    def summary(self):
        """What the search did with its time, for the report."""
        return {"minutes": round((time.monotonic() - self.began) / 60, 2),
                "time_budget": self.config.time_budget,
                "trainable_networks": len(self.architectures),
                "networks_ruled_out": len(self.rejected),
                "stopped": self.stopped}


def _key(values):
    return tuple(sorted((k, v) for k, v in values.items() if not k.startswith("tuner/")
                        and k in ARCHITECTURE_NAMES))


ARCHITECTURE_NAMES = ("depths", "widen_factor", "cardinality", "width_per_group")


def _order_key(space, values):
    """Coordinates in which cost grows: depth, widen factor, cardinality, width per group.

    Points with and without a grouped width (cardinality 1 is the plain
    bottleneck at width 64) are not compared.
    """
    depth = sum(space.depths[values["depths"]])
    return ("width_per_group" in values, depth, values.get("widen_factor", 0),
            values.get("cardinality", 0), values.get("width_per_group", 0))


def _below(low, high):
    return low[0] == high[0] and all(a <= b for a, b in zip(low[1:], high[1:], strict=True))


class _PlannedOracle:
    """An oracle that keeps to a search's `Plan`.

    Draws the networks of `plan.architectures` only: a random draw (random
    search, the first rung of each Hyperband bracket, Bayesian optimisation's
    initial points) picks uniformly among the trainable networks not tried
    yet, then the other hyperparameters; so no trial is spent on a point
    that cannot train. Before a trial starts, the time budget is checked:
    a trial that cannot finish in the time left ends the search (the
    reason is in the report).
    """

    def __init__(self, *args, plan, **kwargs):
        super().__init__(*args, **kwargs)
        self.plan = plan
        self.began = {}

    def _random_values(self):
        architectures = self.plan.architectures
        tried = {_key(t.hyperparameters.values) for t in self.trials.values()}
        fresh = [a for a in architectures if _key(a) not in tried] or architectures
        rng = random.Random(self.seed * 1_000_003 + self._seed_state)
        for _ in range(self._max_collisions + 10 * len(architectures)):
            self._seed_state += 1
            network = rng.choice(fresh)
            hps = kt.HyperParameters()
            hps.merge(self.hyperparameters.space)  # (at their defaults)
            hps.values.update(network)
            for hp in self.hyperparameters.space:
                if hp.name not in ARCHITECTURE_NAMES and hps.is_active(hp):
                    hps.values[hp.name] = hp.random_sample(self._seed_state)
                    self._seed_state += 1
            values = {k: v for k, v in hps.values.items()
                      if k not in ARCHITECTURE_NAMES or k in network}
            if not self._duplicate(values):
                return values
        return None

    def populate_space(self, trial_id):
        proposal = super().populate_space(trial_id)
        if proposal.get("status") != kt.engine.trial.TrialStatus.RUNNING:
            return proposal
        if not self.plan.fits(proposal["values"]):
            self._forget(trial_id)
            return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
        self.began[trial_id] = (time.monotonic(), proposal["values"])
        return proposal

    def _forget(self, trial_id):
        """Undoes what `populate_space` recorded of a trial that will not run."""

    def end_trial(self, trial):
        began = self.began.pop(trial.trial_id, None)
        result = super().end_trial(trial)
        if began is not None and trial.status == kt.engine.trial.TrialStatus.COMPLETED:
            self.plan.record(began[1], time.monotonic() - began[0])
        return result


class RandomOracle(_PlannedOracle, kt.oracles.RandomSearchOracle):
    """keras-tuner's random search over the trainable networks, in the time budget."""


class BayesianOracle(_PlannedOracle, kt.oracles.BayesianOptimizationOracle):
    """keras-tuner's Bayesian optimisation over the trainable networks.

    Its first points are random draws of trainable networks; where the
    Gaussian process then proposes one that cannot train, it is asked again
    (up to `attempts` times) before the point is let through, to fail as a
    trial.
    """

    attempts = 100

    def populate_space(self, trial_id):
        for _ in range(self.attempts):
            proposal = super().populate_space(trial_id)
            if (proposal.get("status") != kt.engine.trial.TrialStatus.RUNNING
                    or self.plan.is_trainable(proposal["values"])):
                return proposal
            self.began.pop(trial_id, None)
        return proposal


class HyperbandOracle(_PlannedOracle, kt.oracles.HyperbandOracle):
    """keras-tuner's Hyperband whose brackets start from trainable networks only.

    A network is a duplicate only within the brackets under way: a later
    bracket may draw a network an earlier one tried, at its own epochs (in
    keras-tuner's own Hyperband a small space runs out after the first
    bracket and ends the search), and a bracket asks for at most as many
    networks as the space can train.
    """

    def _get_size(self, bracket_num, round_num):
        return min(super()._get_size(bracket_num, round_num), len(self.plan.architectures))

    def _duplicate(self, values):
        digest = self._compute_values_hash(values)
        for bracket in self._brackets:
            for info in bracket["rounds"][0]:
                trial = self.trials.get(info["id"])
                if trial is not None and digest == self._compute_values_hash(
                        {k: v for k, v in trial.hyperparameters.values.items()
                         if not k.startswith("tuner/")}):
                    return True
        return False

    def _forget(self, trial_id):
        for bracket in self._brackets:
            for round_info in bracket["rounds"]:
                round_info[:] = [info for info in round_info if info["id"] != trial_id]


class _Grid(kt.Oracle):
    def _grid(self):
        grid = [dict(a) for a in self.plan.architectures]
        for hp in self.hyperparameters.space:
            if hp.name not in ARCHITECTURE_NAMES:
                grid = [{**v, hp.name: choice} for v in grid for choice in hp.values]
        return grid

    def populate_space(self, trial_id):
        ongoing = {self._compute_values_hash(t.hyperparameters.values)
                   for t in self.ongoing_trials.values()}
        for values in self._grid():
            if not self._duplicate(values) and self._compute_values_hash(values) not in ongoing:
                return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": values}
        if self.ongoing_trials:
            return {"status": kt.engine.trial.TrialStatus.IDLE, "values": None}
        return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}


class GridOracle(_PlannedOracle, _Grid):
    """Every trainable network in turn, in the space's order (times the choices
    of the other hyperparameters, which must then be discrete)."""


class _PassesTrialIds:
    """Hands each trial's id to the hypermodel's `fit` (its run directory's name),
    and tells the hypermodel which of the trial's executions (seeds) it builds."""

    def run_trial(self, trial, *args, **kwargs):
        self._execution = 0
        return super().run_trial(trial, *args, trial_id=trial.trial_id, **kwargs)

    def _build_and_fit_model(self, trial, *args, **kwargs):
        self.hypermodel.execution = self._execution
        try:
            return super()._build_and_fit_model(trial, *args, **kwargs)
        finally:
            self._execution += 1
            self.hypermodel.execution = 0


class Tuner(_PassesTrialIds, kt.Tuner):
    """`keras_tuner.Tuner` with the trial ids and executions passed on."""


class HyperbandTuner(_PassesTrialIds, kt.Hyperband):
    """`keras_tuner.Hyperband` with kres's oracle, the trial ids and executions passed on."""

    def __init__(self, hypermodel, *, plan, max_epochs, factor, objective, seed,
                 max_consecutive_failed_trials, **kwargs):
        oracle = HyperbandOracle(plan=plan, objective=objective, max_epochs=max_epochs,
                                 factor=factor, seed=seed,
                                 max_consecutive_failed_trials=max_consecutive_failed_trials)
        kt.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, **kwargs)


def is_worker():
    """Whether this process is a worker of a distributed search."""
    return ("KERASTUNER_ORACLE_IP" in os.environ
            and os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief")


def make_tuner(config, hypermodel, plan, out_dir, resume, strategy):
    """The keras-tuner tuner of a search (its project in ``out_dir/project``)."""
    # keras-tuner's overwrite deletes the project in whichever process asks:
    # only the chief (or a lone process) may start the project afresh.
    overwrite = not resume and not is_worker()
    oracle_args = dict(objective=kt.Objective(config.objective, "max"), seed=config.seed,
                       max_consecutive_failed_trials=max(3, config.max_trials * 3))
    tuner_args = dict(directory=out_dir, project_name="project", overwrite=overwrite,
                      distribution_strategy=strategy,
                      executions_per_trial=config.executions_per_trial)
    hypermodel.discovering = True
    try:
        if config.tuner == "hyperband":
            return HyperbandTuner(hypermodel, plan=plan, max_epochs=config.max_epochs, factor=3,
                                  **oracle_args, **tuner_args)
        oracle_type = {"grid": GridOracle, "bayesian": BayesianOracle,
                       "random": RandomOracle}[config.tuner]
        oracle = oracle_type(plan=plan, max_trials=config.max_trials, **oracle_args)
        return Tuner(oracle=oracle, hypermodel=hypermodel, **tuner_args)
    finally:
        hypermodel.discovering = False


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
        out_dir: the search directory (default
            ``runs/tune-<space>-<dataset>-<time>``).
        data: loaded data to use instead of `config.dataset`.
        verbose: verbosity of each trial's `fit`.

    Returns:
        The report: a list of trial rows, best first (empty on a worker).

    Raises:
        ValueError: for an invalid config, before any trial.
    """
    out_dir = out_dir or runs.default_dir("tune", config.space, config.dataset)
    resume = runs.check_saved_config(out_dir, "search.json", config)
    space = get_space(config)
    recipe = resolve_recipe(config.recipe, **config.recipe_overrides)
    if data is None:
        data = load_data(config.dataset, data_dir=config.data_dir, subset=config.subset,
                         val_size=config.val_size)
    image_size, channels = resolve_input(
        space.model, get_spec(space.model), data, image_size=config.image_size,
        channels=config.channels, batch_sizes=[recipe.batch_size, *(config.batch_sizes or ())])
    hypermodel = ResidualHyperModel(config, space, data, image_size, channels, out_dir,
                                    precision=resolve_precision("auto")[0])
    plan = Plan(config, space, hypermodel)
    if not plan.architectures:
        raise ValueError(
            f"No point of the search space meets the budget: the cheapest network needs "
            f"{_cheapest(space, hypermodel, config)}. Received: budget_mmacs="
            f"{config.budget_mmacs}, budget_mparams={config.budget_mparams}")
    strategy = make_strategy("auto")
    if not isinstance(strategy, tf.distribute.MirroredStrategy):
        strategy = None
    os.makedirs(out_dir, exist_ok=True)
    if not resume:
        runs.write_config(out_dir, "search.json", config)
    try:
        tuner = make_tuner(config, hypermodel, plan, out_dir, resume, strategy)
    except (ValueError, KeyError, RuntimeError) as error:
        raise ValueError(f"The tuner state in {os.path.join(out_dir, 'project')} cannot be "
                         f"read ({error}); remove that directory to start the search "
                         f"again. Received: out_dir={out_dir!r}") from error
    tuner.search(epochs=config.max_epochs, verbose=verbose)
    if is_worker():
        return []
    return write_report(out_dir, tuner, plan.summary())


def _cheapest(space, hypermodel, config):
    """The cost of the space's cheapest valid network, in words (cost grows with
    depth and widen factor, so it is among the shallowest and narrowest)."""
    shallowest = min(space.depths, key=lambda name: sum(space.depths[name]))
    costs = []
    for values in architectures(space, config.equal_complexity):
        if (values["depths"] != shallowest
                or values.get("widen_factor", 0) != min(space.widen_factor, default=0)):
            continue
        hp = kt.HyperParameters()
        hp.values = dict(values)
        try:
            overrides = hypermodel.overrides(hp)
        except kt.errors.FailedTrialError:  # no equal-complexity width
            continue
        if not (hypermodel.why_not(overrides) or "").startswith("Invalid"):
            costs.append(hypermodel.cost(overrides))
    macs, params = min(costs)
    return f"{macs / 1e6:.1f} MMACs and {params / 1e6:.2f} M parameters"


def tune(space, dataset=None, *, out_dir=None, data=None, verbose=0, **settings):
    """Searches a space of residual networks with keras-tuner, and reports.

    Args:
        space: a space name (``"cifar-resnet"``, ``"resnext-cifar"``,
            ``"resnext-imagenet"``, ``"wrn-cifar"``), or a whole
            `SearchConfig` (then no `dataset` and no `settings`).
        dataset: a dataset name or image folder.
        out_dir: the search directory (default
            ``runs/tune-<space>-<dataset>-<time>``); an unfinished search
            there of the same settings resumes.
        data: loaded data to use instead of the dataset
            (`kres.datasets.from_arrays`).
        verbose: verbosity of each trial's `fit`.
        **settings: `SearchConfig` fields (``tuner="hyperband"``,
            ``max_epochs=9``, ``cardinalities=(1, 4, 32)``,
            ``budget_mmacs=120``, ...) and recipe fields for every trial
            (``batch_size=64``).

    Returns:
        The report's rows, best first (each with the trial's
        hyperparameters, size, MACs and best validation accuracy).

    Raises:
        ValueError: for an invalid setting, before any trial.

    Example:

    >>> rows = kres.tune("resnext-cifar", "fashion_mnist", max_trials=6, max_epochs=2,
    ...                  subset=3000, budget_mmacs=150)  # doctest: +SKIP
    >>> rows[0]["depths"], rows[0]["cardinality"]  # doctest: +SKIP
    ('20', 4)
    """
    config = as_config(SearchConfig, space, dataset, settings)
    return search(config, out_dir, data=data, verbose=verbose)
