"""What a classifier gets right and wrong, class by class.

`predict` runs a model over a split once and keeps the most confident
mistakes with their images; `classification_report` turns labels and
predictions into per-class precision, recall, F1 and support, their macro and
weighted averages, the confusion matrix and the most confused pairs (the
numbers scikit-learn's ``classification_report`` and ``confusion_matrix``
give, a class without predictions or examples scoring 0); `write_report`
writes them as ``report.json``, ``confusion.png`` and ``mistakes.png``.
`kres.evaluate(..., report=True)`, ``kres evaluate --report`` and the end of
every ``kres train`` use them.
"""

import heapq
import os

import numpy as np

from kres import rundir
from kres.training.report_figures import plot_classes, plot_confusion, plot_mistakes

REPORT = "report.json"
CONFUSION_PNG = "confusion.png"
MISTAKES_PNG = "mistakes.png"
CLASSES_PNG = "classes.png"


def predict(model, ds, *, mistakes=16, threshold=None):
    """`model`'s class probabilities over `ds`, and its most confident mistakes.

    Args:
        model: a classifier with softmax outputs (sigmoid outputs with `threshold`).
        ds: batches of ``(images, one-hot labels)`` (multi-hot with
            `threshold`), in a fixed order (an evaluation pipeline).
        mistakes: how many of the most confident mistakes to keep.
        threshold: multi-label: an image's predicted labels are those whose
            probability is at least `threshold`; a mistake is an image whose
            predicted labels are not its labels, as confident as its most
            confident wrong answer (a label given, or a label missed).

    Returns:
        ``(labels, probabilities, wrong)``: the true classes (int array; a
        multi-hot int array with `threshold`), the probabilities (float32, one
        row per image, in `ds`'s order) and up to `mistakes` dicts, most
        confident first, with ``index`` (the image's position in `ds`),
        ``image`` (uint8 pixels), ``true``, ``predicted`` (class indices;
        tuples of them with `threshold`) and ``probability`` (of the predicted
        class; with `threshold`, of the most confident wrong answer: p for a
        label given, 1 - p for a label missed).
    """
    labels, probabilities, heap, seen = [], [], [], 0
    for images, onehot in ds:
        images = np.asarray(images)  # a tf.data batch feeds a JAX model as NumPy
        probs = np.asarray(model.predict_on_batch(images), dtype=np.float32)
        if threshold is None:
            true = np.argmax(np.asarray(onehot), axis=-1)
            guess = np.argmax(probs, axis=-1)
            wrong_rows = np.flatnonzero(guess != true)
            confidence = probs[np.arange(len(guess)), guess]
        else:
            true = (np.asarray(onehot) > 0.5).astype(np.int64)
            guess = (probs >= threshold).astype(np.int64)
            wrong_rows = np.flatnonzero((guess != true).any(axis=-1))
            # How sure the model was of its wrong answers: p where it gave a label the
            # image lacks, 1 - p where it missed one.
            confidence = np.where(guess != true, np.where(guess == 1, probs, 1 - probs),
                                  0).max(axis=-1)
        for i in wrong_rows if mistakes else ():
            entry = (float(confidence[i]), -(seen + int(i)))  # ties: the earlier image
            kept = (*entry, _pixels(images[i]), _classes(true[i]), _classes(guess[i]))
            if len(heap) < mistakes:
                heapq.heappush(heap, kept)
            elif entry > heap[0][:2]:
                heapq.heapreplace(heap, kept)
        labels.append(true)
        probabilities.append(probs)
        seen += len(true)
    if not labels:
        raise ValueError("The dataset to report on is empty.")
    wrong = [{"index": -order, "image": image, "true": t, "predicted": g, "probability": p}
             for p, order, image, t, g in sorted(heap, reverse=True)]
    return np.concatenate(labels), np.concatenate(probabilities), wrong


def _classes(row):
    """A class index (int), or a multi-hot row's class indices (a tuple)."""
    return tuple(int(i) for i in np.flatnonzero(row)) if np.ndim(row) else int(row)


