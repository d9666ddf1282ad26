"""What a scan of an image folder found, and its summary for people.

`FolderScan` holds the classes and images per split of a folder, the files
that do not decode (with the reason), the files left out as no images, the
colour kinds and the size range; `FolderScan.summary` says it in a few
lines, with the images per class and split and the class imbalance.
`kres.data.folders.scan` makes one.
"""

import math
import os
from dataclasses import dataclass, field

import numpy as np

# What tf.io.decode_image reads (TensorFlow 2.21: JPEG, PNG, GIF, BMP, WebP, JPEG XL).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".jxl")
# The colour kinds of images a scan counts.
KINDS = ("grayscale", "grayscale+alpha", "rgb", "rgba", "cmyk", "palette")
SPLIT_NAMES = ("train", "val", "test")
# The largest-to-smallest class ratio above which the summary flags an imbalance.
IMBALANCE_RATIO = 3.0
# Files listed in a summary or an error message before "... and N more".
LISTED = 20


@dataclass
class FolderScan:
    """What `scan` found in an image folder.

    Attributes:
        root: the folder's absolute path.
        layout: ``"splits"`` (``root/train|val|test/<class>/...``) or
            ``"flat"`` (``root/<class>/...``).
        class_names: the sorted class folder names, over all splits.
        images: split -> sorted ``(relative_path, label)`` of the images that
            decode: the splits on disk (``"train"``, ``"val"``, ``"test"``) or
            ``"all"`` for a flat folder. Paths are relative to `root`, with
            ``/``.
        bad: ``(relative_path, reason)`` of the image-suffixed files that do not
            decode, `reason` being the decoder's message (TensorFlow's, or
            `kres.data.file_decoding`'s without it).
        ignored: relative paths of the files not read: other suffixes, hidden
            files (``.DS_Store``, ``._x.jpg``), hidden folders (ending in
            ``/``), files outside class folders.
        kinds: `KINDS` entry -> number of images of that kind, over the good
            images (``"palette"``: palette PNGs and BMPs, GIFs).
        min_size: ``(smallest height, smallest width)`` over the good images
            (each the minimum on its own; ``(0, 0)`` with no good image).
        max_size: ``(largest height, largest width)`` likewise.
        labels_file: the CSV file the labels came from, or ``None`` (class
            folders).
        unlabelled: relative paths of the image files in the folder that
            `labels_file` does not list (not read).
    """

    root: str
    layout: str
    class_names: list
    images: dict
    bad: list = field(default_factory=list)
    ignored: list = field(default_factory=list)
    kinds: dict = field(default_factory=dict)
    min_size: tuple = (0, 0)
    max_size: tuple = (0, 0)
    labels_file: str | None = None
    unlabelled: list = field(default_factory=list)

    @property
    def multi_label(self):
        """Whether the images' labels are tuples of class indices (a CSV file giving
        several labels to an image)."""
        return any(isinstance(label, tuple | list)
                   for items in self.images.values() for _, label in items)

    def counts(self):
        """split -> {class name: good images}, every class listed (0 when it has none).

        Multi-label: the images carrying each label.

        Example:

        >>> from kres.data.folder_scan import FolderScan
        >>> images = {"all": [("daisy/1.jpg", 0), ("daisy/2.jpg", 0), ("roses/1.jpg", 1)]}
        >>> FolderScan("flowers", "flat", ["daisy", "roses", "tulips"], images).counts()
        {'all': {'daisy': 2, 'roses': 1, 'tulips': 0}}
        """
        result = {}
        for split_name, items in self.images.items():
            per_class = label_counts([label for _, label in items], len(self.class_names))
            result[split_name] = {name: int(n) for name, n in zip(self.class_names, per_class)}
        return result

    @property
    def num_images(self):
        """Good images over all splits."""
        return sum(len(items) for items in self.images.values())

    def imbalance(self):
        """``(ratio, largest class, smallest class)`` of the training images (a flat
        folder's all); the ratio is ``inf`` when a class has none."""
        counts = self.counts()["train" if self.layout == "splits" else "all"]
        largest = max(counts, key=lambda c: (counts[c], c))
        smallest = min(counts, key=lambda c: (counts[c], c))
        ratio = counts[largest] / counts[smallest] if counts[smallest] else math.inf
        return ratio, largest, smallest

    def summary(self):
        """A human-readable report: images per class and split, the imbalance, the
        files that do not decode (by path), the files ignored, kinds and sizes.

        Example:

        A scan of a folder with train/ and test/ (`kres.data.folders.scan`
        makes them; this one is written out):

        >>> from kres.data.folder_scan import FolderScan
        >>> images = {"train": [(f"train/cat/{i}.jpg", 0) for i in range(900)]
        ...                    + [(f"train/dog/{i}.jpg", 1) for i in range(200)],
        ...           "test": [(f"test/cat/{i}.jpg", 0) for i in range(50)]
        ...                   + [(f"test/dog/{i}.jpg", 1) for i in range(60)]}
        >>> pets = FolderScan(
        ...     "/data/pets", "splits", ["cat", "dog"], images,
        ...     bad=[("train/cat/broken.jpg", "jpeg::Uncompress failed. Invalid JPEG data "
        ...                                   "or crop window.")],
        ...     ignored=[".DS_Store", "notes.txt"],
        ...     kinds={"rgb": 1100, "grayscale": 60, "cmyk": 50},
        ...     min_size=(90, 120), max_size=(1200, 1600))
        >>> print(pets.summary())  # doctest: +ELLIPSIS
        Image folder /data/pets (train/, test/): 2 classes, 1,210 images
        class  train  test
        cat      900    50
        dog      200    60
        Imbalance: cat has 4.5x the training images of dog (900 to 200; more than 3x): ...
        Kinds: 1,100 rgb, 60 grayscale, 50 cmyk (converted to the model's channels)
        Sizes: 90x120 to 1200x1600 (height x width)
        1 file does not decode:
          train/cat/broken.jpg: jpeg::Uncompress failed. Invalid JPEG data or crop window.
        Ignored 2 files that are not images or not in a class folder: .DS_Store, notes.txt
        """
        counts = self.counts()
        splits = list(counts)
        where = ", ".join(f"{s}/" for s in splits) if self.layout == "splits" else "flat"
        lines = [f"Image folder {self.root} ({where}): {len(self.class_names)} classes, "
                 f"{self.num_images:,} images"]
        if self.labels_file:
            each = ""
            if self.multi_label:
                per = [len(label) for items in self.images.values() for _, label in items]
                each = f", multi-label: {np.mean(per):.2f} labels per image, 1 to {max(per)}"
            lines.append(f"Labels from {self.labels_file}{each}")
        lines += _table(self.class_names, counts, splits)
        ratio, largest, smallest = self.imbalance()
        reference = "training images" if self.layout == "splits" else "images"
        first = counts[splits[0]]
        sizes = f"{first[largest]:,} to {first[smallest]:,}"
        if math.isinf(ratio):
            lines.append(f"Imbalance: {smallest} has no {reference} that decode")
        elif ratio > IMBALANCE_RATIO:
            lines.append(f"Imbalance: {largest} has {ratio:.1f}x the {reference} of {smallest} "
                         f"({sizes}; more than {IMBALANCE_RATIO:g}x)"
                         + ("" if self.multi_label else ": consider class weights"))
        elif len(self.class_names) > 1:
            lines.append(f"Balance: {largest} has {ratio:.1f}x the {reference} of {smallest} "
                         f"({sizes})")
        kinds = ", ".join(f"{n:,} {k}" for k, n in sorted(self.kinds.items(),
                                                           key=lambda kv: -kv[1]) if n)
        if kinds:
            lines.append(f"Kinds: {kinds} (converted to the model's channels)")
            lines.append(f"Sizes: {self.min_size[0]}x{self.min_size[1]} to "
                         f"{self.max_size[0]}x{self.max_size[1]} (height x width)")
        if self.bad:
            lines.append(f"{_files(len(self.bad))} not decode:")
            lines += [f"  {path}: {reason}" for path, reason in self.bad[:LISTED]]
            if len(self.bad) > LISTED:
                lines.append(f"  ... and {len(self.bad) - LISTED} more")
        if self.unlabelled:
            shown = ", ".join(self.unlabelled[:5]) + (", ..." if len(self.unlabelled) > 5
                                                      else "")
            lines.append(f"{len(self.unlabelled)} image{'s' * (len(self.unlabelled) != 1)} "
                         f"in the folder {'have' if len(self.unlabelled) != 1 else 'has'} no "
                         f"row in {self.labels_file} (left out): {shown}")
        if self.ignored:
            shown = ", ".join(self.ignored[:5]) + (", ..." if len(self.ignored) > 5 else "")
            lines.append(f"Ignored {len(self.ignored)} file{'s' * (len(self.ignored) != 1)} "
                         f"that {'are' if len(self.ignored) != 1 else 'is'} not images "
                         f"or not in a class folder: {shown}")
        return "\n".join(lines)

    def to_json(self):
        """A JSON-compatible dict of the scan (lists for tuples), with its `counts`."""
        return {
            "root": self.root, "layout": self.layout, "class_names": list(self.class_names),
            "images": {s: [[p, label_json(label)] for p, label in items]
                       for s, items in self.images.items()},
            "bad": [[p, r] for p, r in self.bad], "ignored": list(self.ignored),
            "kinds": dict(self.kinds), "min_size": list(self.min_size),
            "max_size": list(self.max_size), "counts": self.counts(),
            "labels_file": self.labels_file, "unlabelled": list(self.unlabelled),
        }


