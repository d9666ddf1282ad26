"""Labels from a CSV file: ``path,label`` or ``path,label1;label2`` per image.

An image folder whose classes are not its folder names (a spreadsheet of
labels, several labels per image) gives them in a CSV file: one row per
image, its path relative to the folder, then its label, or its labels
separated by ``;`` (multi-label data). `read_labels` reads and checks the
file, every problem at once, by line: rows without a label column, empty
paths or labels, paths outside the folder, an image listed twice, more than
two columns (a path holding a comma must be quoted, as spreadsheets write
it). A first row ``path,label`` (or ``path,labels``) is a header.

`labelled_listing` then checks the rows against the folder (files missing,
files that are not images, labels outside a model's classes) and lists the
images the file leaves unlabelled; `kres.data.folders.scan` with ``labels=``
calls both, then decodes every listed image.

Nothing here imports TensorFlow.
"""

import csv
import os
import posixpath
from dataclasses import dataclass, field

from kres import checks
from kres.data.folder_scan import (
    IMAGE_EXTENSIONS,
    LISTED,
    SPLIT_NAMES,
    is_hidden,
    relative_path,
)

HEADER_PATHS = ("path", "file", "filename", "image")
HEADER_LABELS = ("label", "labels", "class", "classes")


@dataclass
class LabelFile:
    """The labels a CSV file gives.

    Attributes:
        path: the CSV file.
        labels: relative image path (``/``-separated, normalised) -> its label
            names, a tuple (one name for single-label rows), in file order.
        lines: relative image path -> its line in the file.
        multi_label: whether a row gives more than one label.
        class_names: every label name, sorted.
    """

    path: str
    labels: dict
    lines: dict = field(default_factory=dict)

    @property
    def multi_label(self):
        return any(len(names) > 1 for names in self.labels.values())

    @property
    def class_names(self):
        return sorted({name for names in self.labels.values() for name in names})


def _problem_list(problems):
    shown = "\n".join(f"  {p}" for p in problems[:LISTED])
    more = f"\n  ... and {len(problems) - LISTED} more" if len(problems) > LISTED else ""
    return shown + more


def _is_header(cells):
    return (cells[0].strip().lower() in HEADER_PATHS
            and (len(cells) < 2 or cells[1].strip().lower() in HEADER_LABELS))


def normalised_path(path):
    """A CSV row's path as the scan lists files (``/``-separated, no ``./``), or
    ``None`` for one that leaves the folder (absolute, or through ``..``)."""
    path = path.replace("\\", "/")
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        return None
    path = posixpath.normpath(path)
    if path == ".." or path.startswith("../") or path == ".":
        return None
    return path


