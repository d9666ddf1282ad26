"""An image folder as a dataset: its settings checked, its scan, splits and training files.

`load_folder` is `kres.data.sources.load` for a folder: the scan
(`kres.data.folders.scan`) refuses files that do not decode unless they are
skipped, the splits are the folder's own or seeded stratified ones
(`kres.data.splits`), checked against a resumed run's, and the training files
are shuffled with the seed. The images are decoded by TensorFlow
(`kres.data.folders.image_dataset`), or where it is not installed by
`kres.data.file_decoding` to the same pixels (`kres.data.batches.FolderImages`):
`check_readable` refuses a folder where neither can.
"""

import os

import numpy as np

from kres import checks
from kres.backends import has_tensorflow
from kres.data import folder_scan
from kres.data import splits as ksplits
from kres.data.catalog import DatasetSpec
from kres.preprocessing import IMAGENET_GRAY_MEAN, IMAGENET_GRAY_STD, IMAGENET_MEAN, IMAGENET_STD


def check_readable(root):
    """Refuses an image folder where nothing can decode it: without TensorFlow,
    Pillow and simplejpeg (`kres.data.file_decoding`) decode it.

    Raises:
        RuntimeError: naming the folder and the missing packages.
    """
    if has_tensorflow():
        return
    from kres.data.file_decoding import missing_packages

    missing = missing_packages()
    if missing:
        raise RuntimeError(
            f"The image folder {root!r} is decoded, without TensorFlow, by "
            f"{' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
            f"installed: pip install {' '.join(missing)} (or install tensorflow).")


def load_folder(root, *, subset, val_size, skip_bad_images, splits, seed, channels, progress,
                labels, class_names):
    """`kres.data.sources.load` of an image folder: the fields of its `Data`
    (see `load` for the arguments and what is refused)."""
    channels = 3 if channels is None else channels
    _check_folder_settings(subset, val_size, skip_bad_images, splits, seed, channels)
    check_readable(root)
    from kres.data import folders

    scan = folders.scan(root, labels=labels, class_names=class_names, progress=progress)
    if scan.bad and not skip_bad_images:
        _refuse_bad_images(scan, root)
    if val_size is not None and "val" in scan.images:
        raise ValueError(
            f"val_size holds validation images out of train/, but {scan.root} has a val/ "
            f"folder: drop val_size or the val/ folder. Received: val_size={val_size!r}")
    splits = _folder_splits(scan, root, splits, val_size, seed, every_class=class_names is None)
    train = _training_items(scan, splits, subset, seed)
    gray = channels == 1
    spec = DatasetSpec(None, None, channels, len(scan.class_names),
                       IMAGENET_GRAY_MEAN if gray else IMAGENET_MEAN,
                       IMAGENET_GRAY_STD if gray else IMAGENET_STD, augment="imagenet",
                       val_size=len(splits["val"]))

    def read(items):
        if has_tensorflow():
            return folders.image_dataset(scan.root, items, channels=channels,
                                         num_classes=len(scan.class_names))
        from kres.data.batches import FolderImages

        labels = [label for _, label in items]
        labels = (folders.multi_hot(labels, len(scan.class_names)) if scan.multi_label
                  else np.array(labels, np.int64))
        return FolderImages(scan.root, tuple(p for p, _ in items), labels, channels)

    return dict(name=os.path.basename(os.path.normpath(root)), spec=spec,
                train=read(train), val=read(splits["val"]), test=read(splits["test"]),
                sizes={"train": len(train), "val": len(splits["val"]),
                       "test": len(splits["test"])},
                class_names=list(scan.class_names), folder_scan=scan, splits=splits,
                skipped=list(scan.bad), multi_label=scan.multi_label)


def _check_folder_settings(subset, val_size, skip_bad_images, splits, seed, channels):
    checks.boolean("skip_bad_images", skip_bad_images)
    checks.integer("seed", seed, minimum=0)
    checks.choice("channels", channels, (1, 3))
    checks.positive_int("subset", subset, optional=True)
    if splits is not None and not isinstance(splits, ksplits.Splits):
        checks.fail("splits", splits, "must be a kres.data.splits.Splits (from read_splits or "
                                      "split)")
    if val_size is not None and not (
            (checks.is_int(val_size) and val_size >= 1)
            or (checks.is_number(val_size) and not checks.is_int(val_size)
                and 0 < val_size < 1)):
        checks.fail("val_size", val_size, "must be a positive integer (images) or a "
                                          "fraction in (0, 1)")