def is_hidden(name):
    """Whether a file or folder name is hidden (``.DS_Store``, ``._x.jpg``, ``.git``)."""
    return name.startswith(".")


def relative_path(root, path):
    """`path` relative to `root`, with ``/`` (as a scan lists files)."""
    return os.path.relpath(path, root).replace(os.sep, "/")


def label_json(label):
    """An item's label for JSON: an int, or a list of class indices (multi-label)."""
    return [int(i) for i in label] if isinstance(label, tuple | list) else int(label)


def label_counts(labels, num_classes):
    """Per-class counts of integer labels, or of the class indices in tuples
    (multi-label: an image counts once for each of its labels).

    Example:

    >>> from kres.data.folder_scan import label_counts
    >>> label_counts([0, 2, 2], 3).tolist(), label_counts([(0, 1), (1,)], 3).tolist()
    ([1, 0, 2], [1, 2, 0])
    """
    flat = [i for label in labels for i in (label if isinstance(label, tuple | list)
                                            else (label,))]
    return np.bincount(np.asarray(flat, dtype=np.int64), minlength=num_classes)


def _files(n):
    return f"{n} file does" if n == 1 else f"{n} files do"


def _table(class_names, counts, splits, limit=30):
    """The per-class rows (all up to `limit` classes, else the largest and smallest)."""
    order = list(class_names)
    hidden = 0
    if len(order) > limit:
        first = counts[splits[0]]
        by_size = sorted(order, key=lambda c: (-first[c], c))
        order = by_size[:limit // 2] + by_size[-(limit // 2):]
        hidden = len(class_names) - len(order)
    width = max(len("class"), *(len(c) for c in order))
    widths = [max(len(s), *(len(f"{counts[s][c]:,}") for c in class_names)) for s in splits]
    rows = ["  ".join(["class".ljust(width)] + [s.rjust(w) for s, w in zip(splits, widths)])]
    for i, name in enumerate(order):
        if hidden and i == limit // 2:
            rows.append(f"... {hidden} classes between these ...")
        rows.append("  ".join([name.ljust(width)] + [f"{counts[s][name]:,}".rjust(w)
                                                     for s, w in zip(splits, widths)]))
    return rows
