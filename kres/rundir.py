"""Run directories: where a training run or a search keeps its files.

One writer for both `kres.training` and `kres.tuning`: the directory's name,
the saved configuration that a resume is checked against, the history rows,
the model's description for the export, JSON files written atomically, and
the plot of the curves.

    runs/<model>-<dataset>-<time>/
        config.json      the run's configuration (resume checks against it)
        model.json       the model's description: spec, input, preprocessing,
                         class names (a record: the model carries the last two)
        history.csv      one row per epoch (loss, accuracy, learning rate, time)
        best.keras       the best model by validation accuracy
        backup/          Keras BackupAndRestore state while a run is unfinished
        trained.json     the training's end, marked before the backup goes
        tensorboard/     TensorBoard logs
        curves.png       loss, error and learning rate per epoch
        results.json     test accuracy, size, speed
        report.json      the test split per class: precision, recall, F1, confusion
                         matrix, most confused pairs, most confident mistakes
        confusion.png    the confusion matrix; mistakes.png: those mistakes
"""

import csv
import datetime
import json
import math
import os

from kres import figures


def default_dir(*parts, root="runs"):
    """``<root>/<part>-<part>-...-<YYYYmmdd-HHMMSS>``; path-like parts give their last name.

    Example:

    >>> from kres.rundir import default_dir
    >>> default_dir("cifar_resnet20", "data/fashion_mnist/")  # doctest: +ELLIPSIS
    'runs/cifar_resnet20-fashion_mnist-...'
    """
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    names = [os.path.basename(os.path.normpath(str(p))) for p in parts]
    return os.path.join(root, "-".join([*names, stamp]))


def check_saved_config(directory, filename, config):
    """Whether `directory` holds `config` already (a run or search to resume).

    Call it before any work: a directory of another configuration fails at once.

    Returns:
        True if ``directory/filename`` holds the same config, False if absent.

    Raises:
        ValueError: if it holds another config: resuming would mix two.
    """
    path = os.path.join(directory, filename)
    if not os.path.isfile(path):
        return False
    with open(path) as f:
        saved = json.load(f)
    current = config.to_json()
    if saved != current:
        changed = sorted(k for k in saved.keys() | current.keys()
                         if saved.get(k) != current.get(k))
        raise ValueError(
            f"The directory {directory} belongs to another configuration (differs in "
            f"{', '.join(changed)}); resume it with its own configuration or use a new "
            f"directory. Received: {directory!r}"
        )
    return True


def write_config(directory, filename, config):
    """Writes ``config.to_json()`` as ``directory/filename`` (atomically)."""
    write_json(os.path.join(directory, filename), config.to_json())


