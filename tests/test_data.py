"""Datasets and pipelines: real Fashion-MNIST from the Debian files through tfds,
tfds's mock for the other datasets, and the pipeline's transformations."""

import collections
import gzip
import os
import socket
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from kres import data as datasets
from kres import preprocessing
from kres.data import fashion_mnist as offline
from kres.data import pipeline as augment


def _labels(ds):
    return np.concatenate([y.numpy() for _, y in ds.batch(10_000)])


def test_prepared_fashion_mnist_is_the_original(fashion_mnist_dir):
    builder = tfds.builder("fashion_mnist", data_dir=fashion_mnist_dir)
    assert builder.is_prepared()
    splits = builder.info.splits
    assert (splits["train"].num_examples, splits["test"].num_examples) == (60000, 10000)
    test = tfds.load("fashion_mnist", split="test", data_dir=fashion_mnist_dir,
                     as_supervised=True, download=False)
    images, labels = next(iter(test.batch(10_000)))
    assert images.shape == (10000, 28, 28, 1) and images.dtype == tf.uint8
    assert np.bincount(labels.numpy()).tolist() == [1000] * 10
    # The same pixels as the IDX file (tfds stored them losslessly, as PNG).
    raw = offline.read_idx(os.path.join(offline.DEBIAN_FASHION_MNIST, "t10k-images-idx3-ubyte.gz"))
    raw_labels = offline.read_idx(os.path.join(offline.DEBIAN_FASHION_MNIST,
                                            "t10k-labels-idx1-ubyte.gz"))
    stored = {(int(y), images[i, :, :, 0].numpy().tobytes()) for i, y in
              enumerate(labels.numpy()[:200])}
    original = {(int(y), x.tobytes()) for x, y in zip(raw, raw_labels)}
    assert stored <= original


def test_load_splits_train_val_test(fashion_mnist_dir):
    d = datasets.load("fashion_mnist", data_dir=fashion_mnist_dir, subset=3000, val_size=1000)
    assert d.sizes == {"train": 3000, "val": 1000, "test": 10000}
    assert d.class_names[0] == "T-shirt/top" and len(d.class_names) == 10
    assert len(_labels(d.train)) == 3000 and len(_labels(d.val)) == 1000


def test_pipeline_gives_pixels_that_the_model_normalises(fashion_mnist_dir):
    from kres.layers import InputPreprocessing

    d = datasets.load("fashion_mnist", data_dir=fashion_mnist_dir, val_size=5000)
    ds = augment.pipeline(d.val, d.spec, training=False, batch_size=5000, image_size=28,
                       channels=1, num_classes=10)
    x, y = next(iter(ds))
    assert x.shape == (5000, 28, 28, 1) and y.shape == (5000, 10)
    # Pixels, as a server receives them (whole values 0-255 at the native size) ...
    assert float(tf.reduce_min(x)) == 0 and float(tf.reduce_max(x)) == 255
    np.testing.assert_array_equal(x, tf.round(x))
    # ... which the first layer of a model trained on the dataset normalises.
    z = InputPreprocessing(d.spec.mean, d.spec.std)(x)
    assert abs(float(tf.reduce_mean(z))) < 0.05 and abs(float(tf.math.reduce_std(z)) - 1) < 0.05
    np.testing.assert_array_equal(tf.reduce_sum(y, axis=1), 1.0)


def test_grayscale_feeds_rgb_models(fashion_mnist_dir):
    d = datasets.load("fashion_mnist", data_dir=fashion_mnist_dir, subset=64)
    x, _ = next(iter(augment.pipeline(d.train, d.spec, training=True, batch_size=8, image_size=32,
                                   channels=3, num_classes=10, seed=1)))
    assert x.shape == (8, 32, 32, 3)
    np.testing.assert_array_equal(x[..., 0], x[..., 2])


def test_seeded_pipelines_repeat_exactly():
    d = datasets.from_arrays(*_random_arrays(), augment="crop_flip")

    def first_batches(seed):
        ds = augment.pipeline(d.train, d.spec, training=True, batch_size=16, image_size=16,
                           channels=3, num_classes=4, seed=seed, mixup_alpha=0.2,
                           random_erasing=0.5)
        return [x.numpy() for x, _ in ds.take(3)]

    a, b, c = first_batches(3), first_batches(3), first_batches(4)
    assert all(np.array_equal(i, j) for i, j in zip(a, b))
    assert not all(np.array_equal(i, j) for i, j in zip(a, c))