def _pixels(image):
    """An input image as uint8 pixels (the pipelines feed 0-255 values)."""
    return np.clip(np.rint(np.asarray(image, dtype=np.float32)), 0, 255).astype(np.uint8)


def classification_report(labels, predicted, class_names, *, pairs=10):
    """Per-class precision, recall, F1 and support, with their averages, the
    confusion matrix and the most confused pairs.

    A class that is never predicted has precision 0, a class without examples
    recall 0, and F1 is 0 where both are (scikit-learn's ``zero_division=0``).

    Args:
        labels: the true classes (ints).
        predicted: the predicted classes (ints).
        class_names: the names of the classes, in label order.
        pairs: how many of the most confused (true, predicted) pairs to list.

    Returns:
        A dict: ``accuracy``, ``examples``, ``classes`` (one dict per class:
        ``name``, ``precision``, ``recall``, ``f1``, ``support``),
        ``macro_avg`` and ``weighted_avg`` (``precision``, ``recall``,
        ``f1``), ``confusion_matrix`` (rows: true class, columns: predicted)
        and ``most_confused`` (``true``, ``predicted``, ``count``, and
        ``share``: the part of the true class's examples).

    Example:

    >>> from kres.training.report import classification_report
    >>> r = classification_report([0, 0, 1, 1], [0, 1, 1, 1], ["cat", "dog"])
    >>> r["accuracy"], r["classes"][1]["precision"], r["confusion_matrix"]
    (0.75, 0.6666666666666666, [[1, 1], [0, 2]])
    >>> r["most_confused"]
    [{'true': 'cat', 'predicted': 'dog', 'count': 1, 'share': 0.5}]
    """
    n = len(class_names)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    predicted = np.asarray(predicted, dtype=np.int64).reshape(-1)
    if labels.shape != predicted.shape:
        raise ValueError(f"labels and predicted differ in length: {labels.size} and "
                         f"{predicted.size}.")
    for name, values in (("labels", labels), ("predicted", predicted)):
        outside = values[(values < 0) | (values >= n)]
        if outside.size:
            raise ValueError(f"{name} holds class {int(outside[0])}, outside the {n} classes "
                             f"of class_names.")
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    hits = np.diag(matrix).astype(np.float64)
    support, guessed = matrix.sum(axis=1), matrix.sum(axis=0)
    precision = np.divide(hits, guessed, out=np.zeros(n), where=guessed > 0)
    recall = np.divide(hits, support, out=np.zeros(n), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(n),
                   where=precision + recall > 0)
    total = int(support.sum())

    def averages(weights):
        return {key: float(np.average(values, weights=weights)) if np.sum(weights) else 0.0
                for key, values in (("precision", precision), ("recall", recall), ("f1", f1))}

    off = [(int(matrix[t, p]), t, p) for t in range(n) for p in range(n)
           if t != p and matrix[t, p]]
    off.sort(key=lambda c: (-c[0], c[1], c[2]))
    return {
        "accuracy": float(hits.sum() / total) if total else 0.0,
        "examples": total,
        "classes": [{"name": str(class_names[c]), "precision": float(precision[c]),
                     "recall": float(recall[c]), "f1": float(f1[c]), "support": int(support[c])}
                    for c in range(n)],
        "macro_avg": averages(np.ones(n)),
        "weighted_avg": averages(support),
        "confusion_matrix": matrix.tolist(),
        "most_confused": [{"true": str(class_names[t]), "predicted": str(class_names[p]),
                           "count": count, "share": count / int(support[t])}
                          for count, t, p in off[:pairs]],
    }


