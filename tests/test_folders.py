"""Image folders as users have them, written here with Pillow: mixed kinds and sizes,
a corrupt JPEG, stray files; the scan, the refusal, the skip, the splits."""

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from kres import data as datasets
from kres.data import folders
from kres.data import pipeline as augment
from kres.data import splits as ksplits

# A 7 x 9 grayscale JPEG XL (Pillow cannot write one; pillow-jxl-plugin did).
JXL_GRAY = bytes.fromhex(
    "ff0a40000c80a4b8110013880200b401b59f200000152aa38c1bbc9cebf9f24387c5b48deb0c6db56d"
    "610963b3bd304848386b18dccdf1d8050e64502105d2e0c2b5cb4847928c31468acfa2ee4e047682cb"
    "b96f073ba9dfce901e08bc454efad2fdc0dd4be0814dfd44788310266cdbd9c3ac600d22f26f21ef81"
    "aa00")
BROKEN = "cat/broken.jpg"


def _pixels(seed, height, width):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _save(path, image, fmt):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt)


# One file of each kind per class, every one a different size: name -> (format, kind).
KINDS = {
    "rgb.jpg": ("JPEG", "rgb"), "gray.png": ("PNG", "grayscale"),
    "rgba.png": ("PNG", "rgba"), "cmyk.jpg": ("JPEG", "cmyk"),
    "palette.png": ("PNG", "palette"), "anim.gif": ("GIF", "palette"),
    "rgb.bmp": ("BMP", "rgb"), "rgb.webp": ("WEBP", "rgb"),
    "gray_alpha.png": ("PNG", "grayscale+alpha"), "Upper.JPG": ("JPEG", "rgb"),
}
MODES = {"rgb": "RGB", "grayscale": "L", "rgba": "RGBA", "cmyk": "CMYK", "palette": "P",
         "grayscale+alpha": "LA"}


def _write_kinds(folder, seed, sizes):
    for i, (name, (fmt, kind)) in enumerate(KINDS.items()):
        height, width = sizes[i]
        image = Image.fromarray(_pixels(seed + i, height, width)).convert(MODES[kind])
        if name == "anim.gif":  # two frames: the first one counts
            second = Image.fromarray(_pixels(seed + 99, height, width)).convert("P")
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            image.save(folder / name, "GIF", save_all=True, append_images=[second])
        else:
            _save(folder / name, image, fmt)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """root/<cat|dog>/: ten kinds each in different sizes, a JPEG XL, a corrupt JPEG, a
    .DS_Store, a notes.txt, an AppleDouble file and a hidden folder."""
    root = tmp_path_factory.mktemp("mixed")
    for c, name in enumerate(("cat", "dog")):
        sizes = [(8 + i + c, 10 + 2 * i) for i in range(len(KINDS))]
        _write_kinds(root / name, 10 * c, sizes)
    (root / "dog" / "gray.jxl").write_bytes(JXL_GRAY)
    good_jpeg = io.BytesIO()
    Image.fromarray(_pixels(5, 16, 16)).save(good_jpeg, "JPEG")
    # A JPEG header, then junk: libjpeg also prints a line of its own for it.
    (root / BROKEN).write_bytes(good_jpeg.getvalue()[:20] + b"not a jpeg body" * 10)
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1" + bytes(20))
    (root / "dog" / "notes.txt").write_text("taken in 2019\n")
    (root / "dog" / "._rgb.jpg").write_bytes(b"\0\5\26\7" + bytes(60))
    (root / "cat" / ".thumbs").mkdir()
    (root / "cat" / ".thumbs" / "t.jpg").write_bytes(good_jpeg.getvalue())
    return root


@pytest.fixture(scope="module")
def mixed_scan(mixed):
    return folders.scan(str(mixed), progress=False)


