"""An image folder's train, validation and test splits: made, kept, weighed.

`split` makes the splits of a scanned folder (`kres.data.folders.scan`): the
folders' own when they exist, otherwise a seeded stratified split (every
class in proportion, `stratified`); `write_splits` and `read_splits` keep it
in a JSON file so that a resumed run or an evaluation uses the same one;
`class_weights` balances the loss over imbalanced classes.
"""

import json
import math
import os

import numpy as np

from kres import checks
from kres import rundir as runs
from kres.data.folder_scan import LISTED, SPLIT_NAMES, FolderScan, label_counts, label_json

SPLITS_FORMAT = "kres-splits"

class Splits(dict):
    """split -> ``[(relative_path, label)]`` for ``"train"``, ``"val"``, ``"test"``,
    with what the paths and labels refer to.

    Attributes:
        class_names: the label names.
        root: the folder the paths are relative to.
        sources: split -> how it was made (``"train/"``, ``"10% of train/,
            stratified, seed 0"``).
    """

    def __init__(self, items, *, class_names, root=None, sources=None):
        super().__init__(items)
        self.class_names = list(class_names)
        self.root = root
        self.sources = dict(sources or {})


def _round(x):
    return int(math.floor(x + 0.5))


def _allocate(counts, fraction, capacity):
    """Per-class numbers summing to ``round(total * fraction)`` (at least 1 when
    `fraction` > 0), each at most its `capacity`: in proportion to `counts`, the
    rounding left to the largest remainders (then the largest classes)."""
    total = sum(counts)
    if fraction <= 0 or total == 0:
        return [0] * len(counts)
    target = min(max(1, _round(total * fraction)), sum(capacity))
    ideal = [n * target / total for n in counts]
    taken = [min(math.floor(q), cap) for q, cap in zip(ideal, capacity)]
    order = sorted(range(len(counts)), key=lambda c: (-(ideal[c] - math.floor(ideal[c])),
                                                      -counts[c], c))
    while sum(taken) < target:
        for c in order:
            if sum(taken) == target:
                break
            if taken[c] < capacity[c]:
                taken[c] += 1
    return taken


def _by_class(items, num_classes):
    """Items grouped by class; a multi-label item by its rarest label (so that rare
    labels are held out in proportion too)."""
    groups = [[] for _ in range(num_classes)]
    counts = label_counts([label for _, label in items], num_classes)
    for path, label in sorted(items):
        key = min(label, key=lambda c: (counts[c], c)) if isinstance(label, tuple) else label
        groups[key].append((path, label))
    return groups


def _shuffled(group, seed, salt, label):
    order = np.random.default_rng([seed, salt, label]).permutation(len(group))
    return [group[i] for i in order]


def stratified(items, num_classes, fractions, *, seed=0, salt=0, keep=1):
    """Splits `items` into parts holding `fractions` of each class, the rest last.

    Every class keeps at least `keep` items in the last part (the training
    part); a class of one stays there whole. Each part's total is
    ``round(len(items) * fraction)``, at least 1 for a fraction above 0 (as
    long as every class keeps its `keep`), shared among classes in proportion
    to their sizes.

    Args:
        items: ``(relative_path, label)`` pairs.
        num_classes: number of labels.
        fractions: the fractions of the parts before the rest, e.g. ``(0.1, 0.1)``.
        seed: the shuffle's seed (one shuffle per class, of the sorted paths).
        salt: varies the shuffle for another use of the same seed.
        keep: the items each class keeps in the last part (0 to take a
            stratified sample of exactly ``round(len(items) * fraction)``).

    Returns:
        A list of ``len(fractions) + 1`` sorted lists of items.

    Example:

    >>> from kres.data.splits import stratified
    >>> items = [(f"{c}/{i}.png", c) for c in range(2) for i in range(10)]
    >>> [len(part) for part in stratified(items, 2, (0.1, 0.2))]
    [2, 4, 14]
    """
    groups = _by_class(items, num_classes)
    counts = [len(g) for g in groups]
    left = [max(0, n - keep) for n in counts]
    takes = []
    for fraction in fractions:
        take = _allocate(counts, fraction, left)
        left = [cap - t for cap, t in zip(left, take)]
        takes.append(take)
    parts = [[] for _ in range(len(fractions) + 1)]
    for label, group in enumerate(groups):
        shuffled = _shuffled(group, seed, salt, label)
        start = 0
        for part, take in zip(parts, takes):
            part.extend(shuffled[start:start + take[label]])
            start += take[label]
        parts[-1].extend(shuffled[start:])
    return [sorted(part) for part in parts]