def test_an_epochs_batches_depend_on_the_seed_and_the_epoch_alone():
    """Epoch e of a training pipeline is the same batches whatever happened before:
    another iterator that took a batch (Keras's build of the model's metrics
    did, and a first epoch then saw the second order), a pipeline made to
    start at epoch e (a resumed run). Epochs differ from each other; the
    last partial batch of each is dropped."""
    d = datasets.from_arrays(*_random_arrays(), augment="crop_flip")
    steps = d.sizes["train"] // 16

    def epochs(first_epoch, count):
        ds = augment.pipeline(d.train, d.spec, training=True, batch_size=16, image_size=16,
                              channels=3, num_classes=4, seed=3, mixup_alpha=0.2,
                              random_erasing=0.5, first_epoch=first_epoch)
        assert ds.cardinality() == tf.data.INFINITE_CARDINALITY
        batches = [x.numpy() for x, _ in ds.take(steps * count)]
        return [batches[i * steps:(i + 1) * steps] for i in range(count)]

    def same(a, b):
        return all(np.array_equal(i, j) for i, j in zip(a, b, strict=True))

    ds = augment.pipeline(d.train, d.spec, training=True, batch_size=16, image_size=16,
                          channels=3, num_classes=4, seed=3, mixup_alpha=0.2, random_erasing=0.5)
    next(iter(ds))  # an iterator that takes a batch, then the fit's own
    first = [x.numpy() for x, _ in ds.take(steps)]
    zero, one, two = epochs(0, 3)
    assert same(first, zero)
    assert same(epochs(2, 1)[0], two) and same(epochs(1, 1)[0], one)
    assert not same(zero, one) and not same(one, two)

    plain = augment.pipeline(d.train, d.spec, training=True, batch_size=16, image_size=16,
                             channels=3, num_classes=4, seed=3, augment="none")
    labels = [np.argmax(y.numpy(), -1) for _, y in plain.take(2 * steps)]
    every = collections.Counter(np.concatenate([y for _, y in d.train.batch(1000)]).tolist())
    for epoch in (labels[:steps], labels[steps:]):  # no example twice in an epoch
        counts = collections.Counter(np.concatenate(epoch).tolist())
        assert all(counts[label] <= every[label] for label in counts)
        assert sum(counts.values()) == steps * 16 > sum(every.values()) - 16


def _random_arrays(n=96, size=16, classes=4):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    y = rng.integers(0, classes, n)
    return x, y, x[:32], y[:32]


def test_crop_flip_augmentation_moves_pixels_but_keeps_content():
    image = np.zeros((1, 16, 16, 3), np.uint8)
    image[0, 6:10, 6:10] = 255  # a bright square, fully inside any 4-pixel shift
    d = datasets.from_arrays(np.repeat(image, 40, 0), np.zeros(40, int), image, [0],
                         num_classes=2, val_size=8, augment="crop_flip")
    ds = augment.pipeline(d.train, d.spec, training=True, batch_size=32, image_size=16,
                       channels=3, num_classes=2, seed=0)
    x = next(iter(ds))[0].numpy()
    bright = x[..., 0] > x.min() + 1
    assert np.all(bright.sum(axis=(1, 2)) == 16)  # the square survives every crop
    assert len({tuple(np.argwhere(b)[0]) for b in bright}) > 3  # at various places


def test_imagenet_eval_resizes_and_center_crops():
    spec = datasets.DatasetSpec(None, None, 3, 2, preprocessing.IMAGENET_MEAN,
                                preprocessing.IMAGENET_STD, augment="imagenet")
    wide = np.zeros((60, 120, 3), np.uint8)
    wide[:, 55:65] = 255  # a bright central stripe
    ds = tf.data.Dataset.from_tensors((wide, np.int64(1)))
    x, y = next(iter(augment.pipeline(ds, spec, training=False, batch_size=1, image_size=28,
                                   channels=3, num_classes=2)))
    assert x.shape == (1, 28, 28, 3)
    column_means = x[0, :, :, 0].numpy().mean(axis=0)
    assert column_means[12:16].min() > column_means[:4].max()  # stripe stays central
    x, _ = next(iter(augment.pipeline(ds, spec, training=True, batch_size=1, image_size=28,
                                   channels=3, num_classes=2, seed=0, color_jitter=0.4)))
    assert x.shape == (1, 28, 28, 3)


