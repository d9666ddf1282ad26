"""Search over depth and cardinality: a real search, resume after a kill, the compute
budget, and the errors raised before any trial (a chief with two workers, with
``-m slow``, and the Hyperband and Bayesian tuners, run through the command line in
test_commands.py)."""

import csv
import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import kres
from kres import data as datasets
from kres.tuning import oracles, spaces
from kres.tuning import run as tuning

FAST = {"batch_size": 32, "augment": "none"}


def _arrays():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (96, 8, 8, 1), dtype=np.uint8)
    y = (x.mean(axis=(1, 2, 3)) > 127).astype(int)
    return datasets.from_arrays(x, y, x[:32], y[:32], num_classes=2, val_size=32)


def _trials(out_dir):
    with open(os.path.join(out_dir, "trials.csv")) as f:
        return list(csv.DictReader(f))


# Three ResNeXt trials on real data (37 s); real searches on Fashion-MNIST stay in the
# default suite through test_commands' distributed search, the report's files through
# the tests below.
@pytest.mark.slow
def test_real_search_writes_the_report(fashion_mnist_quick_dir, tmp_path):
    config = tuning.SearchConfig(
        "resnext-cifar", "fashion_mnist", tuner="random", max_trials=3, max_epochs=1,
        depths=(11, 20), cardinalities=(1, 4), widths_per_group=(4,), subset=256,
        val_size=128, recipe_overrides={"batch_size": 64, "augment": "none"},
        data_dir=fashion_mnist_quick_dir)
    out = str(tmp_path / "search")
    rows = tuning.search(config, out)
    assert len(rows) == 3 and all(r["status"] == "COMPLETED" for r in rows)
    assert len({r["depths"] for r in rows}) > 1 and len({r["cardinality"] for r in rows}) > 1
    for r in rows:
        assert r["epochs"] == 1
        # The sizes reported are those of the network of the trial's hyperparameters.
        import kres

        depth = {"11": (1, 1, 1), "20": (2, 2, 2)}[r["depths"]]
        network = kres.build_model("resnext29_32x4d", depths=depth, classes=10,
                                   cardinality=r["cardinality"],
                                   width_per_group=r["width_per_group"],
                                   input_shape=(28, 28, 1))
        assert r["params"] == kres.count_params(network)
        assert r["mmacs"] == round(kres.count_macs(network) / 1e6, 1)
        assert r["width_per_group"] == (4 if r["cardinality"] > 1 else 64)
    assert [r["trial_id"] for r in _trials(out)] == [r["trial_id"] for r in rows]
    assert "| trial_id |" in open(os.path.join(out, "trials.md")).read()
    assert open(os.path.join(out, "accuracy.png"), "rb").read(4) == b"\x89PNG"
    with open(os.path.join(out, "best.json")) as f:
        assert json.load(f)["trial_id"] == rows[0]["trial_id"]
    import keras

    best = keras.saving.load_model(os.path.join(out, "best.keras"), safe_mode=True)
    assert best.input_shape == (None, 28, 28, 1)


SEARCH = textwrap.dedent("""
    import os, sys
    import numpy as np
    from kres import tuning
    from kres import data as datasets
    from kres.tuning import oracles
    from kres.tuning import spaces

    out, mode = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (96, 8, 8, 1), dtype=np.uint8)
    y = (x.mean(axis=(1, 2, 3)) > 127).astype(int)
    arrays = datasets.from_arrays(x, y, x[:32], y[:32], num_classes=2, val_size=32)
    config = tuning.SearchConfig("cifar-resnet", "arrays", tuner="random", max_trials=4,
                                 max_epochs=1, depths=(8, 14, 20, 32),
                                 recipe_overrides={"batch_size": 32, "augment": "none"})
    if mode == "kill-in-second-trial":
        fit, calls = spaces.fit, []
        def dying_fit(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                os._exit(7)  # killed mid-search: no cleanup, no report
            return fit(*args, **kwargs)
        spaces.fit = dying_fit
    rows = tuning.search(config, out, data=arrays)
    print("ROWS", len(rows))
""")