def _refuse_bad_images(scan, root):
    listed = "\n".join(f"  {path}: {reason}" for path, reason in scan.bad[:folder_scan.LISTED])
    more = (f"\n  ... and {len(scan.bad) - folder_scan.LISTED} more"
            if len(scan.bad) > folder_scan.LISTED else "")
    them = "it" if len(scan.bad) == 1 else "them"
    raise ValueError(
        f"The image folder {scan.root} has {len(scan.bad)} image file"
        f"{'s' * (len(scan.bad) != 1)} that {'does' if len(scan.bad) == 1 else 'do'} not "
        f"decode:\n{listed}{more}\n"
        f"Fix or remove {them}, or train without {them}: --skip-bad-images (kres train), "
        f"skip_bad_images=True (kres.data.sources.load). Received: dataset={root!r}, "
        f"skip_bad_images=False"
    )


def _folder_splits(scan, root, splits, val_size, seed, every_class=True):
    """The folder's splits: the ones given (checked), else a seeded stratified split;
    every split holding images."""
    if splits is not None:
        splits = _check_folder_splits(scan, splits)
    else:
        pool = len(scan.images["train" if scan.layout == "splits" else "all"])
        fraction = 0.1
        if val_size is not None:
            most = pool - len(scan.class_names)
            if checks.is_int(val_size) and val_size > most:
                raise ValueError(
                    f"val_size must be at most {most}: {pool} images to take it from, and "
                    f"each of the {len(scan.class_names)} classes keeps one for training. "
                    f"Received: val_size={val_size!r}")
            fraction = val_size / pool if checks.is_int(val_size) else val_size
        splits = ksplits.split(scan, val_fraction=fraction, test_fraction=0.1, seed=seed,
                               every_class=every_class)
    for s in ("val", "test"):
        if splits[s]:
            continue
        if s in scan.images:
            raise ValueError(f"The image folder {scan.root} has no {s} image that decodes in "
                             f"{s}/. Received: dataset={root!r}")
        raise ValueError(
            f"The image folder {scan.root} has too few images to hold out {s} images "
            f"({scan.num_images} images in {len(scan.class_names)} classes, each class "
            f"keeping one for training): add images, or a {s}/ folder. "
            f"Received: dataset={root!r}")
    return splits


def _training_items(scan, splits, subset, seed):
    """The training split's items (a stratified `subset` of them), shuffled once."""
    train = list(splits["train"])
    if subset is not None:
        if subset > len(train):
            raise ValueError(
                f"subset must be between 1 and {len(train)} (the training images of "
                f"{scan.root}). Received: subset={subset!r}")
        train = ksplits.stratified(train, len(scan.class_names), (subset / len(train),),
                                   seed=seed, salt=1, keep=0)[0]
    # A folder lists its files class by class: shuffle them once for shuffle buffers
    # smaller than the split.
    return [train[i] for i in np.random.default_rng([seed, 2]).permutation(len(train))]


def _check_folder_splits(scan, splits):
    """`splits` if they fit the scanned folder (without the files skipped as bad)."""
    if list(splits.class_names) != list(scan.class_names):
        raise ValueError(
            f"splits name the classes {splits.class_names}, but {scan.root} has "
            f"{scan.class_names}: use the folder the splits were made for, or new splits. "
            f"Received: splits with class_names={splits.class_names!r}")
    good = {item for items in scan.images.values() for item in items}
    bad = {path for path, _ in scan.bad}
    items = {s: list(splits[s]) for s in folder_scan.SPLIT_NAMES}
    missing = [p for s in folder_scan.SPLIT_NAMES for p, label in items[s]
               if (p, label) not in good and p not in bad]
    if missing:
        listed = ", ".join(missing[:folder_scan.LISTED])
        extra = len(missing) - folder_scan.LISTED
        more = f" and {extra} more" if extra > 0 else ""
        raise ValueError(
            f"splits list {len(missing)} file{'s' * (len(missing) != 1)} that {scan.root} "
            f"no longer has (or has under another class): {listed}{more}. Received: "
            f"splits for root={splits.root!r}")
    kept = {s: [item for item in items[s] if item[0] not in bad] for s in items}
    return ksplits.Splits(kept, class_names=splits.class_names, root=scan.root,
                          sources=splits.sources)