def average_precision(truth, scores):
    """The average precision of one class: the mean of the precision at each
    positive's rank, ties of score counted together, as scikit-learn's
    ``average_precision_score`` (``sum((R_n - R_{n-1}) P_n)``); ``None`` without
    positives.

    Example:

    >>> from kres.training.report import average_precision
    >>> average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1])
    0.8333333333333333
    """
    truth = np.asarray(truth).reshape(-1) > 0
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    positives = int(truth.sum())
    if not positives:
        return None
    order = np.argsort(-scores, kind="stable")
    scores, truth = scores[order], truth[order]
    hits = np.cumsum(truth)
    # The last position of each distinct score: a threshold at that score.
    last = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    precision = hits[last] / (last + 1)
    recall = hits[last] / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def multilabel_report(labels, probabilities, class_names, *, threshold=0.5):
    """Per-class precision, recall, F1 and support at `threshold`, each class's
    average precision, their averages, and whole-image scores, for multi-label
    predictions.

    Args:
        labels: the true labels, multi-hot (one row per image).
        probabilities: the sigmoid outputs, one row per image.
        class_names: the names of the classes, in label order.
        threshold: a label is predicted where its probability is at least this.

    Returns:
        A dict: ``multi_label`` (True), ``threshold``, ``examples``,
        ``classes`` (``name``, ``precision``, ``recall``, ``f1``, ``support``
        (the images with the label), ``average_precision`` (``None`` for a
        class no image has)), ``micro_avg``, ``macro_avg``, ``weighted_avg``
        (``precision``, ``recall``, ``f1``; as scikit-learn's
        ``classification_report`` with ``zero_division=0``), ``map`` (the mean
        of the classes' average precisions, over the classes some image has),
        ``subset_accuracy`` (images whose predicted labels are exactly theirs)
        and ``hamming_loss`` (the share of wrong image-label decisions).

    Example:

    >>> from kres.training.report import multilabel_report
    >>> r = multilabel_report([[1, 1], [0, 1], [1, 0]], [[0.9, 0.6], [0.2, 0.4], [0.7, 0.3]],
    ...                       ["bag", "shoe"])
    >>> r["classes"][1]["recall"], r["subset_accuracy"], r["map"]
    (0.5, 0.6666666666666666, 1.0)
    """
    n = len(class_names)
    truth = np.asarray(labels).reshape(len(labels), -1) > 0
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(len(labels), -1)
    if truth.shape != probabilities.shape or truth.shape[1] != n:
        raise ValueError(f"labels and probabilities must both be (images, {n}) for the {n} "
                         f"classes of class_names: they are {truth.shape} and "
                         f"{probabilities.shape}.")
    predicted = probabilities >= threshold
    hits = (truth & predicted).sum(axis=0).astype(np.float64)
    support, guessed = truth.sum(axis=0), predicted.sum(axis=0)

    def scores(h, g, s):
        precision = np.divide(h, g, out=np.zeros(np.shape(h)), where=np.asarray(g) > 0)
        recall = np.divide(h, s, out=np.zeros(np.shape(h)), where=np.asarray(s) > 0)
        f1 = np.divide(2 * precision * recall, precision + recall,
                       out=np.zeros(np.shape(h)), where=precision + recall > 0)
        return precision, recall, f1

    precision, recall, f1 = scores(hits, guessed, support)
    micro = scores(np.array([hits.sum()]), np.array([guessed.sum()]),
                   np.array([support.sum()]))
    aps = [average_precision(truth[:, c], probabilities[:, c]) for c in range(n)]
    present = [ap for ap in aps if ap is not None]

    def averages(weights):
        return {key: float(np.average(values, weights=weights)) if np.sum(weights) else 0.0
                for key, values in (("precision", precision), ("recall", recall), ("f1", f1))}

    return {
        "multi_label": True, "threshold": float(threshold), "examples": int(len(truth)),
        "classes": [{"name": str(class_names[c]), "precision": float(precision[c]),
                     "recall": float(recall[c]), "f1": float(f1[c]), "support": int(support[c]),
                     "average_precision": aps[c]} for c in range(n)],
        "micro_avg": {"precision": float(micro[0][0]), "recall": float(micro[1][0]),
                      "f1": float(micro[2][0])},
        "macro_avg": averages(np.ones(n)),
        "weighted_avg": averages(support),
        "map": float(np.mean(present)) if present else 0.0,
        "subset_accuracy": float(np.mean((truth == predicted).all(axis=1))) if len(truth)
        else 0.0,
        "hamming_loss": float(np.mean(truth != predicted)) if len(truth) else 0.0,
    }