def _python(script, *args, env=None):
    return subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})


def test_killed_search_resumes_without_rerunning_trials(tmp_path):
    out = str(tmp_path / "search")
    first = _python(SEARCH, out, "kill-in-second-trial")
    _, err = first.communicate(timeout=600)
    assert first.returncode == 7, err[-2000:]
    done = os.path.join(out, "project", "trial_0", "run", "trial.json")
    stamp = os.path.getmtime(done)
    second = _python(SEARCH, out, "normal")
    stdout, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-2000:]
    assert "ROWS 4" in stdout
    rows = _trials(out)
    assert sorted(r["trial_id"] for r in rows) == ["0", "1", "2", "3"]
    assert all(r["status"] == "COMPLETED" for r in rows)
    assert os.path.getmtime(done) == stamp  # the completed trial was not run again


# keras-tuner builds the default point while creating the tuner: an over-budget
# default (56 first) must not end the search before it starts. ResNet-8 and -14
# fit in 2 MMACs at 8x8; ResNet-56 does not.
# (Bayesian optimisation: test_bayesian_optimisation_proposes_past_its_random_points...)
@pytest.mark.parametrize("tuner, depths", [
    ("grid", (56, 8, 14)), ("grid", (8, 14, 56)), ("random", (56, 8, 14)),
    pytest.param("hyperband", (56, 8, 14), marks=pytest.mark.slow)])  # 26 s: room in CI
def test_no_tuner_spends_a_trial_on_a_point_over_budget(tmp_path, tuner, depths):
    config = tuning.SearchConfig("cifar-resnet", "arrays", tuner=tuner, max_trials=4,
                                 max_epochs=3 if tuner == "hyperband" else 1, depths=depths,
                                 budget_mmacs=2.0, recipe_overrides=FAST)
    out = str(tmp_path / "search")
    rows = tuning.search(config, out, data=_arrays())
    assert rows and all(r["status"] == "COMPLETED" for r in rows), rows
    assert {r["depths"] for r in rows} == {"8", "14"}
    if tuner in ("grid", "random", "bayesian"):
        # Both trainable networks once, then the search ends: nothing else is left.
        assert sorted(r["depths"] for r in rows) == ["14", "8"]
    else:
        # Every bracket ran (2 of 3 epochs: bracket 1's 1-epoch trials and their
        # continuation, bracket 0's 3-epoch trials), each drawing from the two networks.
        brackets = set()
        for row in rows:
            with open(os.path.join(spaces.trial_run_dir(out, row["trial_id"]), "trial.json")) as f:
                brackets.add(json.load(f)["hyperparameters"]["tuner/bracket"])
        assert brackets == {0, 1}
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    assert summary["trainable_networks"] == 2 and summary["networks_ruled_out"] == 1
    assert "2 networks of the space could train, 1 were left out" in \
        open(os.path.join(out, "trials.md")).read()


