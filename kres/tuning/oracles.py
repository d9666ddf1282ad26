"""What a search may try, and the keras-tuner oracles and tuners that keep to it.

A `Plan` lists a search space's networks that are valid and within the
compute budget, and keeps the time budget; the oracles (random, Hyperband,
Bayesian optimisation, grid) subclass keras-tuner's through its extension
points (`populate_space`, `end_trial`) and, where it has none, through the
private members that `kres.tuning.keras_tuner_internals` contains, so that
they draw from the plan only and start no trial that cannot finish; the
tuners hand each trial's id to `kres.tuning.spaces.ResidualHyperModel`
(public `run_trial`). `kres.tuning.run` assembles them into a search.
"""

import json
import random
import time

import keras_tuner as kt

from kres.tuning.keras_tuner_internals import (
    DrawsFromPlan,
    PlannedBrackets,
    hyperband_tuner_init,
)
from kres.tuning.spaces import architectures


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
        self.done = []  # (seconds, epochs x executions x MACs, grouped) of finished trials
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
        """Seconds the trial is expected to take (``None`` before any trial ended).

        Seconds per unit of `work` from the trials done, those of the same
        kind where there are some: grouped convolutions (cardinality above
        1) cost this CPU more per multiply-accumulate than plain ones (2.4x
        in a measured search, docs/results.md).
        """
        if not self.done:
            return None
        grouped = _grouped(values)
        same = [(s, w) for s, w, g in self.done if g == grouped]
        seconds, work = map(sum, zip(*(same or [(s, w) for s, w, _ in self.done])))
        return seconds / work * self.work(values)

    def left(self):
        """Seconds of the time budget left (``None``: no time budget)."""
        if self.config.time_budget is None:
            return None
        return self.config.time_budget * 60 - (time.monotonic() - self.began)

    def in_time(self, values):
        """Whether a trial of these values is expected to finish in the time left."""
        left = self.left()
        if left is None:
            return True
        estimate = self.estimate(values)
        return left > 0 and (estimate is None or estimate <= left)

    def fits(self, values):
        """Whether a trial of these values can finish in the time left; records why not."""
        if not self.in_time(values):
            left, estimate = self.left(), self.estimate(values)
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
        self.done.append((seconds, self.work(values), _grouped(values)))

    def summary(self):
        """What the search did with its time, for the report."""
        return {"minutes": round((time.monotonic() - self.began) / 60, 2),
                "time_budget": self.config.time_budget,
                "trainable_networks": len(self.architectures),
                "networks_ruled_out": len(self.rejected),
                "stopped": self.stopped,
                "model_overrides": self.config.model_overrides}


def _grouped(values):
    return values.get("cardinality", 1) > 1


def _key(values):
    return tuple(sorted((k, v) for k, v in values.items() if k in ARCHITECTURE_NAMES))


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


def _values_key(values):
    """A point's values as a comparable key, without Hyperband's own entries."""
    return json.dumps({k: v for k, v in values.items() if not k.startswith("tuner/")},
                      sort_keys=True, default=str)