def split(scan, *, val_fraction=0.1, test_fraction=0.1, seed=0, every_class=True):
    """The train, validation and test splits of a scanned folder.

    ``"splits"`` layout: the folders' own splits; without val/, a stratified
    `val_fraction` of train/ is held out for validation, and without test/ a
    stratified `test_fraction` of train/ for the test (both then come out of
    train/). ``"flat"`` layout: a stratified train/val/test split of all
    images.

    Stratified: each class gives its share (per-class proportions as close as
    the counts allow, the totals ``round(n * fraction)``, at least 1 when the
    fraction is above 0), from one seeded shuffle per class of the sorted
    paths: the same seed and files give the same split. Every class keeps at
    least one training image: a class too small to give its share (a class of
    one image, or of two when both held-out splits would need one) stays in
    train whole, and the held-out splits get fewer of its images.

    Args:
        scan: a `FolderScan`.
        val_fraction: the fraction held out for validation when there is no
            val/ folder, in [0, 1).
        test_fraction: the fraction held out for the test when there is no
            test/ folder, in [0, 1).
        seed: the shuffle's seed, a non-negative integer.
        every_class: refuse a class without a training image (training needs
            one of each; a trained model's classes, evaluated on a folder
            labelled with some of them, do not).

    Returns:
        A `Splits`: ``{"train": [...], "val": [...], "test": [...]}`` of sorted
        ``(relative_path, label)``.

    Raises:
        ValueError: for fractions outside [0, 1) or summing to 1 or more, a
            negative seed, or a class without a good training image.

    Example:

    A flat folder of 20 cats and 20 dogs (`kres.data.folders.scan` makes
    the `FolderScan`; this one is written out):

    >>> from kres.data.folder_scan import FolderScan
    >>> from kres.data.splits import split
    >>> images = [(f"{name}/{i}.jpg", label) for label, name in enumerate(["cat", "dog"])
    ...           for i in range(20)]
    >>> s = split(FolderScan("pets", "flat", ["cat", "dog"], {"all": images}), seed=1)
    >>> {name: len(items) for name, items in s.items()}
    {'train': 32, 'val': 4, 'test': 4}
    """
    if not isinstance(scan, FolderScan):
        checks.fail("scan", scan, "must be a FolderScan (from kres.data.folders.scan)")
    checks.number("val_fraction", val_fraction, low=0, high=1, high_open=True)
    checks.number("test_fraction", test_fraction, low=0, high=1, high_open=True)
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction and test_fraction must leave images for training. "
                         f"Received: val_fraction={val_fraction!r}, "
                         f"test_fraction={test_fraction!r}")
    checks.integer("seed", seed, minimum=0)
    n = len(scan.class_names)
    pool_name = "train" if scan.layout == "splits" else "all"
    pool = scan.images[pool_name]
    fractions = {s: f for s, f in (("val", val_fraction), ("test", test_fraction))
                 if s not in scan.images}
    parts = stratified(pool, n, tuple(fractions.values()), seed=seed)
    result = {"train": parts[-1]}
    where = "train/" if scan.layout == "splits" else "the folder"
    sources = {"train": "train/" if scan.layout == "splits" else f"the rest of {where}"}
    for (name, fraction), part in zip(fractions.items(), parts):
        result[name] = part
        sources[name] = f"{fraction:.0%} of {where}, stratified, seed {seed}"
    for name in ("val", "test"):
        if name in scan.images:
            result[name] = list(scan.images[name])
            sources[name] = f"{name}/"
    counts = label_counts([label for _, label in result["train"]], n)
    missing = [scan.class_names[c] for c in range(n) if counts[c] == 0]
    if missing and every_class:
        raise ValueError(
            f"Classes without a training image that decodes in {scan.root}: "
            f"{', '.join(missing[:LISTED])}. Every class needs one. Received: "
            f"dataset={scan.root!r}")
    return Splits({s: result[s] for s in SPLIT_NAMES}, class_names=scan.class_names,
                  root=scan.root, sources=sources)