@pytest.mark.slow  # 30 s: room in CI
def test_bayesian_optimisation_proposes_past_its_random_points_and_asks_again(
        tmp_path, monkeypatch):
    """Past keras-tuner's random initial points (3 per hyperparameter: 6 here) the
    Gaussian process proposes; a proposal of a network over the budget (depth 20
    and up: 2.5 MMACs and more at 8x8) or of a point tried already is asked again,
    so every trial is a new, trainable point. The space's default point (its first
    depth, which keras-tuner builds while creating the tuner) is over the budget."""
    import keras_tuner as kt

    asked = []  # (trials completed, proposal), each time the oracle is asked
    real = kt.oracles.BayesianOptimizationOracle.populate_space

    def populate_space(self, trial_id):  # keras-tuner's own, its answers noted
        done = sum(t.status == "COMPLETED" for t in self.trials.values())
        proposal = real(self, trial_id)
        asked.append((done, dict(proposal.get("values") or {})))
        return proposal

    monkeypatch.setattr(kt.oracles.BayesianOptimizationOracle, "populate_space", populate_space)
    config = tuning.SearchConfig("cifar-resnet", "arrays", tuner="bayesian", max_trials=7,
                                 max_epochs=1, depths=(56, 44, 32, 20, 14, 8),
                                 batch_sizes=(16, 24, 32, 48), budget_mmacs=2.0,
                                 recipe_overrides=FAST)
    rows = tuning.search(config, str(tmp_path / "search"), data=_arrays())
    points = [(r["depths"], int(r["batch_size"])) for r in rows]
    assert len(points) == 7 and len(set(points)) == 7, points  # new points only
    assert {depth for depth, _ in points} <= {"8", "14"}  # trainable only
    proposed = [(values["depths"], values["batch_size"]) for done, values in asked if done >= 6]
    assert proposed  # the Gaussian process proposed the last trial
    asked_again = [p for p in proposed if p[0] not in ("8", "14")
                   or proposed.count(p) > 1 or p in points[:6]]
    assert asked_again  # seen on this search: an over-budget or repeated proposal


def test_the_plan_rules_out_what_the_budget_does_without_building_it(tmp_path):
    config = tuning.SearchConfig("resnext-cifar", "arrays", depths=(11, 20),
                                 cardinalities=(1, 2, 4), widths_per_group=(4, 16, 64),
                                 budget_mmacs=10.0)
    space = spaces.get_space(config)
    hypermodel = spaces.ResidualHyperModel(config, space, _arrays(), 8, 1, str(tmp_path))
    plan = tuning.Plan(config, space, hypermodel)
    built = len(hypermodel.costs)
    every = spaces.architectures(space)
    assert len(every) == 2 * (1 + 2 * 3)

    def cost(values):
        hp = tuning.kt.HyperParameters()
        hp.values = dict(values)
        return hypermodel.cost(hypermodel.overrides(hp))

    # The same networks as costing every point, in the space's order ...
    within = [v for v in every if cost(v)[0] <= 10e6]
    assert plan.architectures == within and 0 < len(within) < len(every)
    # ... with fewer networks built: those above an over-budget one were not.
    assert built < len(hypermodel.costs) == len(every)


def test_the_time_budget_starts_no_trial_that_cannot_finish(tmp_path):
    config = tuning.SearchConfig("cifar-resnet", "arrays", depths=(8, 14), max_epochs=2,
                                 time_budget=1.0, executions_per_trial=2,
                                 recipe_overrides=FAST)
    space = spaces.get_space(config)
    hypermodel = spaces.ResidualHyperModel(config, space, _arrays(), 8, 1, str(tmp_path))
    plan = tuning.Plan(config, space, hypermodel)
    resnet8, resnet14 = {"depths": "8"}, {"depths": "14"}
    assert plan.fits(resnet14) and plan.estimate(resnet14) is None  # nothing measured yet
    plan.record(resnet8, 12.0)  # 2 epochs x 2 seeds of ResNet-8 took 12 s
    macs8, macs14 = (hypermodel.cost({"depths": (n,) * 3})[0] for n in (1, 2))
    assert plan.estimate(resnet14) == pytest.approx(12.0 * macs14 / macs8)
    assert plan.estimate({**resnet8, "tuner/epochs": 3, "tuner/initial_epoch": 2}) == \
        pytest.approx(6.0)  # a Hyperband continuation trains 1 epoch of the 2
    plan.began -= 60 - 20  # 20 s left
    assert plan.fits(resnet8) and plan.stopped is None
    assert not plan.fits(resnet14)
    assert "time budget: 1 min" in plan.stopped and "depths 14" in plan.stopped
    # Random search (and Bayesian optimisation) then draw what fits the time left,
    # and, when nothing does, the cheapest network, which the check refuses.
    oracle = oracles.RandomOracle(plan=plan, objective=tuning.kt.Objective("val_accuracy", "max"),
                                  max_trials=5, seed=0)
    hp = tuning.kt.HyperParameters()
    hypermodel.overrides(hp)
    oracle.hyperparameters = hp
    assert {oracle._random_values()["depths"] for _ in range(10)} == {"8"}
    plan.began -= 19  # 1 s left
    assert {oracle._random_values()["depths"] for _ in range(10)} == {"8"}
    assert not plan.fits(resnet8)
    # In a real search: a budget already spent starts no trial, and says so.
    config = dataclasses.replace(config, time_budget=1e-6)
    out = str(tmp_path / "search")
    assert tuning.search(config, out, data=_arrays()) == []
    with open(os.path.join(out, "summary.json")) as f:
        assert "time budget" in json.load(f)["stopped"]


