"""Image folders as they are: scanned and checked before any training.

A folder of images is either split on disk or flat::

    root/train/<class>/...   root/val/<class>/...   root/test/<class>/...   ("splits")
    root/<class>/...                                                        ("flat")

`scan` reads every image-suffixed file once, with the decoder the training
pipeline uses (TensorFlow's; without TensorFlow, `kres.data.file_decoding`'s,
which gives the same pixels), and reports per file what the pipeline would
otherwise only find in the middle of an epoch: files that do not decode (by
path, with the decoder's message), files that are not images (``.DS_Store``,
``notes.txt``, hidden files), the colour kinds (grayscale, RGB, RGBA, CMYK,
palette) and the size range. `kres.data.folder_scan.FolderScan.summary` shows it, with the images
per class and split and the class imbalance.

The train, validation and test splits of a scanned folder are made, kept and
weighed in `kres.data.splits`. `image_dataset` is the ``(uint8 image, int64 label)``
dataset of a list of files, every kind converted to the channels asked for.

Decoding is `kres.images.decode`, the one decoder of kres (exports decode
served images with it too): all channels kept, the first frame of an
animated GIF, then one conversion that cannot fail (grayscale repeated to
RGB, alpha dropped, RGB converted to grayscale for one-channel models;
TensorFlow converts CMYK JPEGs to RGB itself). `scan` and `image_dataset`
share it, so what the scan passes, the pipeline decodes.
"""

import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor

from kres import checks
from kres.backends import has_tensorflow
from kres.data.folder_scan import (
    IMAGE_EXTENSIONS,
    KINDS,
    LISTED,
    SPLIT_NAMES,
    FolderScan,
    is_hidden,
    relative_path,
)
from kres.data.label_file import labelled_listing, read_labels
from kres.native_output import native_stderr_hidden

# Above this many files, `scan` shows a progress bar (progress=None).
PROGRESS_FILES = 500


def _probe(path):
    """``(height, width, channels, jpeg components, header)`` of one file (graph code)."""
    import tensorflow as tf

    from kres.images import decode_stored

    data = tf.io.read_file(path)
    shape = tf.shape(decode_stored(data))
    components = tf.cond(tf.io.is_jpeg(data),
                         lambda: tf.image.extract_jpeg_shape(data)[2], lambda: shape[2])
    return shape[0], shape[1], shape[2], components, tf.strings.substr(data, 0, 32)


def _kind(channels, components, header):
    """One of `KINDS`, from the decoded channels, a JPEG's components and the header."""
    if header.startswith(b"\xff\xd8") and components == 4:
        return "cmyk"
    if header.startswith(b"GIF8"):
        return "palette"
    if header.startswith(b"\x89PNG") and len(header) > 25 and header[25] == 3:
        return "palette"
    if header.startswith(b"BM") and len(header) > 29 and int.from_bytes(header[28:30],
                                                                          "little") <= 8:
        return "palette"
    return KINDS[channels - 1]  # grayscale, grayscale+alpha, rgb, rgba


def decode_error_reason(error):
    """TensorFlow's message for a file, on one line, without the op's decorations."""
    message = getattr(error, "message", None) or str(error)
    message = re.sub(r"\{\{[^}]*\}\}\s*", "", message)
    message = re.sub(r"\s*\[Op:\w+\](\s*name:.*)?", "", message)
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


# --- Scanning ------------------------------------------------------------------


def _listing(root):
    """``(layout, {split: {class: [relative paths of image files]}}, ignored)``."""
    ignored = []
    entries = sorted(os.scandir(root), key=lambda e: e.name)
    folders = [e.name for e in entries if e.is_dir() and not is_hidden(e.name)]
    for e in entries:
        if is_hidden(e.name) or not e.is_dir():
            ignored.append(e.name + ("/" if e.is_dir() else ""))
    split_folders = [f for f in folders if f in SPLIT_NAMES]
    if split_folders:
        others = [f for f in folders if f not in SPLIT_NAMES]
        if others:
            raise ValueError(
                f"The image folder {root} mixes split folders ({', '.join(split_folders)}) with "
                f"other folders ({', '.join(others[:LISTED])}): use root/train/<class>/ (with "
                f"optional val/ and test/) or root/<class>/, not both. Received: dataset={root!r}"
            )
        if "train" not in split_folders:
            raise ValueError(
                f"The image folder {root} has {' and '.join(f + '/' for f in split_folders)} "
                f"but no train/: add root/train/<class>/ (or, if {split_folders[0]!r} is a "
                f"class, rename it). Received: dataset={root!r}"
            )
        layout, tops = "splits", {s: os.path.join(root, s) for s in split_folders}
    else:
        layout, tops = "flat", {"all": root}
    files = {}
    for split_name, top in tops.items():
        classes = {}
        entries = sorted(os.scandir(top), key=lambda e: e.name) if layout == "splits" else entries
        for entry in entries:
            relative = (f"{split_name}/" if layout == "splits" else "") + entry.name
            if is_hidden(entry.name) or not entry.is_dir():
                if layout == "splits":  # the flat root's own files are listed above
                    ignored.append(relative + ("/" if entry.is_dir() else ""))
                continue
            classes[entry.name] = _class_files(root, entry.path, ignored)
        files[split_name] = classes
    return layout, files, ignored