def test_scan_finds_the_corrupt_file_the_strays_the_kinds_and_sizes(mixed, mixed_scan):
    s = mixed_scan
    assert s.root == str(mixed) and s.layout == "flat" and s.class_names == ["cat", "dog"]
    assert [p for p, _ in s.bad] == [BROKEN]
    assert "jpeg" in s.bad[0][1].lower() and "\n" not in s.bad[0][1]
    assert s.ignored == [".DS_Store", "cat/.thumbs/", "dog/._rgb.jpg", "dog/notes.txt"]
    assert s.counts() == {"all": {"cat": 10, "dog": 11}}
    assert sorted(p for p, _ in s.images["all"])[:2] == ["cat/Upper.JPG", "cat/anim.gif"]
    expected = {k: 0 for k in folders.KINDS}
    for _, kind in KINDS.values():
        expected[kind] += 2
    expected["grayscale"] += 1  # the JPEG XL
    assert s.kinds == expected
    # Heights 8..18 and widths 10..28, but the JPEG XL is 9 high and 7 wide.
    assert s.min_size == (8, 7) and s.max_size == (18, 28)
    text = s.summary()
    for needed in ("2 classes, 21 images", BROKEN, "Ignored 4 files", ".DS_Store",
                   "8 rgb", "2 cmyk", "8x7 to 18x28"):
        assert needed in text, needed
    assert text.splitlines()[1:4] == ["class  all", "cat     10", "dog     11"]
    assert json.loads(json.dumps(s.to_json()))["bad"][0][0] == BROKEN


def test_every_kind_decodes_like_pillow_converts_it(mixed, mixed_scan):
    items = [(p, label) for p, label in mixed_scan.images["all"] if p.startswith("cat/")]
    for channels, mode in ((3, "RGB"), (1, "L")):
        decoded = list(folders.image_dataset(str(mixed), items, channels=channels)
                       .as_numpy_iterator())
        for (path, _), (image, got_label) in zip(items, decoded, strict=True):
            assert image.dtype == np.uint8 and image.shape[-1] == channels and got_label == 0
            with Image.open(mixed / path) as original:
                if path.endswith(".gif"):
                    original.seek(0)
                source = original.convert("RGB") if original.mode != "L" else original
                expected = np.asarray(source.convert(mode), dtype=np.int32).reshape(image.shape)
            lossy = path.lower().endswith((".jpg", ".webp"))
            # Luma: TF's and Pillow's rounding of the same weights differ by one level.
            tolerance = 12 if lossy else (1 if channels == 1 else 0)
            assert np.abs(image.astype(np.int32) - expected).max() <= tolerance, (path, channels)


def test_a_corrupt_file_is_refused_by_path_before_any_training(mixed):
    with pytest.raises(ValueError, match=r"(?s)1 image file that does not decode:"
                                         rf".*{BROKEN}: .*--skip-bad-images"):
        datasets.load(str(mixed))


@pytest.mark.parametrize("channels", [3, 1])
def test_skip_bad_images_loads_the_rest_and_records_the_skip(mixed, channels):
    d = datasets.load(str(mixed), skip_bad_images=True, channels=channels, seed=3)
    assert [p for p, _ in d.skipped] == [BROKEN] and d.folder_scan.bad == d.skipped
    assert d.class_names == ["cat", "dog"] and d.spec.channels == channels
    assert d.spec.augment == "imagenet" and len(d.spec.mean) == channels
    assert d.sizes == {"train": 17, "val": 2, "test": 2}
    assert sum(d.sizes.values()) == 21 and d.spec.val_size == 2
    files = {p for s in ("train", "val", "test") for p, _ in d.splits[s]}
    assert len(files) == 21 and BROKEN not in files
    for name in ("train", "val", "test"):
        images = list(getattr(d, name).as_numpy_iterator())
        assert len(images) == d.sizes[name]
        assert all(x.dtype == np.uint8 and x.ndim == 3 and x.shape[-1] == channels
                   for x, _ in images)
    x, y = next(iter(augment.pipeline(d.train, d.spec, training=True, batch_size=8, image_size=16,
                                      channels=3, num_classes=2, seed=0)))
    assert x.shape == (8, 16, 16, 3) and y.shape == (8, 2)