def write_splits(path, splits, *, class_names=None, root=None):
    """Writes splits as JSON (atomically): paths, labels, class names and root.

    Args:
        path: the file, e.g. ``<run dir>/splits.json``.
        splits: a `Splits` (from `split` or `read_splits`), or a dict of split
            -> ``(relative_path, label)`` items with `class_names` given.
        class_names: the label names (default: the `Splits`' own).
        root: the folder the paths are relative to (default: the `Splits`').

    Raises:
        ValueError: without class names, or for labels outside them.

    Example:

    >>> import os, tempfile
    >>> from kres.data.splits import read_splits, write_splits
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = os.path.join(folder.name, "splits.json")
    >>> write_splits(path, {"train": [("cat/1.jpg", 0), ("dog/1.jpg", 1)], "val": [],
    ...                     "test": [("dog/2.jpg", 1)]}, class_names=["cat", "dog"])
    >>> read_splits(path)["test"]
    [('dog/2.jpg', 1)]
    >>> folder.cleanup()
    """
    class_names = list(class_names if class_names is not None
                       else getattr(splits, "class_names", None) or [])
    if not class_names:
        checks.fail("class_names", None, "must be given with a plain dict of splits")
    root = root if root is not None else getattr(splits, "root", None)
    value = {
        "format": SPLITS_FORMAT, "version": 1, "root": root, "class_names": class_names,
        "sources": dict(getattr(splits, "sources", {}) or {}),
        "splits": {s: [[str(p), label_json(label)] for p, label in items]
                   for s, items in splits.items()},
    }
    _validate_splits(value, path)
    runs.write_json(path, value)


def read_splits(path):
    """Reads and checks a file of `write_splits`.

    Args:
        path: the JSON file.

    Returns:
        A `Splits` with its ``class_names``, ``root`` and ``sources``.

    Raises:
        ValueError: for a missing or unreadable file, or content that is not
            a splits file: unknown format, splits other than train/val/test,
            items that are not ``[relative path, label]`` with a label among
            the class names, a path in two splits, an empty train split.

    Example:

    >>> import os, tempfile
    >>> from kres.data.splits import read_splits, write_splits
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = os.path.join(folder.name, "splits.json")
    >>> write_splits(path, {"train": [("cat/1.jpg", 0), ("dog/1.jpg", 1)], "val": [],
    ...                     "test": []}, class_names=["cat", "dog"])
    >>> splits = read_splits(path)
    >>> splits.class_names, splits["train"]
    (['cat', 'dog'], [('cat/1.jpg', 0), ('dog/1.jpg', 1)])
    >>> folder.cleanup()
    """
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"splits must be a readable splits file ({error}). "
                         f"Received: splits={os.fspath(path)!r}") from None
    _validate_splits(value, path)
    items = {s: [(p, tuple(label) if isinstance(label, list) else int(label))
                 for p, label in value["splits"][s]] for s in SPLIT_NAMES}
    return Splits(items, class_names=value["class_names"], root=value.get("root"),
                  sources=value.get("sources"))