def report(model, ds, class_names, *, mistakes=16, names=None):
    """`classification_report` of `model` on `ds`, with its most confident mistakes.

    Args:
        model: a classifier with softmax outputs.
        ds: an evaluation pipeline's batches of ``(images, one-hot labels)``.
        class_names: the class names, in label order.
        mistakes: how many of the most confident mistakes to keep.
        names: the images' names in `ds`'s order (an image folder's relative
            paths), given to the mistakes as ``file``.

    Returns:
        The `classification_report` dict with ``mistakes`` added: dicts with
        ``index``, ``true`` and ``predicted`` (class names), ``probability``,
        ``image`` (uint8 pixels) and, with `names`, ``file``.
    """
    return from_predictions(*predict(model, ds, mistakes=mistakes), class_names, names=names)


def from_predictions(labels, probabilities, wrong, class_names, *, names=None, threshold=None):
    """`report` from `predict`'s answer (``labels, probabilities, wrong``); with
    `threshold`, multi-label (`multilabel_report`; the mistakes' classes are
    names joined by ``;``)."""
    if threshold is None:
        result = classification_report(labels, np.argmax(probabilities, axis=-1), class_names)
    else:
        result = multilabel_report(labels, probabilities, class_names, threshold=threshold)

    def named(classes):
        if isinstance(classes, tuple):
            return ";".join(str(class_names[c]) for c in classes) or "(none)"
        return str(class_names[classes])

    wrong = [dict(m) for m in wrong]
    for m in wrong:
        m["true"], m["predicted"] = named(m["true"]), named(m["predicted"])
        if names is not None:
            m["file"] = str(names[m["index"]])
    result["mistakes"] = wrong
    return result


def write_report(result, directory, *, title=""):
    """Writes a `report` as ``report.json`` (without the images),
    ``confusion.png`` and ``mistakes.png`` in `directory`; returns their paths."""
    os.makedirs(directory, exist_ok=True)
    paths = [os.path.join(directory, name) for name in (REPORT, CONFUSION_PNG, MISTAKES_PNG)]
    kept = {**result, "mistakes": [{k: v for k, v in m.items() if k != "image"}
                                   for m in result.get("mistakes", [])]}
    rundir.write_json(paths[0], kept)
    names = [c["name"] for c in result["classes"]]
    if result.get("multi_label"):
        paths[1] = os.path.join(directory, CLASSES_PNG)
        plot_classes(result, paths[1], title=title)
    else:
        plot_confusion(result["confusion_matrix"], names, paths[1], title=title)
    plot_mistakes(result.get("mistakes", []), paths[2], title=title)
    return paths


def summary(result, *, classes=None):
    """The report as a few lines of text: the averages, the classes (all, or the
    `classes` with the lowest F1) and the most confused pairs."""
    shown = sorted(result["classes"], key=lambda c: c["f1"])
    lines = []
    if classes is not None and len(shown) > classes:
        lines.append(f"the {classes} classes of lowest F1 of {len(shown)} (all in report.json):")
        shown = shown[:classes]
    width = max([len(c["name"]) for c in shown] + [12])
    lines.append(f"{'class':<{width}}  precision  recall     f1  support")
    for c in shown:
        lines.append(f"{c['name']:<{width}}  {c['precision']:9.4f}  {c['recall']:6.4f}  "
                     f"{c['f1']:.4f}  {c['support']:7d}")
    for key in ("micro_avg", "macro_avg", "weighted_avg"):
        if key not in result:
            continue
        a = result[key]
        lines.append(f"{key.replace('_', ' '):<{width}}  {a['precision']:9.4f}  "
                     f"{a['recall']:6.4f}  {a['f1']:.4f}  {result['examples']:7d}")
    if result.get("multi_label"):
        lines.append(f"mAP {result['map']:.4f}, exact label sets {result['subset_accuracy']:.4f}, "
                     f"threshold {result['threshold']:g}")
    elif result["most_confused"]:
        lines.append("most confused: " + "; ".join(
            f"{p['true']} as {p['predicted']} {p['count']}" for p in result["most_confused"][:5]))
    return "\n".join(lines)
