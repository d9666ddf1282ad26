"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates"): `lr_find`.

`lr_find` builds a run's model, data and optimizer exactly as `kres.train`
would (the same recipe, precision, augmentation, weight decay), then trains
it for at most `steps` batches while the optimizer's learning rate grows
exponentially from `start` to `end` (Keras's ``ExponentialDecay`` with a
rate above 1), recording each batch's loss. The losses are smoothed with a
bias-corrected exponential moving average; the test stops early once the
smoothed loss exceeds `divergence` times its lowest value, or is no longer
finite. The suggested rate is the one where the smoothed loss was lowest,
divided by 10 (Smith's "an order of magnitude below where the loss is
minimum"): fast, yet clear of the rates where training diverges. The model
is thrown away; only the curve and the suggestion are kept.

``kres lr-find --model M --dataset D`` writes ``lr_find.png`` and
``lr_find.json``; ``kres train --lr auto`` runs it in the run directory first
and trains with the suggestion.
"""

import collections
import dataclasses
import math
import os
import sys
import time

import keras
import numpy as np

from kres import checks, figures, rundir
from kres.training.optimizers import batch_scale

LrFinding = collections.namedtuple(
    "LrFinding", "rates losses smoothed suggestion learning_rate optimizer stopped")
LrFinding.__doc__ = """What the range test found.

Attributes:
    rates: the optimizer's learning rate at each batch (after the recipe's
        batch-size scaling, if it scales).
    losses: each batch's training loss.
    smoothed: the bias-corrected moving average of `losses`.
    suggestion: the suggested optimizer learning rate.
    learning_rate: the same as the recipe's ``learning_rate`` field (before
        its batch-size scaling): what ``--lr`` takes.
    optimizer: the recipe's optimizer.
    stopped: why the test ended: ``"diverged"``, ``"not finite"`` or
        ``"steps"`` (it reached `end` or `steps`).