def _scan_of(counts, layout="flat", **images):
    """A `FolderScan` of made-up files: class c has counts[c] images."""
    names = [f"class{c}" for c in range(len(counts))]
    items = [(f"{names[c]}/{i:03d}.png", c) for c, n in enumerate(counts) for i in range(n)]
    if layout == "splits":
        items = [(f"train/{p}", c) for p, c in items]
    return folders.FolderScan(root="/data", layout=layout, class_names=names,
                              images={"train" if layout == "splits" else "all": items, **images})


def test_stratified_split_keeps_the_proportions_and_every_class_in_train():
    counts = [200, 60, 30, 5, 2, 1]
    s = _scan_of(counts)
    splits = ksplits.split(s, val_fraction=0.1, test_fraction=0.2, seed=0)
    assert sorted(splits) == ["test", "train", "val"]
    per_split = {k: np.bincount([y for _, y in v], minlength=6) for k, v in splits.items()}
    total = sum(counts)
    assert per_split["val"].sum() == round(0.1 * total)
    assert per_split["test"].sum() == round(0.2 * total)
    np.testing.assert_allclose(per_split["val"][:3], [20, 6, 3], atol=1)
    np.testing.assert_allclose(per_split["test"][:3], [40, 12, 6], atol=1)
    assert (per_split["train"] >= 1).all() and per_split["train"][5] == 1  # the class of one
    all_files = [p for v in splits.values() for p, _ in v]
    assert sorted(all_files) == sorted(p for p, _ in s.images["all"])  # disjoint, complete
    assert ksplits.split(s, val_fraction=0.1, test_fraction=0.2, seed=0) == splits
    other = ksplits.split(s, val_fraction=0.1, test_fraction=0.2, seed=1)
    assert other["val"] != splits["val"]
    # Adding files to one class leaves the other classes' split as it was.
    grown = ksplits.split(_scan_of([200, 61, 30, 5, 2, 1]), val_fraction=0.1,
                          test_fraction=0.2, seed=0)
    assert [i for i in grown["test"] if i[1] == 0] == [i for i in splits["test"] if i[1] == 0]
    # A tiny folder still gets one validation and one test image.
    tiny = ksplits.split(_scan_of([2, 2]), seed=0)
    assert [len(tiny[k]) for k in ("train", "val", "test")] == [2, 1, 1]


def test_splits_layout_uses_its_folders_and_takes_a_missing_val_from_train():
    test_items = [("test/class0/a.png", 0), ("test/class1/b.png", 1)]
    s = _scan_of([30, 10], layout="splits", test=test_items)
    splits = ksplits.split(s, val_fraction=0.25, seed=0)
    assert splits["test"] == test_items and splits.sources["test"] == "test/"
    assert np.bincount([y for _, y in splits["val"]]).tolist() == [8, 2]
    assert len(splits["train"]) == 30 and "25% of train/" in splits.sources["val"]
    with_val = _scan_of([30, 10], layout="splits", val=[("val/class0/v.png", 0)],
                        test=test_items)
    splits = ksplits.split(with_val, seed=0)
    assert splits["val"] == [("val/class0/v.png", 0)] and len(splits["train"]) == 40


def test_splits_round_trip_through_their_file(tmp_path):
    splits = ksplits.split(_scan_of([12, 7, 3]), seed=5)
    path = tmp_path / "run" / "splits.json"
    ksplits.write_splits(str(path), splits)
    back = ksplits.read_splits(str(path))
    assert back == splits and back.class_names == ["class0", "class1", "class2"]
    assert back.root == "/data" and back.sources == splits.sources
    assert not os.path.exists(f"{path}.tmp")