class _PlannedOracle(DrawsFromPlan):
    """An oracle that keeps to a search's `Plan`.

    Draws the networks of `plan.architectures` only: a random draw (random
    search, the first rung of each Hyperband bracket, Bayesian optimisation's
    initial points) picks uniformly among the trainable networks not tried
    yet, then the other hyperparameters; so no trial is spent on a point
    that cannot train. With a time budget, a draw of random search or
    Bayesian optimisation picks among the networks expected to finish in the
    time left (when none is, the cheapest untried one, to be refused). Before
    a trial starts, the time budget is checked: a trial that cannot finish in
    the time left ends the search (the reason is in the report).
    """

    # Whether a draw keeps to the networks that fit the time left. Hyperband's
    # draws train for its rungs' epochs, not `max_epochs`: its estimates
    # come when the trial is proposed.
    draws_in_time = True
    # Draws of other hyperparameters tried per network before the draw gives up.
    collisions = 20

    def __init__(self, *args, plan, **kwargs):
        super().__init__(*args, **kwargs)
        self.plan = plan
        self.began = {}

    def draw_values(self, seeds):
        """A random point of the plan not tried yet (or ``None``): the network
        first, among the trainable ones not tried, then the other hyperparameters.

        Args:
            seeds: the oracle's seed state
                (`kres.tuning.keras_tuner_internals.SeedState`: saved with the
                oracle, so a resumed search draws on the same way).
        """
        architectures = self.plan.architectures
        tried = {_key(t.hyperparameters.values) for t in self.trials.values()}
        fresh = [a for a in architectures if _key(a) not in tried] or architectures
        if self.draws_in_time and self.plan.left() is not None:
            fresh = ([a for a in fresh if self.plan.in_time(a)]
                     or [min(fresh, key=self.plan.work)])  # none fits: the cheapest, refused
        rng = random.Random(self.seed * 1_000_003 + seeds.peek())
        for _ in range(self.collisions + 10 * len(architectures)):
            seeds.advance()
            network = rng.choice(fresh)
            hps = kt.HyperParameters()
            hps.merge(self.hyperparameters.space)  # (at their defaults)
            hps.values.update(network)
            for hp in self.hyperparameters.space:
                if hp.name not in ARCHITECTURE_NAMES and hps.is_active(hp):
                    hps.values[hp.name] = hp.random_sample(seeds.peek())
                    seeds.advance()
            values = {k: v for k, v in hps.values.items()
                      if k not in ARCHITECTURE_NAMES or k in network}
            if not self.tried(values):
                return values
        return None

    def tried(self, values):
        """Whether a trial of the search has these values already."""
        key = _values_key(values)
        return any(_values_key(t.hyperparameters.values) == key for t in self.trials.values())

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
    Gaussian process then proposes one that cannot train, or in the time
    left, or a point tried already (keras-tuner would train it again), it is
    asked again (up to `attempts` times) before the point is let through.
    """

    attempts = 100

    def populate_space(self, trial_id):
        for _ in range(self.attempts):
            proposal = super().populate_space(trial_id)
            if (proposal.get("status") != kt.engine.trial.TrialStatus.RUNNING
                    or (self.plan.is_trainable(proposal["values"])
                        and self.plan.in_time(proposal["values"])
                        and not self.tried(proposal["values"]))):
                return proposal
            self.began.pop(trial_id, None)
        return proposal


class HyperbandOracle(_PlannedOracle, PlannedBrackets, kt.oracles.HyperbandOracle):
    """keras-tuner's Hyperband whose brackets start from trainable networks only.

    A network is a duplicate only within the brackets under way: a later
    bracket may draw a network an earlier one tried, at its own epochs (in
    keras-tuner's own Hyperband a small space runs out after the first
    bracket and ends the search), and a bracket asks for at most as many
    networks as the space can train.
    """

    draws_in_time = False

    def bracket_limit(self):
        """A bracket asks for at most as many networks as the plan can train."""
        return len(self.plan.architectures)

    def tried(self, values):
        key = _values_key(values)
        for trial_id in self.bracket_trial_ids():
            trial = self.trials.get(trial_id)
            if trial is not None and _values_key(trial.hyperparameters.values) == key:
                return True
        return False

    def _forget(self, trial_id):
        self.drop_from_brackets(trial_id)


class _Grid(kt.Oracle):
    def _grid(self):
        grid = [dict(a) for a in self.plan.architectures]
        for hp in self.hyperparameters.space:
            if hp.name not in ARCHITECTURE_NAMES:
                grid = [{**v, hp.name: choice} for v in grid for choice in hp.values]
        return grid

    def populate_space(self, trial_id):
        ongoing = {_values_key(t.hyperparameters.values) for t in self.ongoing_trials.values()}
        for values in self._grid():
            if not self.tried(values) and _values_key(values) not in ongoing:
                return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": values}
        if self.ongoing_trials:
            return {"status": kt.engine.trial.TrialStatus.IDLE, "values": None}
        return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}


class GridOracle(_PlannedOracle, _Grid):
    """Every trainable network in turn, in the space's order (times the choices
    of the other hyperparameters, which must then be discrete)."""


class _PassesTrialIds:
    """Hands each trial's id to the hypermodel's `fit` (its run directory's name), and
    tells the hypermodel a trial begins (it counts the trial's executions, its seeds)."""

    def run_trial(self, trial, *args, **kwargs):
        self.hypermodel.begin_trial()
        return super().run_trial(trial, *args, trial_id=trial.trial_id, **kwargs)


class Tuner(_PassesTrialIds, kt.Tuner):
    """`keras_tuner.Tuner` with the trial ids and executions passed on."""


class HyperbandTuner(_PassesTrialIds, kt.Hyperband):
    """`keras_tuner.Hyperband` with kres's oracle, the trial ids and executions passed on."""

    def __init__(self, hypermodel, *, plan, max_epochs, factor, objective, seed,
                 max_consecutive_failed_trials, **kwargs):
        oracle = HyperbandOracle(plan=plan, objective=objective, max_epochs=max_epochs,
                                 factor=factor, seed=seed,
                                 max_consecutive_failed_trials=max_consecutive_failed_trials)
        hyperband_tuner_init(self, oracle, hypermodel, **kwargs)
