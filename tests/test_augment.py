"""The recipes' augmentations as Keras layers: keyed draws (the same seed, the same
images), the pad-crop-flip's statistics, RandAugment and AugMix in the pipeline, and
their bad settings refused by name."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kres import data as datasets
from kres.data import augment as layers
from kres.data import keyed_draws, pipeline
from kres.training import recipes


def _data(n=64, size=16, channels=3, augment="crop_flip"):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8)
    y = rng.integers(0, 4, n)
    return datasets.from_arrays(x, y, x[:8], y[:8], num_classes=4, val_size=8, augment=augment)


POLICIES = {
    "crop_flip": dict(augment="crop_flip"),
    "imagenet with jitter": dict(augment="imagenet", color_jitter=0.4),
    "randaugment": dict(augment="crop_flip", auto_augment="randaugment"),
    "augmix": dict(augment="crop_flip", auto_augment="augmix"),
    "erasing, mixup and cutmix": dict(augment="crop_flip", random_erasing=0.5, mixup_alpha=0.2,
                                      cutmix_alpha=1.0),
}


def _batches(d, seed, channels=3, batches=2, **policy):
    ds = pipeline.pipeline(d.train, d.spec, training=True, batch_size=16, image_size=16,
                           channels=channels, num_classes=4, seed=seed, **policy)
    return [(x.numpy(), y.numpy()) for x, y in ds.take(batches)]


# RandAugment and AugMix on grayscale images (Fashion-MNIST's), the others on RGB.
GRAY = ("randaugment", "augmix")


@pytest.mark.parametrize("policy", [
    # AugMix's two traces take 14 s; its keyed draws are checked in
    # test_augmix_draws_its_chains_for_each_batch.
    pytest.param(p, marks=pytest.mark.slow) if p == "augmix" else p for p in POLICIES])
def test_the_same_seed_gives_the_same_images(policy):
    channels = 1 if policy in GRAY else 3
    d = _data(channels=channels, augment="crop" if channels == 1 else "crop_flip")
    a, b = (_batches(d, 3, channels=channels, **POLICIES[policy]) for _ in range(2))
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    assert not np.array_equal(a[0][0], a[1][0])
    for x, y in a:
        assert x.shape == (16, 16, 16, channels) and np.all(np.isfinite(x))
        if not policy.startswith("erasing"):  # erasing's noise leaves the pixel range
            assert 0 <= x.min() and x.max() <= 255
        np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
    if policy == "crop_flip":
        other = _batches(d, 4, channels=channels, **POLICIES[policy])
        assert not np.array_equal(a[0][0], other[0][0])


def test_pad_crop_flip_draws_every_shift_and_flips_half_the_images():
    """As the tf.image pad-crop-flip before it: each of the 9 shifts per axis
    (a crop of the 4-pixel padding) equally likely, a flip with probability 1/2.
    Each pixel of the test image holds its own position, so the shift and the
    flip are read off the output."""
    size, n = 12, 4500
    position = (1 + np.arange(size * size)).reshape(size, size, 1).astype(np.uint8)
    d = datasets.from_arrays(np.repeat(position[None], n, 0), np.zeros(n, int), position[None],
                             [0], num_classes=2, val_size=8, augment="crop_flip")
    ds = pipeline.pipeline(d.train, d.spec, training=True, batch_size=500, image_size=size,
                           channels=1, num_classes=2, seed=0)
    x = np.concatenate([b.numpy() for b, _ in ds.take(8)])[..., 0]
    centre, right = x[:, 6, 6].astype(int), x[:, 6, 7].astype(int)
    flipped = right < centre
    source = centre - 1
    dy = source // size - 6
    dx = source % size - np.where(flipped, 5, 6)
    assert abs(flipped.mean() - 0.5) < 0.03
    for shifts in (dy, dx, dx[flipped]):
        counts = np.bincount(shifts + 4, minlength=9)
        assert len(counts) == 9 and counts.min() > 0
        expected = len(shifts) / 9
        assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected)), counts


def test_augmix_draws_its_chains_for_each_batch():
    """Keras's AugMix fixes its chains when the pipeline is traced; kres's draws
    them from each batch's key."""
    augmix = layers.AugMix(value_range=(0, 255))
    images = tf.zeros([2, 8, 8, 3])

    @tf.function
    def choices(key):
        t = augmix.get_random_transformation(images, seed=keyed_draws.KeyedSeeds(key))
        return tf.stack([link["choice"] for chain in t["chain_transforms"] for link in chain])

    drawn = {tuple(choices(tf.constant([i, 1], tf.int64)).numpy()) for i in range(20)}
    assert len(drawn) > 10
    # The same key, traced anew (another pipeline, another process), draws the same.
    again = tf.function(choices.python_function)
    key = tf.constant([3, 1], tf.int64)
    assert np.array_equal(again(key).numpy(), choices(key).numpy())


def test_keyed_leaves_the_layers_own_generator_in_place():
    flip = keras.layers.RandomFlip("horizontal")
    generator = flip.generator
    keyed_draws.keyed(flip, tf.zeros([1, 4, 4, 1]), tf.constant([1, 2], tf.int64))
    assert flip.generator is generator and "_backend_generators" not in flip.__dict__


def test_random_resized_crop_takes_one_image_at_a_time():
    with pytest.raises(ValueError, match="one image at a time.*images.shape"):
        layers.RandomResizedCrop(8, 8)(np.zeros((2, 10, 10, 3)), training=True)


@pytest.mark.parametrize("field, value, message", [
    ("auto_augment", "autoaugment", "auto_augment must be one of"),
    ("randaugment_magnitude", 11, "randaugment_magnitude"),
    ("randaugment_ops", 0, "randaugment_ops"),
])
def test_bad_augmentation_fields_are_refused_by_name(field, value, message):
    with pytest.raises(ValueError, match=message) as error:
        recipes.resolve_recipe("fast-cpu", **{field: value})
    assert repr(value) in str(error.value)


def test_augment_flags_set_the_crop_and_the_automatic_augmentation():
    from kres.cli import commands

    assert commands._augment_fields(["crop", "randaugment"]) == {
        "augment": "crop", "auto_augment": "randaugment"}
    with pytest.raises(ValueError, match="--augment crop_flip --augment none"):
        commands._augment_fields(["crop_flip", "none"])


def test_kres_layers_in_a_bigger_model_save_and_load(tmp_path):
    """A user's model with kres's augmentation layers in front saves to .keras and
    loads (kres registers them), computing the same function in inference."""
    inputs = keras.Input((16, 16, 3))
    x = layers.PadCrop(2)(inputs)
    x = layers.RandomFlip()(x)
    x = layers.RandomErasing(0.5, mean=(120.0,) * 3, std=(60.0,) * 3)(x)
    x = layers.saturation_jitter(0.4)(x)
    x = layers.AugMix(value_range=(0, 255))(x)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    path = tmp_path / "with_augmentation.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    assert loaded.layers[1].padding == 2 and loaded.layers[3].probability == 0.5
    images = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(images, verbose=0),
                               model.predict(images, verbose=0), rtol=1e-5, atol=1e-5)