@pytest.mark.parametrize("order", ["rgb", "bgr"])
def test_random_erasing_fills_with_what_the_model_normalises_to_standard_normal(order):
    # The pipeline gives pixels; the box's noise is drawn so that the model's first
    # layer turns it into N(0, 1) in every channel, as erasing in normalised space does.
    gray = np.full((64, 16, 16, 3), 128, np.uint8)
    d = datasets.from_arrays(gray, np.zeros(64, int), gray[:8], np.zeros(8, int),
                             num_classes=2, val_size=8, augment="none")
    prep = preprocessing.Preprocessing(16, 16, 3, (0.2, 0.4, 0.6), (0.1, 0.2, 0.3),
                                       channel_order=order)
    ds = augment.pipeline(d.train, d.spec, training=True, batch_size=56, image_size=16,
                          channels=3, num_classes=2, seed=0, random_erasing=1.0,
                          preprocessing=prep)
    x = next(iter(ds))[0].numpy()
    erased = np.any(x != 128, axis=-1)
    assert 0.02 < erased.mean() < 0.4  # a box of 2-40% of each image, in every image
    assert np.array_equal(x[~erased], np.full_like(x[~erased], 128))  # the rest untouched
    z = np.asarray(prep.normalize(x))[erased]
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=0.1)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=0.1)


def test_mixup_and_cutmix_mix_labels():
    d = datasets.from_arrays(*_random_arrays(n=128), augment="none")
    for kwargs in ({"mixup_alpha": 1.0}, {"cutmix_alpha": 1.0}):
        ds = augment.pipeline(d.train, d.spec, training=True, batch_size=32, image_size=16,
                           channels=3, num_classes=4, seed=0, **kwargs)
        _, y = next(iter(ds))
        np.testing.assert_allclose(tf.reduce_sum(y, axis=1), 1.0, rtol=1e-5)
        assert np.any((y > 0.01) & (y < 0.99))  # soft labels


def test_offline_without_files_fails_fast(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"network is unreachable.*tfds build cifar10"):
        datasets.ensure_prepared("cifar10", str(tmp_path / "cifar10"))
    assert time.monotonic() - start < 10


def test_tfds_progress_bars_stay_out_of_log_files(capfd):
    """Where stderr is not a terminal (here: captured), a preparation runs with
    tfds's bars off (tqdm would add a line ten times a second), then puts the
    switch back as it was."""
    from tensorflow_datasets.core.utils import tqdm_utils

    from kres.data import sources

    for before in (True, False):
        tfds.display_progress_bar(before)
        with sources._tfds_bars_in_a_terminal_only(tfds):
            for _ in tqdm_utils.tqdm(range(3), desc="Generating"):
                pass
        assert tqdm_utils._active is before
    tfds.display_progress_bar(True)
    assert "Generating" not in capfd.readouterr().err


def test_missing_debian_files_say_what_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        offline.prepare_fashion_mnist(str(tmp_path / "out"), source=str(tmp_path))


def test_corrupt_idx_files_are_refused(tmp_path):
    bad = tmp_path / "labels.gz"
    with gzip.open(bad, "wb") as f:
        f.write(b"\0\0\x08\x01" + (100).to_bytes(4, "big") + bytes(50))
    with pytest.raises(ValueError, match="header announces"):
        offline.read_idx(str(bad))
    # A download cut short, and a file that is not gzip at all, name the file.
    real = os.path.join(offline.DEBIAN_FASHION_MNIST, "t10k-labels-idx1-ubyte.gz")
    with open(real, "rb") as f:
        (tmp_path / "cut.gz").write_bytes(f.read()[:2000])
    (tmp_path / "text.gz").write_text("not an IDX file")
    for name in ("cut.gz", "text.gz"):
        with pytest.raises(ValueError, match=f"{name} is not a readable IDX file"):
            offline.read_idx(str(tmp_path / name))


def _write_metadata(name, data_dir, sizes):
    """tfds metadata (features, split sizes) for `name`, as a prepared dataset has."""
    builder = tfds.builder(name, data_dir=data_dir)
    template = tfds.core.ShardedFileTemplate(data_dir=builder.data_path, dataset_name=name,
                                             filetype_suffix="tfrecord")
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=split, shard_lengths=[n], num_bytes=0,
                            filename_template=template.replace(split=split))
        for split, n in sizes.items()]))
    os.makedirs(builder.data_path, exist_ok=True)
    builder.info.write_to_directory(builder.data_path)


@pytest.mark.parametrize("name, size, channels, classes", [
    ("cifar10", 32, 3, 10), ("cifar100", 32, 3, 100), ("mnist", 28, 1, 10),
])
def test_other_datasets_with_tfds_mock(name, size, channels, classes, tmp_path):
    data_dir = str(tmp_path)
    _write_metadata(name, data_dir, {"train": 6000, "test": 1000})
    with tfds.testing.mock_data(num_examples=20, policy=tfds.testing.MockPolicy.USE_FILES,
                                data_dir=data_dir):
        d = datasets.load(name, data_dir=data_dir, val_size=1000)
        assert d.sizes == {"train": 5000, "val": 1000, "test": 1000}
        assert d.spec.num_classes == classes == len(d.class_names)
        ds = augment.pipeline(d.train, d.spec, training=True, batch_size=8, image_size=size,
                           channels=channels, num_classes=classes, seed=0)
        x, y = next(iter(ds))
    assert x.shape == (8, size, size, channels) and y.shape == (8, classes)