def read_labels(path, field_name="labels"):
    """Reads and checks a CSV file of image labels.

    Rows are ``path,label`` or ``path,label1;label2``: the path relative to the
    image folder (``/`` or ``\\``), the labels separated by ``;``. Spaces
    around cells and labels are dropped; a cell holding a comma is quoted
    (``"a, b.jpg",cat``); blank lines are skipped; a first row ``path,label``
    is a header; a UTF-8 byte-order mark is ignored. A label repeated within a
    row counts once.

    Args:
        path: the CSV file.
        field_name: the argument named in messages.

    Returns:
        A `LabelFile`.

    Raises:
        ValueError: naming `field_name` and the file, with every problem by
            line: a file that is missing or not UTF-8 text, malformed quoting,
            a row without a label column or with more than two, an empty path
            or label, a path outside the folder, an image listed twice, no
            rows at all.

    Example:

    >>> import os, tempfile
    >>> from kres.data.label_file import read_labels
    >>> folder = tempfile.TemporaryDirectory()
    >>> csv_path = os.path.join(folder.name, "labels.csv")
    >>> with open(csv_path, "w") as f:
    ...     _ = f.write('path,label\\nshoes/1.jpg, sneaker\\n"bag, red.jpg",bag ; sandal\\n')
    >>> found = read_labels(csv_path)
    >>> found.labels
    {'shoes/1.jpg': ('sneaker',), 'bag, red.jpg': ('bag', 'sandal')}
    >>> found.multi_label, found.class_names
    (True, ['bag', 'sandal', 'sneaker'])
    >>> folder.cleanup()
    """
    if not isinstance(path, str | os.PathLike) or not os.path.isfile(path):
        checks.fail(field_name, path, "must be a CSV file of path,label rows (it is not a "
                                      "file)")
    path = os.fspath(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(enumerate(csv.reader(f, strict=True), start=1))
    except UnicodeDecodeError as error:
        checks.fail(field_name, path, f"must be UTF-8 text ({error.reason} at byte "
                                      f"{error.start})")
    except csv.Error as error:
        checks.fail(field_name, path, f"is not a readable CSV file ({error}; quote cells "
                                      f"holding commas or quotes)")
    rows = [(n, cells) for n, cells in rows if any(c.strip() for c in cells)]
    if rows and _is_header(rows[0][1]):
        number, cells = rows.pop(0)
        if len(cells) < 2:
            checks.fail(field_name, path, f"has no label column (line {number} is a header "
                                          f"naming only {cells[0].strip()!r}): use path,label")
    labels, lines, problems = {}, {}, []
    for number, cells in rows:
        where = f"line {number}"
        if len(cells) < 2 or not "".join(cells[1:]).strip():
            what = "no label column" if len(cells) < 2 else "an empty label"
            problems.append(f"{where}: {what} ({','.join(cells)!r}; rows are path,label)")
            continue
        if len(cells) > 2:
            problems.append(f"{where}: {len(cells)} columns ({','.join(cells)!r}): rows are "
                            f"path,label1;label2; quote a path that holds a comma")
            continue
        raw_path, raw_labels = cells[0].strip(), cells[1]
        if not raw_path:
            problems.append(f"{where}: an empty path")
            continue
        relative = normalised_path(raw_path)
        if relative is None:
            problems.append(f"{where}: {raw_path!r} is outside the folder (paths are "
                            f"relative to it)")
            continue
        names = [name.strip() for name in raw_labels.split(";")]
        if not all(names):
            problems.append(f"{where}: an empty label in {raw_labels.strip()!r} (labels "
                            f"are separated by ';')")
            continue
        if relative in labels:
            problems.append(f"{where}: {raw_path!r} again (first on line "
                            f"{lines[relative]}): give an image's labels on one row")
            continue
        labels[relative] = tuple(dict.fromkeys(names))
        lines[relative] = number
    if problems:
        raise ValueError(
            f"The label file {path} has {len(problems)} "
            f"problem{'s' * (len(problems) != 1)}:\n{_problem_list(problems)}\n"
            f"Received: {field_name}={path!r}")
    if not labels:
        checks.fail(field_name, path, "has no path,label rows")
    return LabelFile(path=path, labels=labels, lines=lines)


def labelled_listing(root, label_file, class_names):
    """The images a `LabelFile` labels in the folder `root`, its rows checked
    against the folder (`kres.data.folders.scan` with ``labels=`` calls it).

    Returns:
        ``(layout, {split: [(path, label)]}, ignored, unlabelled, class
        names)``: ``"splits"`` when the paths start with ``train/`` (and
        ``val/``, ``test/``), else ``"flat"`` (split ``"all"``); a label is a
        class index, or a sorted tuple of them for a multi-label file; the
        other files and the image files the file does not list; `class_names`
        or the file's labels, sorted.

    Raises:
        ValueError: naming ``labels=``: rows of missing files or files that
            are not images, labels outside `class_names`, paths mixing split
            folders and others, no ``train/`` among split folders, a label no
            training image has (without `class_names`).
    """
    where = f"Received: labels={label_file.path!r}"
    given = list(class_names) if class_names is not None else label_file.class_names
    index = {name: i for i, name in enumerate(given)}
    problems = []
    for relative, names in label_file.labels.items():
        line = f"line {label_file.lines[relative]}: {relative}"
        full = os.path.join(root, relative)
        if not os.path.isfile(full):
            problems.append(f"{line} is not in {root}"
                            + (" (a folder)" if os.path.isdir(full) else ""))
        elif is_hidden(os.path.basename(relative)) or not relative.lower().endswith(
                IMAGE_EXTENSIONS):
            problems.append(f"{line} is not an image file (suffixes "
                            f"{', '.join(IMAGE_EXTENSIONS)})")
        unknown = [n for n in names if n not in index]
        if unknown:
            problems.append(f"{line} has label{'s' * (len(unknown) != 1)} outside the "
                            f"classes ({', '.join(given[:LISTED])}"
                            f"{', ...' if len(given) > LISTED else ''}): {', '.join(unknown)}")
    if problems:
        raise ValueError(f"The label file {label_file.path} does not fit the image folder "
                         f"{root}: {len(problems)} row{'s' * (len(problems) != 1)}:\n"
                         f"{_problem_list(problems)}\n{where}")
    tops = {relative.split("/", 1)[0] for relative in label_file.labels}
    in_splits = tops & set(SPLIT_NAMES)
    if in_splits and tops - set(SPLIT_NAMES):
        raise ValueError(
            f"The label file {label_file.path} lists images in split folders "
            f"({', '.join(sorted(in_splits))}) and elsewhere "
            f"({', '.join(sorted(tops - set(SPLIT_NAMES))[:LISTED])}): list every image under "
            f"train/ (with optional val/ and test/), or none. {where}")
    if in_splits and "train" not in in_splits:
        raise ValueError(f"The label file {label_file.path} lists images in "
                         f"{' and '.join(f + '/' for f in sorted(in_splits))} but none in "
                         f"train/. {where}")
    multi = label_file.multi_label
    listed = {}
    for relative, names in label_file.labels.items():
        split_name = relative.split("/", 1)[0] if in_splits else "all"
        label = tuple(sorted(index[n] for n in names)) if multi else index[names[0]]
        listed.setdefault(split_name, []).append((relative, label))
    layout = "splits" if in_splits else "flat"
    if class_names is None:
        first = "train" if in_splits else "all"
        trained = {n for _, label in listed[first]
                   for n in ((label,) if isinstance(label, int) else label)}
        missing = [given[i] for i in range(len(given)) if i not in trained]
        if missing:
            raise ValueError(
                f"The label file {label_file.path} gives labels that no training image has: "
                f"{', '.join(missing[:LISTED])}. Every class needs training images "
                f"(train/). {where}")
    ignored, unlabelled = [], []
    csv_file = os.path.abspath(label_file.path)
    for directory, subdirs, names in os.walk(root):
        for d in [d for d in subdirs if is_hidden(d)]:
            subdirs.remove(d)
        for name in names:
            full = os.path.join(directory, name)
            relative = relative_path(root, full)
            if relative in label_file.labels or os.path.abspath(full) == csv_file:
                continue
            if not is_hidden(name) and name.lower().endswith(IMAGE_EXTENSIONS):
                unlabelled.append(relative)
            else:
                ignored.append(relative)
    return layout, listed, ignored, unlabelled, given