@pytest.mark.parametrize("tuner", ["random", "hyperband"])
def test_a_real_search_stops_part_way_at_its_time_budget(tmp_path, tuner):
    """Trials of ResNet-8 with their own learning rates, weight decays and label
    smoothing (never exhausted) for 0.25 min: the search stops on its own after
    one or more trials, saying why, with its time within the budget."""
    import time

    config = tuning.SearchConfig("cifar-resnet", "arrays", tuner=tuner, depths=(8,),
                                 tune_training=True, max_trials=200, time_budget=0.25,
                                 max_epochs=9 if tuner == "hyperband" else 1,
                                 recipe_overrides=FAST)
    out = str(tmp_path / "search")
    start = time.monotonic()
    rows = tuning.search(config, out, data=_arrays())
    seconds = time.monotonic() - start
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    # At least one trial: a loaded machine may fit only one in the 15 s (seen with
    # a training run beside the suite); stopping after it is still a stop part way.
    assert 1 <= len(rows) < 200 and all(r["status"] == "COMPLETED" for r in rows)
    assert (summary["stopped"] or "").startswith("time budget: 0.25 min"), (summary, rows)
    # The search's own clock: trials start when their estimated time fits the budget,
    # and a loaded machine may run the last one a little slower than estimated
    # (0.26 min seen in CI).
    assert summary["minutes"] <= 0.3
    trials = 0.0
    for row in rows:
        with open(os.path.join(spaces.trial_run_dir(out, row["trial_id"]), "trial.json")) as f:
            trials += json.load(f)["seconds"]
    assert trials <= 15 and seconds < 15 + 30  # the trials in it; setup and report after


def test_time_estimates_keep_grouped_and_plain_networks_apart(tmp_path):
    # Grouped convolutions cost the CPU more per MAC: a grouped network's time is
    # estimated from grouped trials, when there are some.
    config = tuning.SearchConfig("resnext-cifar", "arrays", depths=(11,), cardinalities=(1, 4),
                                 widths_per_group=(16,), max_epochs=2, time_budget=10.0,
                                 model_overrides={"widths": (16, 32, 64), "stem_width": 16})
    space = spaces.get_space(config)
    plan = tuning.Plan(config, space,
                       spaces.ResidualHyperModel(config, space, _arrays(), 8, 1, str(tmp_path)))
    plain, grouped = {"depths": "11", "cardinality": 1}, \
        {"depths": "11", "cardinality": 4, "width_per_group": 16}
    plan.record(plain, 10.0)
    pooled = 10.0 / plan.work(plain)
    assert plan.estimate(grouped) == pytest.approx(pooled * plan.work(grouped))
    plan.record(grouped, 60.0)
    assert plan.estimate(grouped) == pytest.approx(60.0)
    assert plan.estimate(plain) == pytest.approx(10.0)