@pytest.mark.parametrize("content, message", [
    ("not json", r"readable splits file"),
    ({"format": "other"}, r"not a kres splits file"),
    ({"class_names": ["a", "a"]}, r"distinct names"),
    ({"splits": {"train": []}}, r"exactly the splits train, val, test"),
    ({"splits": {"train": [["a/1.png", 2]], "val": [], "test": []}}, r"label in 0..1"),
    ({"splits": {"train": [["../1.png", 0]], "val": [], "test": []}}, r"outside its root"),
    ({"splits": {"train": [["a/1.png", 0]], "val": [["a/1.png", 0]], "test": []}},
     r"'a/1.png' in both train and val"),
    ({"splits": {"train": [], "val": [["a/1.png", 0]], "test": []}}, r"empty train split"),
])
def test_read_splits_refuses_what_is_not_a_splits_file(tmp_path, content, message):
    path = tmp_path / "splits.json"
    if isinstance(content, str):
        path.write_text(content)
    else:
        value = {"format": "kres-splits", "version": 1, "class_names": ["a", "b"],
                 "splits": {"train": [["a/1.png", 0]], "val": [], "test": []}}
        path.write_text(json.dumps({**value, **content}))
    with pytest.raises(ValueError, match=message + r".*Received: splits="):
        ksplits.read_splits(str(path))


def test_class_weights_are_sklearns_balanced():
    labels = [0] * 6 + [1] * 3 + [2]
    weights = ksplits.class_weights(labels, 3)
    assert weights == pytest.approx({c: 10 / (3 * n) for c, n in enumerate((6, 3, 1))})
    splits = {"train": [(f"{i}.png", y) for i, y in enumerate(labels)], "val": [("v", 2)]}
    assert ksplits.class_weights(splits, 3) == weights
    sum_per_class = [weights[y] * labels.count(y) for y in range(3)]
    assert sum_per_class == pytest.approx([10 / 3] * 3)
    with pytest.raises(ValueError, match=r"Classes \[3\] have no training examples"):
        ksplits.class_weights(labels, 4)
    with pytest.raises(ValueError, match=r"labels outside 0..1"):
        ksplits.class_weights(labels, 2)


def _tiny_folder(root, layout):
    """Two classes of six tiny PNGs; "splits" puts four in train/, one in val/, one in test/."""
    for c, name in enumerate(("a", "b")):
        for i in range(6):
            split = ("train",) * 4 + ("val", "test")
            folder = root / (split[i] if layout == "splits" else "") / name
            _save(folder / f"{i}.png", Image.fromarray(_pixels(10 * c + i, 6, 5)), "PNG")
    return str(root)


def test_load_with_the_splits_of_an_earlier_run(tmp_path):
    root = _tiny_folder(tmp_path / "flat", "flat")
    first = datasets.load(root, seed=1)
    assert first.folder_scan.layout == "flat" and first.skipped == []
    path = tmp_path / "splits.json"
    ksplits.write_splits(str(path), first.splits)
    again = datasets.load(root, splits=ksplits.read_splits(str(path)), seed=7)
    assert again.splits == first.splits and again.sizes == first.sizes
    os.remove(os.path.join(root, first.splits["test"][0][0]))
    with pytest.raises(ValueError, match=r"splits list 1 file that .* no longer has"):
        datasets.load(root, splits=ksplits.read_splits(str(path)))
    other = ksplits.Splits(first.splits, class_names=["x", "y"])
    with pytest.raises(ValueError, match=r"splits name the classes \['x', 'y'\]"):
        datasets.load(root, splits=other)


def test_load_splits_layout_val_size_and_subset(tmp_path):
    root = _tiny_folder(tmp_path / "splits", "splits")
    d = datasets.load(root)
    assert d.sizes == {"train": 8, "val": 2, "test": 2} and d.splits.sources["val"] == "val/"
    with pytest.raises(ValueError, match=r"has a val/ folder.*Received: val_size=2"):
        datasets.load(root, val_size=2)
    for path, _ in d.splits["val"]:
        os.remove(os.path.join(root, path))
    os.rmdir(os.path.join(root, "val", "a"))
    os.rmdir(os.path.join(root, "val", "b"))
    os.rmdir(os.path.join(root, "val"))
    d = datasets.load(root, val_size=4, subset=3, seed=0)
    assert d.sizes == {"train": 3, "val": 4, "test": 2}
    assert sorted(y for _, y in d.splits["val"]) == [0, 0, 1, 1]  # stratified
    assert {y for x, y in d.train.as_numpy_iterator()} == {0, 1}  # so is the subset
    with pytest.raises(ValueError, match=r"val_size must be at most 6.*Received: val_size=7"):
        datasets.load(root, val_size=7)
    with pytest.raises(ValueError, match=r"subset must be between 1 and 4.*subset=5"):
        datasets.load(root, val_size=4, subset=5)