def _class_files(root, folder, ignored):
    """The image files under one class folder (recursively), sorted; the rest to `ignored`."""
    images = []
    for directory, subdirs, names in os.walk(folder):
        for d in [d for d in subdirs if is_hidden(d)]:
            ignored.append(relative_path(root, os.path.join(directory, d)) + "/")
            subdirs.remove(d)
        subdirs.sort()
        for name in names:
            path = relative_path(root, os.path.join(directory, name))
            if not is_hidden(name) and name.lower().endswith(IMAGE_EXTENSIONS):
                images.append(path)
            else:
                ignored.append(path)
    return sorted(images)


def scan(root, *, labels=None, class_names=None, progress=None):
    """Reads every image of a folder once, as training would, and reports on it.

    Lists ``root/train|val|test/<class>/`` or ``root/<class>/`` (class folders
    searched recursively; hidden files and folders skipped), or, with
    `labels`, the images a CSV file labels (`kres.data.label_file`), then
    decodes every file whose suffix is in `IMAGE_EXTENSIONS` with TensorFlow,
    in parallel (a ``tf.data`` map; the few files it drops are decoded again
    one by one to get TensorFlow's message); without TensorFlow, with
    `kres.data.file_decoding` in threads.

    With `labels`, the classes are the file's labels, not folders: a path
    starting with ``train/``, ``val/`` or ``test/`` is in that split (all
    paths do, or none: then the folder is one pool); a file that gives
    several labels to an image makes the scan multi-label (every image's
    label a tuple of class indices). The images in the folder that the file
    does not list are counted (`FolderScan.unlabelled`), not read.

    Args:
        root: the folder.
        labels: a CSV file of ``path,label`` or ``path,label1;label2`` rows
            (paths relative to `root`), or ``None`` for class folders.
        class_names: with `labels`, the classes to label with, in their index
            order (a trained model's): a label outside them is refused.
            Default: the file's labels, sorted.
        progress: show a progress bar (`keras.utils.Progbar`; where the output
            is not a terminal, one line when the scan ends): ``None`` for one
            when there are more than `PROGRESS_FILES` files, or ``True``/``False``.

    Returns:
        A `FolderScan`.

    Raises:
        ValueError: naming `root` (``dataset=``) when it is not a directory, has
            no class folders, has no image files, has val/ or test/ but no
            train/, mixes split and other folders, or has a class folder in
            val/ or test/ that train/ lacks, or one without image files; with
            `labels`, naming ``labels=``: the file's problems
            (`kres.data.label_file.read_labels`), listed files that are
            missing or not images, labels outside `class_names`, paths that
            mix split folders and others.

    Example:

    >>> import os, tempfile
    >>> import numpy as np
    >>> import tensorflow as tf
    >>> from kres.data.folders import scan
    >>> folder = tempfile.TemporaryDirectory()
    >>> png = tf.io.encode_png(np.zeros((8, 6, 3), "uint8"))
    >>> for path in ["cat/1.png", "cat/2.png", "dog/1.png"]:
    ...     os.makedirs(os.path.join(folder.name, os.path.dirname(path)), exist_ok=True)
    ...     tf.io.write_file(os.path.join(folder.name, path), png)
    >>> with open(os.path.join(folder.name, "dog", "2.jpg"), "w") as f:
    ...     _ = f.write("not an image")
    >>> s = scan(folder.name)
    >>> s.class_names, s.counts(), [path for path, _ in s.bad], s.max_size
    (['cat', 'dog'], {'all': {'cat': 2, 'dog': 1}}, ['dog/2.jpg'], (8, 6))
    >>> folder.cleanup()
    """
    if not isinstance(root, str | os.PathLike) or not os.path.isdir(root):
        raise ValueError(f"dataset must be a directory of images (root/<class>/*.jpg or "
                         f"root/train/<class>/*.jpg). Received: dataset={root!r}")
    if progress is not None:
        checks.boolean("progress", progress)
    root = os.path.abspath(os.fspath(root))
    unlabelled, label_path = [], None
    if labels is not None:
        label_file = read_labels(labels)
        label_path = label_file.path
        layout, listed, ignored, unlabelled, class_names = labelled_listing(
            root, label_file, class_names)
    else:
        if class_names is not None:
            checks.fail("class_names", class_names, "is for a folder labelled by a CSV file "
                                                    "(labels=)")
        layout, listed, ignored, class_names = _folder_listing(root)
    paths = [p for items in listed.values() for p, _ in items]
    if not paths:
        shown = ", ".join(ignored[:5]) + (", ..." if len(ignored) > 5 else "")
        raise ValueError(
            f"The image folder {root} has no image files (suffixes "
            f"{', '.join(IMAGE_EXTENSIONS)}) in its class folders"
            + (f"; it has {len(ignored)} other file{'s' * (len(ignored) != 1)}: {shown}"
               if ignored else "")
            + f". Received: dataset={root!r}")
    # libjpeg prints its own line for each file that fails; the summary names them.
    with native_stderr_hidden():
        found = _decode_all(root, paths, progress)
    images, bad = {}, []
    kinds = dict.fromkeys(KINDS, 0)
    heights, widths = [], []
    for split_name, listed_items in listed.items():
        items = []
        for path, label in listed_items:
            result = found[path]
            if isinstance(result, str):
                bad.append((path, result))
                continue
            height, width, channels, components, header = result
            items.append((path, label))
            kinds[_kind(channels, components, header)] += 1
            heights.append(height)
            widths.append(width)
        images[split_name] = sorted(items)
    sizes = ((min(heights), min(widths)), (max(heights), max(widths))) if heights else (
        (0, 0), (0, 0))
    return FolderScan(root=root, layout=layout, class_names=class_names, images=images,
                      bad=sorted(bad), ignored=sorted(ignored), kinds=kinds,
                      min_size=sizes[0], max_size=sizes[1], labels_file=label_path,
                      unlabelled=sorted(unlabelled))


