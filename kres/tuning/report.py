"""The report of a search: every trial in a table, a plot, the best model.

`write_report` reads keras-tuner's trials and each trial's ``trial.json``
(written by `kres.tuning.spaces.ResidualHyperModel.fit`) and writes, in the search
directory, ``trials.csv``, ``trials.md``, ``accuracy.png`` (validation
accuracy against depth, cardinality and MACs), and the best trial's
``best.keras`` and ``model.json``, ready for `kres export`, with ``best.json``.
"""

import csv
import json
import math
import os
import shutil
import statistics

from kres import checks, figures
from kres import rundir as runs
from kres.tuning.spaces import trial_run_dir

REPORT_COLUMNS = ("trial_id", "status", "depths", "cardinality", "width_per_group",
                  "widen_factor", "learning_rate", "weight_decay", "label_smoothing",
                  "batch_size", "params", "mmacs", "best_val_accuracy", "seeds", "val_sd",
                  "val_min", "val_max", "epochs", "seconds")


def _executions(out_dir, trial_id):
    """The ``trial.json`` of each of a trial's executions (seeds), in order."""
    infos = []
    while True:
        path = os.path.join(trial_run_dir(out_dir, trial_id, len(infos)), "trial.json")
        if not os.path.isfile(path):
            return infos
        infos.append(runs.read_json(path))


def write_report(out_dir, tuner, summary=None):
    """Writes trials.csv, trials.md, accuracy.png, best.keras and best.json.

    Args:
        out_dir: the search directory.
        tuner: the search's keras-tuner tuner.
        summary: what the search did with its time (`kres.tuning.oracles.Plan.summary`),
            written at the top of trials.md and to summary.json.

    Returns:
        The trial rows, best first.
    """
    rows = sorted((_row(out_dir, trial) for trial in tuner.oracle.trials.values()),
                  key=lambda r: -(r["best_val_accuracy"] or -1))
    with open(os.path.join(out_dir, "trials.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=REPORT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = _table(rows)
    if summary:
        lines = [summary_note(summary), ""] + lines
        runs.write_json(os.path.join(out_dir, "summary.json"), summary)
    with open(os.path.join(out_dir, "trials.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    plot_report(rows, os.path.join(out_dir, "accuracy.png"))
    done = [r for r in rows if r["best_val_accuracy"] is not None]
    if done:
        best = done[0]
        trial_dir = trial_run_dir(out_dir, best["trial_id"])
        # The best model with its description (the model carries its preprocessing).
        for name in ("best.keras", "model.json"):
            if os.path.isfile(os.path.join(trial_dir, name)):
                shutil.copyfile(os.path.join(trial_dir, name), os.path.join(out_dir, name))
        runs.write_json(os.path.join(out_dir, "best.json"),
                        json.loads(json.dumps(best, default=str)))
    return rows


def _row(out_dir, trial):
    """A trial's row of the report: its point, sizes, score over its seeds, time."""
    executions = _executions(out_dir, trial.trial_id)
    info = executions[0] if executions else {}
    scores = [e["best_val_accuracy"] for e in executions if "best_val_accuracy" in e]
    values = trial.hyperparameters.values
    overrides = info.get("overrides", {})
    return {
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
        "seeds": len(scores) or None,
        "val_sd": statistics.stdev(scores) if len(scores) > 1 else None,
        "val_min": min(scores) if len(scores) > 1 else None,
        "val_max": max(scores) if len(scores) > 1 else None,
        "epochs": info.get("epochs"),
        "seconds": (round(sum(e.get("seconds", 0) for e in executions), 1)
                    if executions else None),
        "message": (trial.message or "").strip().splitlines()[-1:] or [""],
    }


def _table(rows):
    """trials.md's lines: the columns any row fills, the failed trials, the noise note."""
    used = [c for c in REPORT_COLUMNS if any(r.get(c) not in (None, "") for r in rows)]
    lines = ["| " + " | ".join(used) + " |", "|" + "---|" * len(used)]

    def cell(column, value):
        if value is None:
            return ""
        if column in ("best_val_accuracy", "val_sd", "val_min", "val_max", "learning_rate",
                      "weight_decay"):
            return f"{float(value):.4g}"
        return str(value)

    for row in rows:
        lines.append("| " + " | ".join(cell(c, row.get(c)) for c in used) + " |")
    failed = [r for r in rows if r["status"] == "FAILED"]
    if failed:
        lines += ["", "Failed trials:"] + [f"- {r['trial_id']}: {r['message'][0]}"
                                           for r in failed]
    return lines + ["", noise_note(rows)]


def noise_note(rows):
    """What the ranking's noise is: the seeds' spread, when there are several."""
    spreads = [r["val_max"] - r["val_min"] for r in rows if r.get("val_max") is not None]
    done = [r["best_val_accuracy"] for r in rows if r["best_val_accuracy"] is not None]
    if not spreads:
        return ("One seed per configuration: the ranking has no measure of its noise "
                "(--executions-per-trial N trains each configuration with N seeds).")
    gap = (f"; the best two trials are {100 * (done[0] - done[1]):.2f} points apart"
           if len(done) > 1 else "")
    return (f"Seeds per configuration: {max(r['seeds'] or 0 for r in rows)}; the seeds of one "
            f"configuration span {100 * statistics.median(spreads):.2f} points of validation "
            f"accuracy (median over configurations), {100 * max(spreads):.2f} at most{gap}. "
            f"Trials closer than that spread are not ranked by this search.")


def summary_note(summary):
    """What the search did with its time, in one line."""
    budget = (f" of a {summary['time_budget']:g}-minute budget"
              if summary.get("time_budget") is not None else "")
    stopped = f"; stopped: {summary['stopped']}" if summary.get("stopped") else ""
    fixed = summary.get("model_overrides")
    fixed = ("; every network with " + ", ".join(f"{k}={checks.as_tuple(v)}"
                                                  for k, v in fixed.items())
             if fixed else "")
    return (f"Search: {summary['minutes']:.1f} minutes{budget}{fixed}; "
            f"{summary['trainable_networks']} networks of the space could train, "
            f"{summary['networks_ruled_out']} were left out (invalid or over the compute "
            f"budget){stopped}.")


def plot_report(rows, path):
    """Validation accuracy against depth, cardinality and MACs, one PNG."""
    done = [r for r in rows if r["best_val_accuracy"] is not None and r["mmacs"] is not None]
    if not done:
        return
    plt = figures.pyplot()
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
    axes[1].xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    axes[1].set_xlabel("cardinality")
    by_depth = axes[2].scatter([r["mmacs"] for r in done], accuracy, c=depth, cmap="plasma")
    axes[2].set_xscale("log")
    axes[2].xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes[2].xaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
    axes[2].set_xlabel("million multiply-accumulates")
    fig.colorbar(by_depth, ax=axes[2], label="depth (layers), middle and right")
    spread = [r for r in done if r.get("val_max") is not None]
    if spread:  # each configuration's seeds, lowest to highest
        for ax, x in zip(axes, ([int(r["depths"]) for r in spread],
                                [r["cardinality"] or 1 for r in spread],
                                [r["mmacs"] for r in spread]), strict=True):
            ax.vlines(x, [100 * r["val_min"] for r in spread],
                      [100 * r["val_max"] for r in spread], colors="0.4", linewidth=1)
    for ax in axes:
        ax.set_ylabel("best validation accuracy (%)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{len(done)} trials" + (" (bars: the range of each one's seeds; dots: their mean)"
                                         if spread else ""))
    figures.save(fig, path)