@pytest.mark.slow  # 15 s: room in CI
def test_seeds_per_configuration_and_their_spread(tmp_path):
    config = tuning.SearchConfig("cifar-resnet", "arrays", tuner="grid", depths=(8, 14),
                                 max_epochs=2, executions_per_trial=2, seed=3,
                                 recipe_overrides=FAST)
    out = str(tmp_path / "search")
    rows = tuning.search(config, out, data=_arrays())
    assert len(rows) == 2
    for row in rows:
        infos = [json.load(open(os.path.join(spaces.trial_run_dir(out, row["trial_id"], k),
                                             "trial.json"))) for k in (0, 1)]
        assert [i["seed"] for i in infos] == [3, 4] and [i["execution"] for i in infos] == [0, 1]
        scores = [i["best_val_accuracy"] for i in infos]
        # keras-tuner's score of the trial is the mean of its seeds' best epochs.
        assert row["best_val_accuracy"] == pytest.approx(np.mean(scores))
        assert row["seeds"] == 2
        assert (row["val_min"], row["val_max"]) == (min(scores), max(scores))
        assert row["val_sd"] == pytest.approx(np.std(scores, ddof=1))
        # The seeds' histories differ (different initial weights and batch order).
        histories = [open(os.path.join(spaces.trial_run_dir(out, row["trial_id"], k),
                                       "history.csv")).read() for k in (0, 1)]
        assert histories[0] != histories[1]
    assert "Seeds per configuration: 2" in open(os.path.join(out, "trials.md")).read()


def test_a_trials_schedule_spans_the_epochs_it_gets():
    config = tuning.SearchConfig("cifar-resnet", "arrays", recipe="fast-cpu", max_epochs=9)
    space = spaces.get_space(config)
    hypermodel = spaces.ResidualHyperModel(config, space, _arrays(), 8, 1, "/nonexistent")
    hp = tuning.kt.HyperParameters()
    hp.values = {"depths": "8"}
    recipe = hypermodel.recipe(hp)  # fast-cpu: 2 warmup epochs of 20
    assert (recipe.epochs, recipe.warmup_epochs) == (9, pytest.approx(0.9))
    hp.values = {"depths": "8", "tuner/epochs": 1, "tuner/initial_epoch": 0}
    recipe = hypermodel.recipe(hp)
    assert (recipe.epochs, recipe.warmup_epochs) == (1, pytest.approx(0.1))


def test_equal_complexity_widths():
    # The rule keeps the first stage's template block at ResNet's parameters; the
    # whole networks of Table 2's cardinalities then stay within 10% of
    # cardinality 1's MACs (ResNeXt-50 8x14d: 4.27 GMACs against 4.09).
    config = tuning.SearchConfig("resnext-cifar", "arrays", equal_complexity=True)
    space = spaces.get_space(config)
    hypermodel = spaces.ResidualHyperModel(config, space, _arrays(), 32, 3, "/nonexistent")
    reference, _ = hypermodel.cost({"depths": (1, 1, 1), "cardinality": 1,
                                    "width_per_group": 64})

    def template(c, d):  # the template block's parameters at 256 channels
        return c * (256 * d + 9 * d * d + d * 256)

    for cardinality in (2, 4, 8):
        width = hypermodel.equal_complexity_width(cardinality)
        for neighbour in (width - 1, width + 1):
            assert abs(template(cardinality, neighbour) - 69_632) > \
                abs(template(cardinality, width) - 69_632)
        macs, _ = hypermodel.cost({"depths": (1, 1, 1), "cardinality": cardinality,
                                   "width_per_group": width})
        assert abs(np.log(macs / reference)) < np.log(1.10), (cardinality, width)


def test_equal_complexity_gives_the_resnext_papers_widths():
    # Xie et al. 2017, Table 2: ResNeXt-50 at ResNet-50's complexity is 1x64d, 2x40d,
    # 4x24d, 8x14d and 32x4d.
    config = tuning.SearchConfig("resnext-imagenet", "arrays", equal_complexity=True)
    hypermodel = spaces.ResidualHyperModel(config, spaces.get_space(config), _arrays(), 64, 3,
                                           "/nonexistent")
    widths = {c: hypermodel.equal_complexity_width(c) for c in (1, 2, 4, 8, 32)}
    assert widths == {1: 64, 2: 40, 4: 24, 8: 14, 32: 4}