def _folder_listing(root):
    """``(layout, {split: [(path, label)]}, ignored, class names)`` of class folders."""
    layout, files, ignored = _listing(root)
    class_names = sorted({c for classes in files.values() for c in classes})
    if not class_names:
        where = "root/train/<class>/" if layout == "splits" else "root/<class>/"
        raise ValueError(f"The image folder {root} has no class folders: put each class's "
                         f"images in {where}. Received: dataset={root!r}")
    first = "train" if layout == "splits" else "all"
    missing = [c for c in class_names if c not in files[first]]
    if missing:
        where = [f"{s}/" for s in files if set(missing) & set(files[s])]
        raise ValueError(
            f"The image folder {root} has classes that train/ lacks: "
            f"{', '.join(missing[:LISTED])} (in {', '.join(where)}). Every class needs "
            f"training images. Received: dataset={root!r}"
        )
    has_images = any(images for classes in files.values() for images in classes.values())
    empty = [c for c in class_names if not files[first][c]]
    if empty and has_images:
        where = "train/" if layout == "splits" else "the folder"
        raise ValueError(
            f"The image folder {root} has class folders without image files in {where}: "
            f"{', '.join(empty[:LISTED])}. Remove them or add images. Received: dataset={root!r}"
        )
    listed = {split_name: [(path, label) for label, name in enumerate(class_names)
                           for path in classes.get(name, ())]
              for split_name, classes in files.items()}
    return layout, listed, ignored, class_names


def _decode_all(root, paths, progress):
    """relative path -> ``(h, w, channels, components, header)``, or the reason it failed."""
    bar = None
    if progress or (progress is None and len(paths) > PROGRESS_FILES):
        import keras

        # Redrawn in place in a terminal; one line at the end in a log file or a pipe
        # (Keras's bar redraws on any POSIX system, a line every 0.05 s in a file).
        bar = keras.utils.Progbar(len(paths), unit_name="file",
                                  verbose=1 if sys.stdout.isatty() else 2)
    found = (_decode_all_tf if has_tensorflow() else _decode_all_files)(root, paths, bar)
    if bar is not None:
        bar.update(len(paths), finalize=True)
    return found


def _decode_all_files(root, paths, bar):
    """`_decode_all` without TensorFlow (`kres.data.file_decoding`), in threads."""
    from kres.data import file_decoding

    def probe(path):
        try:
            return path, file_decoding.probe(os.path.join(root, path))
        except file_decoding.DecodeError as error:
            return path, str(error)

    found = {}
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        for path, result in pool.map(probe, paths):
            found[path] = result
            if bar is not None and len(found) % 256 == 0:
                bar.update(len(found))
    return found