def _validate_splits(value, path):
    def fail(problem):
        raise ValueError(f"splits file {os.fspath(path)} {problem}. "
                         f"Received: splits={os.fspath(path)!r}")

    if not isinstance(value, dict) or value.get("format") != SPLITS_FORMAT:
        fail(f"is not a kres splits file (no \"format\": \"{SPLITS_FORMAT}\")")
    names = value.get("class_names")
    if (not isinstance(names, list) or not names or len(set(names)) != len(names)
            or not all(isinstance(c, str) and c for c in names)):
        fail("needs class_names: a list of distinct names")
    splits = value.get("splits")
    if not isinstance(splits, dict) or sorted(splits) != sorted(SPLIT_NAMES):
        fail(f"needs exactly the splits {', '.join(SPLIT_NAMES)}, found "
             f"{sorted(splits) if isinstance(splits, dict) else splits!r}")
    seen = {}
    for name in SPLIT_NAMES:
        items = splits[name]
        if not isinstance(items, list):
            fail(f"has a {name} split that is not a list")
        for item in items:
            if (not isinstance(item, list | tuple) or len(item) != 2
                    or not isinstance(item[0], str) or not item[0]
                    or not _is_label(item[1], len(names))):
                fail(f"has a {name} item that is not [relative path, label in "
                     f"0..{len(names) - 1} (or a list of distinct ones)]: {item!r}")
            p = item[0]
            if os.path.isabs(p) or ".." in p.split("/"):
                fail(f"has a path outside its root: {p!r}")
            if p in seen and seen[p] != name:
                fail(f"has {p!r} in both {seen[p]} and {name}")
            seen[p] = name
    if not splits["train"]:
        fail("has an empty train split")


def _is_label(label, num_classes):
    """An int in ``0..num_classes - 1``, or a non-empty list of distinct ones."""
    if isinstance(label, list | tuple):
        return bool(label) and len(set(label)) == len(label) and all(
            checks.is_int(i) and 0 <= i < num_classes for i in label)
    return checks.is_int(label) and 0 <= label < num_classes


def class_weights(splits_or_labels, num_classes):
    """Weights that balance the classes in the loss: scikit-learn's ``"balanced"``.

    ``weight[c] = n_samples / (num_classes * count[c])`` over the training
    labels, so every class contributes the same total weight.

    Args:
        splits_or_labels: splits (a dict with ``"train"``, as `split` returns),
            a list of ``(relative_path, label)`` items, or integer labels.
        num_classes: number of classes.

    Returns:
        ``{class index: weight}`` for every class (Keras's ``class_weight``).

    Raises:
        ValueError: for labels outside ``0..num_classes - 1`` or a class
            without training examples (its weight would be infinite).

    Example:

    >>> from kres.data.splits import class_weights
    >>> class_weights([0, 0, 0, 1], 2)
    {0: 0.6666666666666666, 1: 2.0}
    """
    checks.positive_int("num_classes", num_classes)
    labels = splits_or_labels
    if isinstance(labels, dict):
        if "train" not in labels:
            checks.fail("splits_or_labels", sorted(labels), "must have a 'train' split")
        labels = labels["train"]
    labels = [item[1] if isinstance(item, list | tuple) else item for item in labels]
    if any(isinstance(label, list | tuple) for label in labels):
        checks.fail("class_weights", True, "weigh single-label classes; multi-label data "
                                           "have several classes per image")
    labels = np.asarray(labels)
    if labels.size == 0 or labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        checks.fail("splits_or_labels", splits_or_labels if labels.size < 10 else
                    f"<{labels.size} values of {labels.dtype}>",
                    "must hold integer training labels")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"There are labels outside 0..{num_classes - 1}: they run from "
                         f"{labels.min()} to {labels.max()}. Received: num_classes={num_classes}")
    counts = np.bincount(labels, minlength=num_classes)
    if not counts.all():
        raise ValueError(f"Classes {np.flatnonzero(counts == 0).tolist()} have no training "
                         f"examples: their weight would be infinite. Received: "
                         f"num_classes={num_classes}")
    return {c: float(labels.size / (num_classes * counts[c])) for c in range(num_classes)}
