"""What a search may try, and the keras-tuner oracles and tuners that keep to it.

A `Plan` lists a search space's networks that are valid and within the
compute budget, and keeps the time budget; the oracles (random, Hyperband,
Bayesian optimisation, grid) subclass keras-tuner's through its extension
points (`populate_space`, `_random_values`, `end_trial`) so that they draw
from the plan only and start no trial that cannot finish; the tuners hand
each trial's id and execution (seed) to `kres.tuning.spaces.ResidualHyperModel`.
`kres.tuning` assembles them into a search.
"""

import random
import time

import keras_tuner as kt

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


class _PlannedOracle:
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

    def __init__(self, *args, plan, **kwargs):
        super().__init__(*args, **kwargs)
        self.plan = plan
        self.began = {}

    def _random_values(self):
        architectures = self.plan.architectures
        tried = {_key(t.hyperparameters.values) for t in self.trials.values()}
        fresh = [a for a in architectures if _key(a) not in tried] or architectures
        if self.draws_in_time and self.plan.left() is not None:
            fresh = ([a for a in fresh if self.plan.in_time(a)]
                     or [min(fresh, key=self.plan.work)])  # none fits: the cheapest, refused
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
                    or (self.plan.is_trainable(proposal["values"])
                        and self.plan.in_time(proposal["values"]))):
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

    draws_in_time = False

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