def _decode_all_tf(root, paths, bar):
    """`_decode_all` with TensorFlow's decoders, in a tf.data map."""
    import tensorflow as tf

    absolute = [os.fsencode(os.path.join(root, p)) for p in paths]
    ds = tf.data.Dataset.from_tensor_slices((tf.range(len(paths), dtype=tf.int64),
                                             tf.constant(absolute, tf.string)))
    # Batched: per-element iteration in Python costs more than decoding a small image.
    # The decoding is graph code already (tf.cond): no AutoGraph rewrite (kres.data.pipeline).
    probe = tf.autograph.experimental.do_not_convert(lambda i, path: (i, *_probe(path)))
    ds = ds.map(probe, num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=False).ignore_errors().batch(256)
    found = {}
    done = 0
    for batch in ds.as_numpy_iterator():
        for i, height, width, channels, components, header in zip(*batch):
            found[paths[i]] = (int(height), int(width), int(channels), int(components),
                               bytes(header))
        done += len(batch[0])
        if bar is not None:
            bar.update(done)
    for path, raw in zip(paths, absolute):
        if path not in found:  # dropped by ignore_errors: decode it again for the message
            try:
                result = _probe(tf.constant(raw))
            except (tf.errors.OpError, ValueError) as error:
                found[path] = decode_error_reason(error)
            else:
                found[path] = (*(int(v) for v in result[:4]), bytes(result[4].numpy()))
    return found


def image_dataset(root, items, *, channels=3, num_classes=None):
    """The ``(uint8 [h, w, channels], label)`` dataset of files in a folder.

    Decodes with `kres.images.decode` (in parallel, in the order of `items`): grayscale
    is repeated to RGB, alpha dropped, palette images expanded, a GIF's first
    frame kept, CMYK JPEGs converted to RGB (by TensorFlow); with
    ``channels=1``, colour images become their luma. Use the files of a
    `scan`: a file that does not decode fails the iteration.

    Args:
        root: the folder the paths are relative to.
        items: ``(relative_path, label)`` pairs: an integer label (an int64
            label in the dataset), or a tuple of class indices (multi-label:
            a float32 multi-hot vector of `num_classes`).
        channels: 3 or 1.
        num_classes: the classes, for multi-label items.

    Returns:
        A `tf.data.Dataset`.

    Raises:
        ValueError: for `channels` other than 1 or 3, or items that are not
            ``(path, label)`` pairs, or multi-label items without `num_classes`.

    Example:

    >>> import os, tempfile
    >>> import numpy as np
    >>> import tensorflow as tf
    >>> from kres.data.folders import image_dataset
    >>> folder = tempfile.TemporaryDirectory()
    >>> tf.io.write_file(os.path.join(folder.name, "white.png"),
    ...                  tf.io.encode_png(np.full((8, 6, 3), 255, "uint8")))
    >>> ds = image_dataset(folder.name, [("white.png", 2)], channels=1)
    >>> [(tuple(image.shape), int(image[0, 0, 0]), int(label)) for image, label in ds]
    [((8, 6, 1), 255, 2)]
    >>> ds = image_dataset(folder.name, [("white.png", (0, 2))], num_classes=3)
    >>> [label.numpy().tolist() for _, label in ds]
    [[1.0, 0.0, 1.0]]
    >>> folder.cleanup()
    """
    import tensorflow as tf

    from kres.images import decode

    checks.choice("channels", channels, (1, 3))
    multi = bool(items) and isinstance(items[0][1], tuple | list)
    try:
        paths = [os.fsencode(os.path.join(os.fspath(root), p)) for p, _ in items]
        if multi:
            checks.positive_int("num_classes", num_classes)
            labels = multi_hot([label for _, label in items], num_classes)
        else:
            labels = tf.constant([int(label) for _, label in items], tf.int64,
                                 shape=[len(items)])
    except (TypeError, IndexError):
        checks.fail("items", items, "must be (relative_path, label) pairs")
    ds = tf.data.Dataset.from_tensor_slices((tf.constant(paths, tf.string, shape=[len(paths)]),
                                             labels))
    read = tf.autograph.experimental.do_not_convert(
        lambda path, label: (decode(tf.io.read_file(path), channels), label))
    return ds.map(read,
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def multi_hot(labels, num_classes):
    """``[n, num_classes]`` float32 array: 1 at each item's class indices."""
    import numpy as np

    out = np.zeros((len(labels), num_classes), np.float32)
    for row, label in enumerate(labels):
        out[row, list(label)] = 1.0
    return out
