"""Hyperparameter search over depth and cardinality, with keras-tuner as the engine.

`search` runs a keras-tuner tuner (random, Hyperband, Bayesian optimisation
or grid) over a space of `kres.spaces`, each trial trained exactly as `kres
train` trains; it is resumable and distributable (keras-tuner's chief and
workers), and ends with the report of `kres.tuning_report`. keras-tuner is
extended only through its extension points: the sampling oracles are
subclassed (`populate_space`) so that they draw again instead of spending a
trial on a network that cannot train, and the tuners pass each trial's id to
the hypermodel from `run_trial`.

    runs/tune-<space>-<dataset>-<time>/
        search.json     the search's settings (resume checks against them)
        project/        keras-tuner's oracle and trials; trial_<id>/run/ holds
                        each trial's kres run (history, best.keras, backup/)
        trials.csv  trials.md  accuracy.png  best.keras  model.json  best.json
"""

import dataclasses
import json
import os
from dataclasses import dataclass

import keras_tuner as kt
import tensorflow as tf

from kres import checks, runs
from kres.devices import make_strategy, resolve_precision
from kres.recipes import as_config, resolve_recipe
from kres.registry import get_spec
from kres.spaces import SPACES, ResidualHyperModel, get_space, over_budget, points, valid
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
            are not trained (random and Bayesian search draw another point;
            grid search and Hyperband fail the trial at once).
        budget_mparams: likewise for millions of parameters.
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
        for field in ("max_epochs", "max_trials"):
            checks.positive_int(field, getattr(self, field))
        for field in ("tune_training", "equal_complexity"):
            checks.boolean(field, getattr(self, field))
        checks.int_tuple("batch_sizes", self.batch_sizes, optional=True)
        for field in ("budget_mmacs", "budget_mparams"):
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

    def to_json(self):
        """The config as a JSON-ready dict."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


class _DrawsTrainablePoints:
    """Makes a sampling oracle draw again instead of proposing a point that cannot train.

    Invalid or over-budget points would otherwise become failed trials and
    use up `max_trials`. `why_not(values)` says why a point cannot train (or
    ``None``); after `attempts` draws without a trainable point the oracle
    is done (random search) or proposes what it insists on, which then fails
    as a trial (Bayesian optimisation's optimum).
    """

    stop_when_exhausted = True

    def __init__(self, *args, why_not, attempts=1000, **kwargs):
        super().__init__(*args, **kwargs)
        self.why_not = why_not
        self.attempts = attempts

    def populate_space(self, trial_id):
        for _ in range(self.attempts):
            proposal = super().populate_space(trial_id)
            if (proposal.get("status") != kt.engine.trial.TrialStatus.RUNNING
                    or self.why_not(proposal["values"]) is None):
                return proposal
        if self.stop_when_exhausted:
            return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
        return proposal


class TrainableRandomSearchOracle(_DrawsTrainablePoints, kt.oracles.RandomSearchOracle):
    """keras-tuner's random search that never proposes a network that cannot train."""


class TrainableBayesianOracle(_DrawsTrainablePoints, kt.oracles.BayesianOptimizationOracle):
    """keras-tuner's Bayesian optimisation that draws again past untrainable points."""

    stop_when_exhausted = False


class _PassesTrialIds:
    """Hands each trial's id to the hypermodel's `fit` (its run directory's name)."""

    def run_trial(self, trial, *args, **kwargs):
        return super().run_trial(trial, *args, trial_id=trial.trial_id, **kwargs)


class Tuner(_PassesTrialIds, kt.Tuner):
    """`keras_tuner.Tuner` with the trial ids passed on."""


class HyperbandTuner(_PassesTrialIds, kt.Hyperband):
    """`keras_tuner.Hyperband` with the trial ids passed on."""


def is_worker():
    """Whether this process is a worker of a distributed search."""
    return ("KERASTUNER_ORACLE_IP" in os.environ
            and os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief")


def make_tuner(config, hypermodel, out_dir, resume, strategy):
    """The keras-tuner tuner of a search (its project in ``out_dir/project``)."""
    # keras-tuner's overwrite deletes the project in whichever process asks:
    # only the chief (or a lone process) may start the project afresh.
    overwrite = not resume and not is_worker()
    objective = kt.Objective(config.objective, "max")
    # Over-budget points fail at once in grid search and Hyperband; they must
    # not end the search.
    oracle_args = dict(objective=objective, seed=config.seed,
                       max_consecutive_failed_trials=max(3, config.max_trials * 3))
    tuner_args = dict(directory=out_dir, project_name="project", overwrite=overwrite,
                      distribution_strategy=strategy)

    def why_not(values):
        hp = kt.HyperParameters()
        hp.values = dict(values)
        try:
            return hypermodel.why_not(hypermodel.overrides(hp))
        except kt.errors.FailedTrialError as error:  # no equal-complexity width
            return str(error)

    hypermodel.discovering = True
    try:
        if config.tuner == "hyperband":
            return HyperbandTuner(hypermodel, max_epochs=config.max_epochs, factor=3,
                                  **oracle_args, **tuner_args)
        if config.tuner == "grid":
            oracle = kt.oracles.GridSearchOracle(max_trials=config.max_trials, **oracle_args)
        elif config.tuner == "bayesian":
            oracle = TrainableBayesianOracle(max_trials=config.max_trials, why_not=why_not,
                                             **oracle_args)
        else:
            oracle = TrainableRandomSearchOracle(max_trials=config.max_trials, why_not=why_not,
                                                 **oracle_args)
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
    _check_budget(config, space, hypermodel)
    strategy = make_strategy("auto")
    if not isinstance(strategy, tf.distribute.MirroredStrategy):
        strategy = None
    os.makedirs(out_dir, exist_ok=True)
    if not resume:
        runs.write_config(out_dir, "search.json", config)
    try:
        tuner = make_tuner(config, hypermodel, out_dir, resume, strategy)
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
    candidates = [p for p in points(space) if p["depths"] == shallowest
                  and p.get("widen_factor") == min(space.widen_factor, default=None)
                  and p.get("width_per_group") in (None, 64, min(space.width_per_group,
                                                                  default=64))]
    cheapest = None
    for point in candidates:
        if not valid(space, point):
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