def write_json(path, value):
    """Writes `value` as indented JSON, atomically: a crash leaves the old file or the new."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2)
    os.replace(tmp, path)


def read_json(path):
    """The JSON object in `path`, or ``{}`` when there is no such file."""
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def write_model_description(directory, *, model, spec, preprocessing, class_names, dataset):
    """Writes ``model.json``: the model's description, beside its file.

    A model kres trains carries its preprocessing and class names itself
    (`kres.layers.InputPreprocessing`); this record also names its spec and
    dataset, and gave the preprocessing of models trained before it did.

    Args:
        directory: the run directory.
        model: the registry name.
        spec: the resolved spec dataclass.
        preprocessing: the `kres.preprocessing.Preprocessing` of the input.
        class_names: a name per class.
        dataset: the training dataset's name.
    """
    import dataclasses

    write_json(os.path.join(directory, "model.json"), json.loads(json.dumps({
        "model": model, "spec": {"name": model, **dataclasses.asdict(spec)},
        "preprocessing": preprocessing.to_json(), "class_names": list(class_names),
        "dataset": dataset})))


def save_arrays(path, arrays):
    """Writes a list of arrays (a model's ``get_weights()``) to an ``.npz`` file, atomically."""
    import numpy as np

    tmp = f"{path}.tmp.npz"
    np.savez(tmp, *[np.asarray(a) for a in arrays])
    os.replace(tmp, path)


def load_arrays(path):
    """The list of arrays a `save_arrays` file holds, in order."""
    import numpy as np

    with np.load(path) as stored:
        return [stored[f"arr_{i}"] for i in range(len(stored.files))]


def read_history(path):
    """The rows of a ``history.csv`` (dicts), or ``[]`` when there is none."""
    if not os.path.isfile(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def trim_history(path, epochs):
    """Keeps the first `epochs` rows: the ones the backup's weights have seen."""
    rows = read_history(path)
    if len(rows) <= epochs:
        return rows
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows[:epochs])
    return rows[:epochs]


def backup_epoch(backup_dir):
    """The epoch a `keras.callbacks.BackupAndRestore` directory resumes at (0: none).

    As the callback decides it: where the latest weights file does not open
    (a kill while it was written), the copy made before it (``.bkp``) is the
    one restored, with its epoch.
    """
    path = os.path.join(backup_dir, "training_metadata.json")
    weights = os.path.join(backup_dir, "latest.weights.h5")
    if os.path.isfile(weights) and os.path.isfile(weights + ".bkp") and not _opens(weights):
        path += ".bkp"
    if not os.path.isfile(path):
        return 0
    with open(path) as f:
        return int(json.load(f)["epoch"])


def discard_torn_backup(backup_dir):
    """Removes a first backup that a kill cut short, so the run starts afresh.

    Keras's `BackupAndRestore` (``double_checkpoint``) copies the last backup
    aside before it writes the next, and restores the copy when the new
    weights file does not open; the first backup has no copy before it, and a
    kill while it is written leaves a weights file that does not open and
    nothing to fall back on (Keras would stop the resume on it).

    Returns:
        Whether a torn first backup was removed.
    """
    weights = os.path.join(backup_dir, "latest.weights.h5")
    if (not os.path.isfile(weights) or os.path.isfile(weights + ".bkp")
            or _opens(weights)):
        return False
    for name in ("latest.weights.h5", "training_metadata.json"):
        if os.path.isfile(path := os.path.join(backup_dir, name)):
            os.remove(path)
    return True


def _opens(h5_path):
    import h5py

    try:
        with h5py.File(h5_path, "r"):
            return True
    except OSError:
        return False


def plot_history(history, path, title=""):
    """Plots loss, accuracy and learning rate per epoch to a PNG.

    Args:
        history: rows of ``history.csv`` (dicts); with a weight average's
            ``raw_val_*`` columns, the raw weights' validation curves too.
        path: the PNG to write.
        title: the figure's title.

    Returns:
        The labels of the loss and error curves drawn (none for an empty history).
    """
    if not history:
        return []
    plt = figures.pyplot()

    epochs = [int(r["epoch"]) + 1 for r in history]

    def column(key):
        return [float(r[key]) if r.get(key) not in (None, "") else math.nan for r in history]

    from matplotlib.ticker import MaxNLocator

    # A multi-label run's headline metric is its PR AUC (no accuracy column).
    metric = "accuracy" if "accuracy" in history[0] else "pr_auc"
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    # A run with a weight average validates it (val_*) and its raw weights (raw_val_*).
    averaged = any(r.get("raw_val_loss") not in (None, "") for r in history)
    val = "validation, weight average" if averaged else "validation"
    lines = [("train (running mean)", ""), (val, "val_")]
    if averaged:
        lines.append(("validation, raw weights", "raw_val_"))
    for label, prefix in lines:
        axes[0].plot(epochs, column(prefix + "loss"), "o-", label=label)
        axes[1].plot(epochs, [100 * (1 - a) for a in column(prefix + metric)], "o-",
                     label=label)
    rates = column("learning_rate")
    axes[2].plot(epochs, rates, "o")
    error = "error (%)" if metric == "accuracy" else "1 - PR AUC (%)"
    for ax, name in zip(axes, ("loss", error, "learning rate at the epoch's end")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend()
    axes[1].legend()
    if any(rate > 0 for rate in rates):  # a schedule's zero at the end is left off the log scale
        axes[2].set_yscale("log")
    fig.suptitle(title)
    figures.save(fig, path)
    return [label for label, _ in lines]