@pytest.mark.parametrize("files, folders_made, message", [
    (None, (), r"must be a directory.*Received: dataset="),
    (("notes.txt",), (), r"has no class folders.*Received: dataset="),
    (("a/x.txt",), (), r"no image files \(suffixes .jpg.*1 other file: a/x.txt"),
    (("val/a/1.png",), (), r"has val/ but no train/"),
    (("train/a/1.png", "test/b/1.png"), (), r"classes that train/ lacks: b \(in test/\)"),
    (("train/a/1.png", "extra/a/1.png"), (),
     r"mixes split folders \(train\) with other folders \(extra\)"),
    (("a/1.png",), ("b",), r"class folders without image files in the folder: b"),
])
def test_scan_refuses_folders_it_cannot_use(tmp_path, files, folders_made, message):
    root = tmp_path / "data"
    for relative in files or ():
        path = root / relative
        if relative.endswith(".png"):
            _save(path, Image.fromarray(_pixels(0, 4, 4)), "PNG")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
    for relative in folders_made:
        (root / relative).mkdir(parents=True)
    with pytest.raises(ValueError, match=message):
        folders.scan(str(root))


def test_bad_arguments_name_themselves(tmp_path, mixed):
    root = str(mixed)
    for kwargs, message in (({"channels": 2}, r"Received: channels=2"),
                            ({"seed": -1}, r"Received: seed=-1"),
                            ({"skip_bad_images": "yes"}, r"Received: skip_bad_images='yes'"),
                            ({"val_size": 0}, r"Received: val_size=0"),
                            ({"splits": {"train": []}}, r"Received: splits=")):
        with pytest.raises(ValueError, match=message):
            datasets.load(root, **kwargs)
    with pytest.raises(ValueError, match=r"val_fraction and test_fraction must leave"):
        ksplits.split(_scan_of([5, 5]), val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match=r"Received: channels=4"):
        folders.image_dataset(root, [], channels=4)


def test_progress_bar_on_request_is_one_line_outside_a_terminal(mixed, capsys):
    folders.scan(str(mixed), progress=True)
    out = capsys.readouterr().out  # captured: not a terminal
    assert "22/22" in out and "\r" not in out and len(out.strip().splitlines()) == 1


def test_summary_flags_imbalance_and_shortens_long_tables():
    text = _scan_of([200, 60, 30, 5, 2, 1]).summary()
    assert "Imbalance: class0 has 200.0x the images of class5 (200 to 1; more than 3x)" in text
    assert "Balance: class1 has 1.1x" in _scan_of([10, 11]).summary()
    lines = _scan_of(list(range(1, 41))).summary().splitlines()
    assert "... 10 classes between these ..." in lines and len(lines) == 2 + 31 + 1
    assert lines[2].split() == ["class39", "40"] and lines[-2].split() == ["class0", "1"]


# ---------------------------------------------------------------------------
# Through `kres train` and `kres evaluate`.