"""

JSON_FILE, PLOT_FILE = "lr_find.json", "lr_find.png"


def lr_find(model, dataset=None, *, out=None, data=None, start=1e-6, end=10.0, steps=300,
            smoothing=0.95, divergence=4.0, verbose="auto", **settings):
    """Runs the learning-rate range test for a model, dataset and recipe.

    Args:
        model: a registry name, or a `kres.training.config.TrainConfig`.
        dataset: a dataset name or image folder.
        out: a folder for ``lr_find.json`` and ``lr_find.png`` (None: no files).
        data: a `kres.data.sources.Data` instead of loading the dataset.
        start: the first learning rate of the ramp (the optimizer's).
        end: the last one.
        steps: batches from `start` to `end` (the test may stop earlier).
        smoothing: the moving average's factor, in [0, 1).
        divergence: stop once the smoothed loss exceeds this many times its
            lowest value (> 1).
        verbose: ``"auto"`` (a progress bar in a terminal, a line at the end
            elsewhere), 0 or 1.
        **settings: `kres.train`'s settings (``recipe="small-cpu"``,
            ``optimizer="adamw"``, ``subset=5000``, ``seed=0``, ...).

    Returns:
        An `LrFinding`.

    Raises:
        ValueError: for invalid settings, before anything is loaded; for a
            multi-worker strategy; for a test that ends before the loss
            fell anywhere (no suggestion: lower `start`).

    Example, with a tiny model and random data (a real test takes minutes)::

        found = kres.lr_find("cifar_resnet20", "fashion_mnist", recipe="small-cpu",
                             out="runs/lr")
        found.learning_rate   # e.g. 0.2, what --lr takes
    """
    from kres.training.config import TrainConfig, as_config

    checks.number("start", start, low=0, low_open=True)
    checks.number("end", end, low=0, low_open=True)
    if not end > start:
        raise ValueError(f"end must be above start. Received: start={start!r}, end={end!r}")
    checks.integer("steps", steps, minimum=10)
    checks.rate("smoothing", smoothing)
    checks.number("divergence", divergence, low=1, low_open=True)
    config = as_config(TrainConfig, model, dataset, settings)
    # The ramp sweeps the rate: a rate given (or "auto") has no part in it.
    config = dataclasses.replace(config, recipe_overrides={
        k: v for k, v in config.recipe_overrides.items() if k != "learning_rate"})
    if config.strategy == "multi-worker":
        checks.fail("strategy", config.strategy,
                    "must not be multi-worker for the range test (run it on one machine)")
    from kres.training.devices import make_strategy, resolve_precision
    from kres.training.fit import pipelines
    from kres.training.preparation import build, prepare
    from kres.training.recipes import compile_model

    p = prepare(config, data)
    recipe = p.recipe
    strategy = make_strategy(config.strategy)
    network = build(config, p, strategy, resolve_precision(config.precision)[0])
    train_from, _ = pipelines(p.data, recipe, p.image_size, p.channels, seed=config.seed,
                              preprocessing=p.preprocessing, teacher=p.teacher)
    ramp = keras.optimizers.schedules.ExponentialDecay(
        initial_learning_rate=start, decay_steps=steps - 1, decay_rate=end / start)
    with strategy.scope():
        compile_model(network, recipe, steps_per_epoch=steps,
                      num_classes=p.data.spec.num_classes, jit_compile=config.jit_compile,
                      distilled=p.teacher is not None, learning_rate=ramp,
                      threshold=p.threshold)
    recorder = _Recorder(ramp, steps, smoothing, divergence, _verbose(verbose))
    network.fit(train_from(0), epochs=1, steps_per_epoch=steps, callbacks=[recorder],
                shuffle=False, verbose=0)
    recorder.finish()
    found = _suggest(recorder, recipe)
    if out is not None:
        write(found, out, title=f"{config.model} on {p.data.name}, recipe {config.recipe}")
    return found


class _Recorder(keras.callbacks.Callback):
    """Records each batch's rate and loss, smooths, and stops at divergence."""

    def __init__(self, ramp, steps, smoothing, divergence, progress):
        super().__init__()
        self.ramp, self.steps = ramp, steps
        self.smoothing, self.divergence = smoothing, divergence
        self.rates, self.losses, self.smoothed = [], [], []
        self.stopped, self._average, self._start = "steps", 0.0, time.monotonic()
        self._mean = 0.0
        self.bar = keras.utils.Progbar(steps, unit_name="batch") if progress else None

    def on_train_batch_end(self, batch, logs=None):
        # Keras logs the running mean of the epoch's batch losses (the batches
        # are all full): batch k's own loss is (k + 1) m_k - k m_(k-1).
        mean = float((logs or {}).get("loss", math.nan))
        loss = (batch + 1) * mean - batch * self._mean
        self._mean = mean
        self.rates.append(float(self.ramp(batch)))
        self.losses.append(loss)
        if not math.isfinite(loss):
            self.stopped, self.model.stop_training = "not finite", True
            return
        self._average = self.smoothing * self._average + (1 - self.smoothing) * loss
        smoothed = self._average / (1 - self.smoothing ** len(self.losses))
        self.smoothed.append(smoothed)
        if self.bar is not None:
            self.bar.update(len(self.losses), [("rate", self.rates[-1]), ("loss", smoothed)])
        if len(self.smoothed) > 10 and smoothed > self.divergence * min(self.smoothed):
            self.stopped, self.model.stop_training = "diverged", True

    def finish(self):
        if self.bar is not None:
            print(file=sys.stdout)
        self.seconds = time.monotonic() - self._start


def _verbose(verbose):
    if verbose not in ("auto", 0, 1):
        checks.fail("verbose", verbose, "must be 'auto', 0 or 1")
    return sys.stdout.isatty() if verbose == "auto" else bool(verbose)


