"""Hyperparameter search over depth and cardinality, with keras-tuner as the engine.

`search` runs a keras-tuner tuner (random, Hyperband, Bayesian optimisation
or grid) over a space of `kres.tuning.spaces`, each trial trained exactly as `kres
train` trains; it is resumable and distributable (keras-tuner's chief and
workers), and ends with the report of `kres.tuning.report`. Before the
tuner starts, a `Plan` lists the space's networks that are valid and within
the compute budget; every oracle draws from those only (so no trial is spent
on a network that cannot train), and with a time budget no trial starts that
is not expected to finish. keras-tuner is extended through its extension
points (the oracles' `populate_space` and `end_trial`, the tuners' `run_trial`,
which passes each trial's id to the hypermodel), and where it has none
through the private members that `kres.tuning.keras_tuner_internals` holds,
behind a check of keras-tuner's version.

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
from dataclasses import dataclass

import keras
import keras_tuner as kt

from kres import checks
from kres import rundir as runs
from kres.models.registry import get_spec
from kres.training.config import as_config
from kres.training.devices import make_strategy, resolve_precision
from kres.training.preparation import load_data, resolve_input
from kres.training.recipes import resolve_recipe
from kres.tuning.keras_tuner_internals import check_keras_tuner_version
from kres.tuning.oracles import (
    BayesianOracle,
    GridOracle,
    HyperbandTuner,
    Plan,
    RandomOracle,
    Tuner,
)
from kres.tuning.report import write_report
from kres.tuning.spaces import SPACES, ResidualHyperModel, architectures, get_space

TUNERS = ("random", "hyperband", "bayesian", "grid")


@dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a search; saved as ``search.json``.

    Every field is checked when the config is made: a bad value is a
    `ValueError` naming the field and the value received.

    Attributes:
        space: a name of `kres.tuning.spaces.SPACES`.
        dataset: a dataset name or image folder.
        tuner: one of `TUNERS`.
        recipe: the training recipe of every trial.
        recipe_overrides: recipe fields to change for every trial.
        model_overrides: spec fields every network shares, changed from the
            space's model (``{"widths": (16, 32, 64), "stem_width": 16}``:
            ResNeXts at the CIFAR ResNets' width); not the fields the
            search chooses.
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
            `kres.training.config.TrainConfig`.
        objective: the metric to maximise.
    """

    space: str
    dataset: str
    tuner: str = "random"
    recipe: str = "he2015-cifar"
    recipe_overrides: dict = dataclasses.field(default_factory=dict)
    model_overrides: dict = dataclasses.field(default_factory=dict)
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
        checks.mapping("model_overrides", self.model_overrides)
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
        RuntimeError: for a keras-tuner version kres's searches were not
            tested with (`kres.tuning.keras_tuner_internals`).
    """
    check_keras_tuner_version()
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
    # keras-tuner takes TensorFlow's strategy; on JAX, Keras's distribution
    # (`kres.training.devices.KerasDistribution`) is the process's already.
    if keras.backend.backend() != "tensorflow" or strategy.num_replicas_in_sync == 1:
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
            (`kres.data.sources.from_arrays`).
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

    A search trains many networks, so this example is not run as a test::

        rows = kres.tune("resnext-cifar", "fashion_mnist", max_trials=6, max_epochs=2,
                         subset=3000, budget_mmacs=150)
        rows[0]["depths"], rows[0]["cardinality"]  # e.g. ('20', 4)
    """
    config = as_config(SearchConfig, space, dataset, settings)
    return search(config, out_dir, data=data, verbose=verbose)
