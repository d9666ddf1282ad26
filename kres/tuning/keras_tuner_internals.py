"""What kres reaches in keras-tuner through its private members, in one place.

keras-tuner has public extension points for most of what kres's searches do
(an oracle's `populate_space` and `end_trial`, a tuner's `run_trial`, a
hypermodel's `build` and `fit`), and kres's oracles and tuners
(`kres.tuning.oracles`) use those. Three things have none:

- how random search, Bayesian optimisation's first points and a new
  Hyperband bracket draw a point: `Oracle._random_values`, with the oracle's
  `_seed_state` as the draws' seed (part of the oracle's saved state, so a
  resumed search draws on as it would have). kres draws from the search's
  plan instead (`DrawsFromPlan`);
- how many networks a Hyperband bracket asks for, and which trials its
  brackets hold: `HyperbandOracle._get_size` and `_brackets`
  (`PlannedBrackets`);
- a Hyperband tuner with another oracle: `keras_tuner.Hyperband.__init__`
  makes its own oracle and hands it to `keras_tuner.Tuner.__init__`, which
  `hyperband_tuner_init` calls directly with kres's.

These were read in keras-tuner 1.4 (`TESTED_KERAS_TUNER`);
`check_keras_tuner_version` refuses another version unless told to try it,
and ``tests/test_tune.py`` fails when an installed keras-tuner no longer has
them as kres uses them.
"""

import keras_tuner as kt

from kres import checks

TESTED_KERAS_TUNER = ("1.4",)
OVERRIDE = "KRES_ANY_KERAS_TUNER"


def check_keras_tuner_version(version=None, environ=None):
    """Raises unless keras-tuner is a version kres's searches were tested with (or overridden).

    Raises:
        RuntimeError: naming the version, the tested ones and the override.
    """
    checks.tested_version(
        "keras-tuner", version or kt.__version__, TESTED_KERAS_TUNER, OVERRIDE,
        environ=environ, relies_on="kres's searches extend keras-tuner where it has no "
                                   "public hook, as they were tested with")


class SeedState:
    """An oracle's seed state (keras-tuner's `_seed_state`): read and advance it."""

    def __init__(self, oracle):
        self.oracle = oracle

    def peek(self):
        """The current seed."""
        return self.oracle._seed_state

    def advance(self):
        """Moves to the next seed."""
        self.oracle._seed_state += 1


class DrawsFromPlan:
    """An oracle whose random draws are its `draw_values(seeds)` (see
    `kres.tuning.oracles`), with `seeds` a `SeedState` of the oracle."""

    def _random_values(self):  # keras-tuner's Oracle._random_values
        return self.draw_values(SeedState(self))


class PlannedBrackets:
    """A Hyperband oracle whose brackets ask for at most `bracket_limit()` networks."""

    def _get_size(self, bracket_num, round_num):  # keras-tuner's HyperbandOracle._get_size
        return min(super()._get_size(bracket_num, round_num), self.bracket_limit())

    def bracket_trial_ids(self):
        """The ids of the trials that started the brackets under way."""
        return [info["id"] for bracket in self._brackets for info in bracket["rounds"][0]]

    def drop_from_brackets(self, trial_id):
        """Removes a trial that will not run from the brackets' rounds."""
        for bracket in self._brackets:
            for round_info in bracket["rounds"]:
                round_info[:] = [info for info in round_info if info["id"] != trial_id]


def hyperband_tuner_init(tuner, oracle, hypermodel, **kwargs):
    """Initialises a `keras_tuner.Hyperband` subclass with `oracle` instead of the
    oracle `Hyperband.__init__` would make."""
    kt.Tuner.__init__(tuner, oracle=oracle, hypermodel=hypermodel, **kwargs)