def _suggest(recorder, recipe):
    smoothed = recorder.smoothed
    rates = recorder.rates[:len(smoothed)]
    # Where the smoothed loss is lowest, once it has fallen below where it began.
    lowest = int(np.argmin(smoothed)) if smoothed else 0
    if not smoothed or lowest == 0 or smoothed[lowest] >= smoothed[0]:
        raise ValueError(
            f"The range test found no rate at which the loss falls: it {recorder.stopped} at "
            f"rate {recorder.rates[-1]:.3g} after {len(recorder.losses)} batches. Start lower "
            f"(start=) or check the data. Received: start={recorder.rates[0]:.3g}")
    suggestion = rates[lowest] / 10
    scale = batch_scale(recipe)
    found = LrFinding(rates=recorder.rates, losses=recorder.losses, smoothed=smoothed,
                      suggestion=suggestion, learning_rate=suggestion / scale,
                      optimizer=recipe.optimizer, stopped=recorder.stopped)
    unscaled = (f" (learning_rate {found.learning_rate:.3g} before batch scaling)"
                if scale != 1 else "")
    print(f"kres lr-find: {recipe.optimizer}: lowest smoothed loss {smoothed[lowest]:.3g} at "
          f"rate {rates[lowest]:.3g}; suggested rate {suggestion:.3g}{unscaled}"
          f"; {len(recorder.losses)} batches in {recorder.seconds:.0f} s, ended: {found.stopped}")
    return found


def write(found, out, title=""):
    """Writes ``lr_find.json`` (the finding) and ``lr_find.png`` (the loss against
    the rate, log scale, the suggestion marked) in folder `out`."""
    os.makedirs(out, exist_ok=True)
    rundir.write_json(os.path.join(out, JSON_FILE), found._asdict())
    plt = figures.pyplot()

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(found.rates[:len(found.losses)], found.losses, color="0.75", lw=0.8,
            label="batch loss")
    ax.plot(found.rates[:len(found.smoothed)], found.smoothed, color="C0", lw=1.6,
            label="smoothed")
    ax.axvline(found.suggestion, color="C3", ls="--",
               label=f"suggested {found.suggestion:.3g}")
    ax.set_xscale("log")
    finite = [v for v in found.smoothed if math.isfinite(v)]
    if finite:  # the fall and the turn: the divergence would flatten them
        low = min(finite)
        ax.set_ylim(low - 0.1 * (finite[0] - low) - 0.01 * low,
                    min(max(finite), max(finite[0] * 1.25, low * 1.5)))
    ax.set_xlabel(f"learning rate ({found.optimizer})")
    ax.set_ylabel("training loss")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    figures.save(fig, os.path.join(out, PLOT_FILE), dpi=110)


def read(folder):
    """The `LrFinding` in ``folder/lr_find.json``, or None."""
    found = rundir.read_json(os.path.join(folder, JSON_FILE))
    return LrFinding(**found) if found else None


def with_found_rate(config, run_dir, data=None, verbose="auto"):
    """`config` with its ``learning_rate="auto"`` replaced by the range test's
    suggestion, found in `run_dir` (``lr_find.json``: a run started before is
    not tested again) or by running the test there first; `config` as it is
    otherwise."""
    if config.recipe_overrides.get("learning_rate") != "auto":
        return config
    found = read(run_dir)
    if found is None and os.path.isfile(os.path.join(run_dir, "config.json")):
        raise ValueError(f"The run in {run_dir} was started with a learning rate of its own (it "
                         f"has a config.json and no {JSON_FILE}): resume it as it was, or give "
                         f"another run directory. Received: run_dir={run_dir!r}, "
                         f"learning_rate='auto'")
    if found is None:
        test = dataclasses.replace(config, recipe_overrides=config.fixed_recipe_overrides())
        found = lr_find(test, data=data, out=run_dir, verbose=verbose)
    return dataclasses.replace(config, recipe_overrides={
        **config.recipe_overrides, "learning_rate": float(f"{found.learning_rate:.4g}")})