def test_kres_train_refuses_the_corrupt_image_then_skips_it_and_evaluate_reuses_the_split(
        mixed, tmp_path, capfd):
    from kres.cli import main

    capsys = capfd  # the file descriptors too: what native code prints reaches the user

    run = tmp_path / "run"
    args = ["train", "--model", "cifar_resnet20", "--set", "depths=(1,1,1)",
            "--dataset", str(mixed), "--image-size", "16", "--epochs", "1",
            "--batch-size", "4", "--out", str(run), "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert BROKEN in err and "--skip-bad-images" in err
    assert "Input file read error" not in err  # libjpeg's own line: the message names the file
    assert not run.exists()  # refused before anything was written or trained

    assert main([*args, "--skip-bad-images", "--class-weights"]) == 0
    out = capsys.readouterr().out
    with open(run / "skipped.json") as f:
        assert [s["path"] for s in json.load(f)] == [BROKEN]
    assert BROKEN in (run / "scan.txt").read_text()
    splits = ksplits.read_splits(str(run / "splits.json"))
    assert all(BROKEN not in [p for p, _ in items] for items in splits.values())
    with open(run / "results.json") as f:
        results = json.load(f)
    assert results["train_examples"] == len(splits["train"])
    assert f"test accuracy {results['test_accuracy']:.4f}" in out

    # kres evaluate finds the run's split beside the model: the same test images.
    assert main(["evaluate", str(run / "best.keras"), "--dataset", str(mixed)]) == 0
    printed = dict(zip(*[iter(capsys.readouterr().out.split())] * 2))
    assert float(printed["accuracy"]) == pytest.approx(results["test_accuracy"], abs=1e-4)


def _write_photos(root, counts, start=0):
    """``root/<class>/<i>.png``: `counts` images per class, 12 x 12, tinted by class."""
    for c, (name, count) in enumerate(counts.items()):
        for i in range(start, start + count):
            pixels = (_pixels(100 * c + i, 12, 12) // 2 + 40 * c).astype(np.uint8)
            _save(root / name / f"{i}.png", Image.fromarray(pixels), "PNG")


def test_a_folder_run_resumes_on_its_split_weighs_its_classes_and_evaluates_on_its_split(
        tmp_path, monkeypatch, capsys):
    """After the run started, the folder gains images (a fresh split would differ):
    `kres train --resume` and `kres evaluate` keep to the run's ``splits.json``, and
    `--class-weights` reaches every `model.fit` as the split's balanced weights."""
    import keras

    import kres
    from kres.cli import main
    from kres.training import evaluation, preparation
    from tests.test_finetune import _CrashAt

    root, run = tmp_path / "photos", tmp_path / "run"
    _write_photos(root, {"ant": 16, "bee": 6, "cow": 6})
    fits, loaded = [], []
    real_fit, real_load = keras.Model.fit, evaluation.load_data

    def fit(self, *args, **kwargs):  # the real fit, its class_weight noted
        fits.append(kwargs.get("class_weight"))
        return real_fit(self, *args, **kwargs)

    def load_data(*args, **kwargs):  # the real loader, what it loaded noted
        loaded.append(real_load(*args, **kwargs))
        return loaded[-1]

    monkeypatch.setattr(keras.Model, "fit", fit)
    monkeypatch.setattr(evaluation, "load_data", load_data)
    settings = dict(image_size=16, epochs=2, batch_size=4, class_weights=True,
                    model_overrides={"depths": (1, 1, 1)}, verbose=0)
    with pytest.raises(KeyboardInterrupt):
        kres.train("cifar_resnet20", str(root), run_dir=str(run), **settings,
                   callbacks=[_CrashAt(1)])
    saved = ksplits.read_splits(str(run / "splits.json"))
    _write_photos(root, {"ant": 0, "bee": 6, "cow": 0}, start=6)
    fresh = preparation.load_data(str(root), seed=0, channels=3).splits
    assert [fresh[s] != saved[s] for s in ("train", "val", "test")] == [True] * 3

    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert ksplits.read_splits(str(run / "splits.json")) == saved
    with open(run / "results.json") as f:
        results = json.load(f)
    assert results["train_examples"] == len(saved["train"]) and results["epochs_run"] == 2
    weights = ksplits.class_weights(saved, 3)
    assert weights[0] < 1 < min(weights[1], weights[2])  # 16 ants, 6 bees, 6 cows
    assert fits == [weights, weights]  # the crashed fit and the resumed one

    capsys.readouterr()
    assert main(["evaluate", str(run / "best.keras"), "--dataset", str(root)]) == 0
    assert [d.splits for d in loaded] == [saved]
    printed = dict(zip(*[iter(capsys.readouterr().out.split())] * 2))
    assert float(printed["accuracy"]) == pytest.approx(results["test_accuracy"], abs=1e-4)
    # The run's report names the test images it got wrong by their files, in the
    # class folders of their true classes.
    with open(run / "report.json") as f:
        written = json.load(f)
    test_files = {path: saved.class_names[label] for path, label in saved["test"]}
    assert written["examples"] == len(saved["test"])
    for mistake in written["mistakes"]:
        assert test_files[mistake["file"]] == mistake["true"] != mistake["predicted"]
        assert (root / mistake["file"]).is_file()


# --- Without TensorFlow: kres.data.file_decoding, checked against TensorFlow here ---


def _more_kinds(folder):
    """The kinds `tf.io.decode_image` converts in its own way, each as a file."""
    rgb = _pixels(7, 37, 53)
    gray = rgb[..., 0]
    rgba = np.dstack([rgb, _pixels(8, 37, 53)[..., 0]])
    files = {
        "rgb420.jpg": (Image.fromarray(rgb), {"quality": 90}),
        "rgb444.jpg": (Image.fromarray(rgb), {"quality": 90, "subsampling": 0}),
        "gray.jpg": (Image.fromarray(gray), {}), "cmyk.jpg": (Image.fromarray(rgb).convert(
            "CMYK"), {}),
        "la.png": (Image.fromarray(rgba[..., [0, 3]], "LA"), {}),
        "rgba.png": (Image.fromarray(rgba), {}),
        "palette.png": (Image.fromarray(rgb).quantize(64), {}),
        "palette_alpha.png": (Image.fromarray(rgb).quantize(64), {"transparency": 3}),
        "gray16.png": (Image.fromarray(gray.astype(np.uint16) * 257 + 3), {}),
        "transparent.gif": (Image.fromarray(rgb).quantize(50), {"transparency": 7}),
        "palette.bmp": (Image.fromarray(rgb).quantize(64), {}),
        "gray.bmp": (Image.fromarray(gray), {}), "rgba.bmp": (Image.fromarray(rgba), {}),
        "rgba.webp": (Image.fromarray(rgba), {"lossless": True}),
        "lossy.webp": (Image.fromarray(rgb), {"quality": 80}),
        "one_bit.bmp": (Image.fromarray(gray > 128), {}),  # TensorFlow refuses it
    }
    for name, (image, options) in files.items():
        image.save(folder / name, **options)
    (folder / "text.png").write_bytes(b"not an image")
    (folder / "cut.png").write_bytes((folder / "rgba.png").read_bytes()[:200])
    # Formats Pillow reads and TensorFlow does not, under an image's name.
    Image.fromarray(rgb).save(folder / "tiff.png", "TIFF")
    Image.fromarray(rgb).save(folder / "icon.png", "ICO")
    # JPEGs with corrupt scan data: libjpeg warns and TensorFlow decodes them all,
    # but one that ends early, which it refuses.
    jpeg = (folder / "rgb420.jpg").read_bytes()
    at = len(jpeg) // 2
    corrupt = {"bad_huffman.jpg": jpeg[:at] + b"\xff\x00" * 4 + jpeg[at + 8:],
               "extra_bytes.jpg": jpeg[:-2] + bytes(range(1, 40)) + jpeg[-2:],
               "stray_marker.jpg": jpeg[:at] + b"\xff\xd0" + jpeg[at:],
               "cut_with_end.jpg": jpeg[:at] + b"\xff\xd9", "cut.jpg": jpeg[:at]}
    for name, data in corrupt.items():
        (folder / name).write_bytes(data)
    # CMYK without Adobe's APP14 segment (Pillow writes one): stored plain, not inverted.
    cmyk = (folder / "cmyk.jpg").read_bytes()
    at = cmyk.index(b"\xff\xee")
    (folder / "cmyk_plain.jpg").write_bytes(
        cmyk[:at] + cmyk[at + 2 + int.from_bytes(cmyk[at + 2:at + 4], "big"):])
    return sorted(files) + ["cut.png", "text.png", "tiff.png", "icon.png", "cmyk_plain.jpg",
                            *corrupt]


def test_without_tensorflow_every_kind_decodes_to_tensorflows_pixels(tmp_path):
    import tensorflow as tf

    from kres.data import file_decoding
    from kres.images import decode, decode_stored

    refused = []
    for name in _more_kinds(tmp_path):
        path = str(tmp_path / name)
        data = tf.io.read_file(path)
        try:
            stored = decode_stored(data).numpy()
        except tf.errors.InvalidArgumentError:
            refused.append(name)
            with pytest.raises(file_decoding.DecodeError):
                file_decoding.probe(path)
            continue
        height, width, channels, _, header = file_decoding.probe(path)
        assert (height, width, channels) == stored.shape and header == data.numpy()[:32]
        for c in (3, 1):
            expected = decode(data, c).numpy()
            got = file_decoding.read(path, c)
            assert got.dtype == np.uint8 and np.array_equal(got, expected), (name, c)
    assert sorted(refused) == ["cut.jpg", "cut.png", "icon.png", "one_bit.bmp", "text.png",
                               "tiff.png"]
    with pytest.raises(file_decoding.DecodeError, match="JPEG XL"):
        (tmp_path / "x.jxl").write_bytes(JXL_GRAY)
        file_decoding.probe(str(tmp_path / "x.jxl"))


def test_a_scan_without_tensorflow_finds_what_tensorflows_finds(mixed, mixed_scan, monkeypatch):
    monkeypatch.setattr(folders, "has_tensorflow", lambda: False)
    s = folders.scan(str(mixed), progress=False)
    jxl = "dog/gray.jxl"  # JPEG XL: only TensorFlow decodes it
    assert [p for p, _ in s.bad] == [BROKEN, jxl] and "JPEG XL" in s.bad[1][1]
    assert "\n" not in s.bad[0][1]
    expected = {**mixed_scan.kinds, "grayscale": mixed_scan.kinds["grayscale"] - 1}
    assert s.kinds == expected and s.ignored == mixed_scan.ignored
    assert s.images["all"] == [item for item in mixed_scan.images["all"] if item[0] != jxl]
    assert s.max_size == mixed_scan.max_size and s.class_names == mixed_scan.class_names


@pytest.mark.parametrize("augment", ["imagenet", "none"])
def test_folder_batches_without_tensorflow_are_the_tf_data_pipelines(tmp_path, monkeypatch,
                                                                     augment):
    """The same folder, loaded with and without TensorFlow: evaluation batches equal,
    training batches too (the crop boxes and flips keyed alike; TensorFlow's draws
    on both here, as the backend is TensorFlow)."""
    from kres.data import batches as kbatches
    from kres.data import folder_data

    for c, name in enumerate(("cat", "dog")):
        _write_kinds(tmp_path / name, 10 * c, [(20 + 3 * i, 41 - 2 * i) for i in range(10)])
    loaded = {}
    for tf_here in (True, False):
        monkeypatch.setattr(folder_data, "has_tensorflow", lambda t=tf_here: t)
        loaded[tf_here] = datasets.load(str(tmp_path), seed=3, progress=False)
    assert isinstance(loaded[False].train, kbatches.FolderImages)
    assert loaded[False].sizes == loaded[True].sizes
    settings = dict(batch_size=4, image_size=24, channels=3, num_classes=2, seed=5)
    for training in (False, True):
        split = "train" if training else "test"
        made = [kbatches.make_pipeline(getattr(loaded[t], split), loaded[t].spec,
                                       training=training, augment=augment, **settings)
                for t in (True, False)]
        tf_batches = iter(made[0])
        for i in range(3 if training else len(made[1])):
            (x, y), (x2, y2) = next(tf_batches), made[1][i]
            np.testing.assert_allclose(x2, x.numpy(), atol=2e-3, err_msg=f"{split} {i}")
            np.testing.assert_array_equal(y2, y.numpy())
        if not training:  # as many evaluation batches
            assert next(tf_batches, None) is None


def test_a_folder_without_its_decoders_is_refused_naming_them(tmp_path, monkeypatch):
    from kres.data import file_decoding, folder_data

    monkeypatch.setattr(folder_data, "has_tensorflow", lambda: False)
    monkeypatch.setitem(file_decoding.PACKAGES, "kres_no_such_module", "no-such-decoder")
    with pytest.raises(RuntimeError, match=r"decoded, without TensorFlow, by no-such-decoder, "
                                           r"which is not installed: pip install no-such"):
        datasets.load(str(tmp_path))