def test_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("test", 4)):
        for label in ("cat", "dog"):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                png = tf.io.encode_png(rng.integers(0, 255, (20 + i, 30, 3), dtype=np.uint8))
                (folder / f"{i}.png").write_bytes(png.numpy())
    d = datasets.load(str(tmp_path), val_size=4)
    assert d.class_names == ["cat", "dog"] and d.sizes == {"train": 20, "val": 4, "test": 8}
    x, y = next(iter(augment.pipeline(d.train, d.spec, training=True, batch_size=4,
                                   image_size=16, channels=3, num_classes=2, seed=0)))
    assert x.shape == (4, 16, 16, 3)


@pytest.mark.parametrize("call, message", [
    (lambda: datasets.get_dataset_spec("fashion-mnist"), r"Did you mean 'fashion_mnist'"),
    (lambda: datasets.from_arrays(np.zeros((10, 8, 8), np.uint8), np.arange(10),
                              np.zeros((2, 8, 8), np.uint8), [0, 1], num_classes=5,
                              val_size=2),
     r"labels outside 0..4.*num_classes=5"),
])
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_subset_larger_than_data(fashion_mnist_dir):
    with pytest.raises(ValueError, match=r"subset must be between 1 and 55000.*subset=60000"):
        datasets.load("fashion_mnist", data_dir=fashion_mnist_dir, subset=60000)


def test_only_small_datasets_are_cached():
    from kres.data.batches import fits_in_memory

    assert fits_in_memory(datasets.DATASETS["cifar10"], 45_000)
    assert not fits_in_memory(datasets.DATASETS["imagenet2012"], 1_271_167)
    assert not fits_in_memory(datasets.DATASETS["cifar10"], 10_000_000)


@pytest.mark.parametrize("sampler", ["_tf_box", "_box"])
def test_random_resized_crop_covers_the_papers_ranges(sampler):
    # 8% to 100% of the area, width/height between 3/4 and 4/3, or the whole image:
    # TensorFlow's one-op sampler (tf.data) and the same draws in Keras's ops.
    from kres.data import augment as augment_layers
    from kres.data import keyed_draws

    crop, shape = augment_layers.RandomResizedCrop(32, 32), (200, 300, 3)
    draw = tf.function(lambda key: getattr(crop, sampler)(
        tf.constant(shape), keyed_draws.KeyedSeeds(key)))
    boxes = np.array([draw(tf.constant([i, 7], tf.int64)).numpy() for i in range(1000)])
    sizes, begins = boxes[:, 2:].astype(float), boxes[:, :2]
    assert np.all(begins >= 0) and np.all(begins + sizes <= [200, 300])
    area = sizes[:, 0] * sizes[:, 1] / (200 * 300)
    aspect = sizes[:, 1] / sizes[:, 0]
    whole = (sizes == [200, 300]).all(axis=1)
    inside = ((area >= 0.08 - 1e-3) & (area <= 1.0)
              & (aspect >= 0.75 - 0.02) & (aspect <= 4 / 3 + 0.02))
    assert np.all(inside | whole) and whole.mean() < 0.05
    # The draws span the ranges, not a corner of them (at most 200 x 266 pixels, 89%
    # of this image, have an allowed shape).
    assert area[~whole].min() < 0.1 and area[~whole].max() > 0.8
    assert aspect[~whole].min() < 0.8 and aspect[~whole].max() > 1.25


def test_imagenet_evaluation_resize_and_center_crop_against_a_closed_form():
    # On a linear ramp, a bilinear resize with half-pixel centres is exact: the value
    # at output (i, j) is the ramp at ((i + 0.5) * H / h - 0.5, (j + 0.5) * W / w - 0.5).
    # Shorter side 300 -> 256 (224 / 0.875), 400 -> 341, then the central 224 x 224.
    height, width = 300, 400
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (0.3 * y + 0.2 * x + 5.0)[..., None]
    got = preprocessing.eval_resize(tf.constant(ramp), 224, 224, center_crop=True).numpy()
    new_h, new_w = 256, 341
    top, left = (new_h - 224) // 2, (new_w - 224) // 2
    i, j = np.mgrid[0:224, 0:224].astype(np.float64)
    source_y = (i + top + 0.5) * height / new_h - 0.5
    source_x = (j + left + 0.5) * width / new_w - 0.5
    expected = 0.3 * source_y + 0.2 * source_x + 5.0
    assert got.shape == (224, 224, 1)
    np.testing.assert_allclose(got[..., 0], expected, atol=2e-3)