def test_model_overrides_narrow_every_network_of_the_space(tmp_path):
    # ResNeXts at the CIFAR ResNets' width (He et al. 2016's bottleneck ResNet-164:
    # 16, 32, 64 planes); given as JSON gives them (lists), as search.json keeps them.
    config = tuning.SearchConfig("resnext-cifar", "arrays", depths=(11, 20),
                                 cardinalities=(1, 2, 4), widths_per_group=(16, 32),
                                 model_overrides={"widths": [16, 32, 64], "stem_width": 16})
    space = spaces.get_space(config)
    assert space.fixed == {"widths": (16, 32, 64), "stem_width": 16}
    hypermodel = spaces.ResidualHyperModel(config, space, _arrays(), 8, 1, str(tmp_path))
    plan = tuning.Plan(config, space, hypermodel)
    assert len(plan.architectures) == 2 * (1 + 2 * 2)
    hp = tuning.kt.HyperParameters()
    hp.values = {"depths": "20", "cardinality": 4, "width_per_group": 32}
    model = hypermodel.build(hp)
    assert model.get_layer("conv1_conv").filters == 16
    assert model.output_shape == (None, 2)
    narrow = kres.build_model("resnext29_32x4d", classes=2, input_shape=(8, 8, 1),
                              depths=(2, 2, 2), cardinality=4, width_per_group=32,
                              widths=(16, 32, 64), stem_width=16)
    assert hypermodel.cost(hypermodel.overrides(hp)) == (kres.count_macs(narrow),
                                                         kres.count_params(narrow))
    # Equal complexity at 16 planes: the template block of 64 channels out, 4,352
    # parameters at cardinality 1; 2 groups of 10 channels (4,360), 4 of 6 (4,368).
    equal = dataclasses.replace(config, equal_complexity=True)
    hypermodel = spaces.ResidualHyperModel(equal, spaces.get_space(equal), _arrays(), 8, 1,
                                           str(tmp_path))
    assert [hypermodel.equal_complexity_width(c) for c in (1, 2, 4)] == [64, 40, 24]


@pytest.mark.parametrize("kwargs, message", [
    ({"space": "resnext"}, r"Did you mean 'resnext-cifar'"),
    ({"model_overrides": {"cardinality": 4}}, r"model_overrides fixes cardinality, which "
                                              r"the search chooses"),
    ({"model_overrides": {"widht": (16, 32, 64)}}, r"Did you mean 'widths'"),
    ({"model_overrides": ["widths"]}, r"Received: model_overrides=\['widths'\]"),
    ({"tuner": "hyperbnd"}, r"Did you mean 'hyperband'"),
    ({"cardinalities": ()}, r"cardinalities must be a non-empty"),
    ({"space": "cifar-resnet", "cardinalities": (4,)}, r"does not search cardinality"),
    ({"depths": (30,)}, r"depths must be a non-empty selection"),
    ({"budget_mmacs": 0.001}, r"No point of the search space meets the budget"),
    # The checks of kres train, shared.
    ({"recipe_overrides": {"batch_size": 128}},
     r"batch_size is larger than the 64 training examples. Received: batch_size=128"),
    ({"batch_sizes": (16, 100)}, r"Received: batch_size=100"),
    ({"space": "resnext-imagenet"}, r"image_size is too small for resnext50_32x4d"),
    ({"max_trials": True}, r"max_trials must be a positive integer. Received: max_trials=True"),
    ({"budget_mmacs": -1}, r"Received: budget_mmacs=-1"),
    ({"space": "wrn-cifar", "equal_complexity": True}, r"does not search"),
    ({"tuner": "grid", "tune_training": True}, r"Grid search needs discrete choices"),
    ({"time_budget": 0}, r"Received: time_budget=0"),
    ({"executions_per_trial": 0}, r"Received: executions_per_trial=0"),
])
def test_bad_searches_fail_before_any_trial(kwargs, message, tmp_path):
    # Most fail when the config is made, the budget when the search starts.
    with pytest.raises(ValueError, match=message):
        config = tuning.SearchConfig(**{"space": "resnext-cifar", "dataset": "arrays",
                                        "max_trials": 1, "max_epochs": 1,
                                        "recipe_overrides": FAST, **kwargs})
        tuning.search(config, str(tmp_path / "s"), data=_arrays())
    assert not (tmp_path / "s" / "project").exists()


def test_resume_refuses_another_search(tmp_path):
    config = tuning.SearchConfig("cifar-resnet", "arrays", max_trials=1)
    os.makedirs(tmp_path / "s")
    (tmp_path / "s" / "search.json").write_text(json.dumps(config.to_json()))
    other = tuning.SearchConfig("cifar-resnet", "arrays", max_trials=2)
    with pytest.raises(ValueError, match=r"another configuration \(differs in max_trials\)"):
        tuning.search(other, str(tmp_path / "s"), data=_arrays())


def test_corrupted_tuner_state_names_the_project(tmp_path):
    config = tuning.SearchConfig("cifar-resnet", "arrays", tuner="grid", max_trials=1,
                                 max_epochs=1, depths=(8,), recipe_overrides=FAST)
    out = str(tmp_path / "search")
    tuning.search(config, out, data=_arrays())
    oracle = os.path.join(out, "project", "oracle.json")
    with open(oracle, "w") as f:
        f.write('{"ongoing_trials": ')  # a crash in the middle of a write
    with pytest.raises(ValueError, match=r"tuner state in .*project cannot be read"):
        tuning.search(config, out, data=_arrays())


def test_keras_tuner_is_as_kres_reaches_it_where_it_has_no_public_hook():
    # kres.tuning.keras_tuner_internals uses these private members of keras-tuner; this
    # test fails when an installed keras-tuner no longer has them as kres uses them.
    import inspect

    import keras_tuner as kt

    from kres.tuning import keras_tuner_internals as internals

    internals.check_keras_tuner_version()  # the installed keras-tuner is a tested one
    with pytest.raises(RuntimeError, match=r"tested with keras-tuner 1\.4\.x; this is keras-tuner "
                                           r"1\.5\.0.*KRES_ANY_KERAS_TUNER=1.*keras-tuner==1\.5\.0"):
        internals.check_keras_tuner_version("1.5.0", environ={})
    internals.check_keras_tuner_version("1.5.0", environ={"KRES_ANY_KERAS_TUNER": "1"})
    # Random search, Bayesian optimisation's first points and a new Hyperband bracket
    # draw through Oracle._random_values, seeded from the oracle's saved _seed_state.
    for caller in (kt.oracles.RandomSearchOracle.populate_space,
                   kt.oracles.BayesianOptimizationOracle._random_populate_space,
                   kt.oracles.HyperbandOracle._random_trial):
        assert "self._random_values()" in inspect.getsource(caller), caller
    assert list(inspect.signature(kt.Oracle._random_values).parameters) == ["self"]
    oracle = kt.oracles.RandomSearchOracle(objective="val_accuracy", max_trials=1, seed=3)
    assert oracle._seed_state == 3 and oracle.get_state()["seed_state"] == 3
    # Hyperband's bracket sizes, and its brackets: rounds of {"id": trial id} entries.
    assert list(inspect.signature(kt.oracles.HyperbandOracle._get_size).parameters) == [
        "self", "bracket_num", "round_num"]
    hyperband = inspect.getsource(kt.oracles.HyperbandOracle)
    assert 'rounds[0].append({"past_id": None, "id": trial_id})' in hyperband
    brackets = kt.oracles.HyperbandOracle(objective="val_accuracy", max_epochs=3)._brackets
    assert all(isinstance(b["rounds"], list) and all(isinstance(r, list) for r in b["rounds"])
               for b in brackets)
    # keras_tuner.Hyperband.__init__ makes its oracle and hands it on to Tuner.__init__.
    init = inspect.getsource(kt.Hyperband.__init__)
    assert "HyperbandOracle(" in init and "super().__init__(oracle=oracle" in init
