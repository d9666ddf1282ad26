"""Grad-CAM: the heatmap finds what decides the class, and not from random weights."""

import keras
import numpy as np
import pytest

import kres
from kres.models.explain import explain, overlay

SIZE, PATTERN = 48, 8


def _shapes():
    """The two deciding patterns and three decoys, 8 by 8 (1: bright)."""
    cross = np.zeros((PATTERN, PATTERN), np.float32)
    cross[3:5, :] = cross[:, 3:5] = 1
    ring = np.ones((PATTERN, PATTERN), np.float32)
    ring[2:-2, 2:-2] = 0
    square = np.ones((PATTERN, PATTERN), np.float32)
    bars = np.zeros((PATTERN, PATTERN), np.float32)
    bars[::3] = 1
    checks = (np.indices((PATTERN, PATTERN)) // 2).sum(axis=0) % 2 == 0
    return (cross, ring), (square, bars, checks.astype(np.float32))


def _scenes(count, seed):
    """Noise with four bright 8-by-8 shapes in four of nine 16-pixel cells: one
    deciding pattern, a cross (class 0) or a ring (class 1), and three decoys (a
    filled square, bars, a checkerboard) brighter or as bright, the same in both
    classes. Returns images, labels and the pattern's top-left corners."""
    rng = np.random.default_rng(seed)
    patterns, decoys = _shapes()
    images = rng.uniform(0, 90, (count, SIZE, SIZE, 1)).astype(np.float32)
    labels = rng.integers(0, 2, count)
    corners = np.zeros((count, 2), np.int64)
    for i, (image, label) in enumerate(zip(images, labels)):
        cells = rng.choice(9, size=4, replace=False)
        for k, (cell, shape) in enumerate(zip(cells, (patterns[label], *decoys))):
            r, c = 16 * (cell // 3) + rng.integers(0, 5), 16 * (cell % 3) + rng.integers(0, 5)
            patch = image[r:r + PATTERN, c:c + PATTERN, 0]
            patch[:] = np.where(shape > 0, 255, patch)
            if k == 0:
                corners[i] = r, c
    return images, labels, corners


def _inside(heatmaps, corners, margin=3):
    """The share of heatmaps whose peak lies in the pattern's box grown by `margin`
    (no other shape reaches into it)."""
    peaks = [np.unravel_index(np.argmax(h), h.shape) for h in heatmaps]
    return float(np.mean([r - margin <= pr < r + PATTERN + margin
                          and c - margin <= pc < c + PATTERN + margin
                          for (pr, pc), (r, c) in zip(peaks, corners)]))


@pytest.fixture(scope="module")
def located():
    """A small ResNet trained on the scenes, and 200 new scenes."""
    keras.utils.set_random_seed(0)
    model = kres.CifarResNet20(input_shape=(SIZE, SIZE, 1), classes=2, depths=(1, 1, 1))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    images, labels, _ = _scenes(2000, seed=1)
    model.fit(images / 255.0, labels, batch_size=64, epochs=2, verbose=0)
    return model, _scenes(200, seed=2)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_the_heatmap_peaks_on_the_pattern_and_not_from_random_weights(located, method):
    """Adebayo et al. 2018's randomisation check beside a localisation test: the
    trained network's Grad-CAM (and Grad-CAM++) peaks inside the deciding pattern
    on at least 90% of new scenes; the same network with its weights drawn afresh
    does not (below 30% on average over three draws; a random network's map
    follows the brightest shapes, here the decoys): the heatmap depends on what
    the network learned."""
    model, (images, labels, boxes) = located
    found = explain(model, images / 255.0, method=method)
    accuracy = float(np.mean(found.classes == labels))
    assert accuracy > 0.95, accuracy
    assert found.heatmaps.shape == (200, SIZE, SIZE)
    assert found.heatmaps.min() >= 0 and found.heatmaps.max() == pytest.approx(1)
    assert _inside(found.heatmaps, boxes) >= 0.9
    shares = []
    for seed in (1, 2, 3):  # the weights drawn afresh, three times
        keras.utils.set_random_seed(seed)
        random = kres.CifarResNet20(input_shape=(SIZE, SIZE, 1), classes=2, depths=(1, 1, 1))
        shares.append(_inside(explain(random, images / 255.0, method=method).heatmaps, boxes))
    assert np.mean(shares) < 0.3, shares


def test_classes_stages_and_scores(located):
    """The class asked for is the one explained, with its probability; each stage
    gives a map at the input's size; a batch gives what its images give alone."""
    model, (images, _, _) = located
    x = images[:6] / 255.0
    probs = model.predict(x, verbose=0)
    for cls in (0, 1):
        found = explain(model, x, class_index=cls)
        assert found.classes.tolist() == [cls] * 6
        np.testing.assert_allclose(found.scores, probs[:, cls], rtol=1e-4, atol=1e-6)
    top = explain(model, x)
    assert top.classes.tolist() == probs.argmax(axis=1).tolist()
    alone = explain(model, x[3], stage="C2")
    np.testing.assert_allclose(alone.heatmaps[0], explain(model, x, stage="C2").heatmaps[3],
                               atol=1e-5)
    for stage in ("C0", "C1"):
        assert explain(model, x[:2], stage=stage).heatmaps.shape == (2, SIZE, SIZE)


def test_a_mixed_precision_model_with_its_preprocessing_is_explained(tmp_path):
    """A model that takes pixels (its normalisation inside), built in bfloat16 and
    saved, is explained from its file: pixels in, float32 gradients."""
    from kres.models.inputs import with_preprocessing
    from kres.preprocessing import Preprocessing

    net = kres.CifarResNet20(input_shape=(SIZE, SIZE, 1), classes=2, depths=(1, 1, 1),
                             dtype="mixed_bfloat16")
    model = with_preprocessing(net, Preprocessing(SIZE, SIZE, 1, (0.3,), (0.3,)))
    model.save(tmp_path / "m.keras")
    loaded = kres.load_model(str(tmp_path / "m.keras"))
    images, _, _ = _scenes(3, seed=5)
    found = explain(loaded, images)
    assert found.heatmaps.shape == (3, SIZE, SIZE) and found.heatmaps.dtype == np.float32
    np.testing.assert_allclose(found.scores, loaded.predict(images, verbose=0).max(axis=1),
                               rtol=2e-2)


def test_an_overlay_is_the_image_coloured_by_its_heatmap():
    image = np.full((4, 4, 1), 100, np.uint8)
    heat = np.zeros((4, 4), np.float32)
    heat[0, 0] = 1
    drawn = overlay(image, heat, alpha=0.5)
    assert drawn.shape == (4, 4, 3) and drawn.dtype == np.uint8
    assert tuple(drawn[0, 0]) != tuple(drawn[3, 3])  # the hot corner against the cold


@pytest.mark.parametrize("kwargs, message", [
    (dict(images=np.zeros((2, 40, 40, 1))), "images must be one image or a batch"),
    (dict(class_index=2), "class_index must be None, a class in"),
    (dict(class_index=[0, 1, 0]), "class_index must be None, a class in"),
    (dict(stage="C5"), "stage must be one of the model's stages"),
    (dict(batch_size=0), "batch_size"),
    (dict(method="lime"), "method must be one of"),
])
def test_bad_input_is_refused_by_name(kwargs, message):
    model = kres.CifarResNet20(input_shape=(SIZE, SIZE, 1), classes=2, depths=(1, 1, 1))
    args = {"images": np.zeros((2, SIZE, SIZE, 1)), **kwargs}
    with pytest.raises(ValueError, match=message):
        explain(model, **args)


def test_explain_command_writes_an_overlay_per_image(trained, test_images, tmp_path, capsys):
    """``kres explain RUN_DIR IMAGES --out DIR``: the image beside its overlay, scaled
    up for a person to see; the class by name; bad input refused by name."""
    import json
    import os

    from PIL import Image

    from kres.cli import main

    images, labels = test_images
    paths = []
    for i in (0, 1):
        paths.append(str(tmp_path / f"item{i}.png"))
        Image.fromarray(images[i][..., 0]).save(paths[-1])
    run, out = os.path.dirname(trained), tmp_path / "cam"
    assert main(["explain", run, *paths, "--out", str(out), "--class", "Trouser",
                 "--method", "gradcam++"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in printed] == paths
    assert all(" Trouser " in line for line in printed)
    for i in (0, 1):
        assert Image.open(out / f"item{i}.png").size == (2 * 28 * 9, 28 * 9)
    names = json.load(open(os.path.join(run, "results.json")))["class_names"]
    found = kres.explain(kres.load_model(trained), images[:2], class_index=names.index("Trouser"),
                         method="gradcam++")
    assert [f"{s:.3f}" for s in found.scores] == [line.split()[-3] for line in printed]
    written = np.asarray(Image.open(out / "item0.png"))[::9, ::9]  # scaled up 9x, nearest
    np.testing.assert_array_equal(written[:, 28:], overlay(images[0], found.heatmaps[0]))
    assert main(["explain", run, paths[0], "--out", str(out), "--class", "Hat"]) == 2
    assert "--class must be one of the model's classes" in capsys.readouterr().err
    assert main(["explain", run, str(tmp_path / "none.png"), "--out", str(out)]) == 2
    assert "No image file" in capsys.readouterr().err
    (tmp_path / "run.log").write_text("a log a shell glob caught")
    assert main(["explain", run, paths[0], str(tmp_path / "run.log"), "--out", str(out)]) == 2
    assert f"Not an image kres decodes (JPEG, PNG, GIF, BMP, WebP, JPEG XL). Received: " \
           f"{str(tmp_path / 'run.log')!r}" in capsys.readouterr().err


def test_the_served_explain_signature_is_kres_explain(trained, test_images, tmp_path, capsys):
    """``kres export RUN --explain``: TF Serving's C++ loader (TensorFlow's C API) runs
    the ``explain`` signature on encoded images of another size than the model's, and
    its classes and uint8 heatmaps are `kres.explain`'s on the same bytes decoded and
    resized as the server does (within one level of 255); a format without signatures,
    or a stage the model lacks, is refused before anything is written."""
    import json
    import os

    import tensorflow as tf

    from kres.cli import main
    from kres.preprocessing import eval_resize
    from kres.serving import c_api_run, predict

    images, _ = test_images
    model = kres.load_model(trained)
    big = [tf.image.resize(images[i], (40, 40)).numpy().round().astype(np.uint8)
           for i in range(6)]
    pngs = [tf.io.encode_png(image).numpy() for image in big]
    root = tmp_path / "saved_models"
    run = os.path.dirname(trained)
    assert main(["export", "--model", run, "--name", "cam", "--out", str(root),
                 "--explain"]) == 0
    assert "with the explain signature (Grad-CAM at C2)" in capsys.readouterr().out
    path = str(root / "cam" / "1")
    record = json.load(open(os.path.join(path, "kres.json")))
    assert record["explain_stage"] == "C2" and "explain" in record["signatures"]
    served = c_api_run(path, "explain", {"images": pngs})
    pixels = np.stack([eval_resize(tf.cast(image, tf.float32), 28, 28, False).numpy()
                       for image in big])
    found = explain(model, pixels)
    np.testing.assert_array_equal(served["classes"][:, 0], found.classes)
    np.testing.assert_allclose(served["scores"][:, 0], found.scores, atol=1e-5)
    assert served["heatmap"].shape == (6, 28, 28) and served["heatmap"].dtype == np.uint8
    levels = np.abs(served["heatmap"].astype(int) - np.round(found.heatmaps * 255))
    assert levels.max() <= 1
    assert (served["heatmap"].reshape(6, -1).max(axis=1) == 255).all()  # not blank
    assert served["heatmap"].std() > 20
    # The other signatures are unchanged, and Python's loader serves the same.
    by_python = predict(str(root / "cam"), pngs, signature="explain")
    np.testing.assert_array_equal(by_python["heatmap"], served["heatmap"])
    plain = predict(str(root / "cam"), pngs)
    assert "heatmap" not in plain
    np.testing.assert_allclose(plain["probabilities"], served["probabilities"], atol=1e-6)

    assert main(["export", "--model", run, "--name", "cam", "--out", str(root),
                 "--format", "tflite", "--explain"]) == 2
    assert ("--explain is a signature of TF Serving's SavedModels (--format saved_model); a "
            "tflite file cannot carry it. Received: --format='tflite', --explain=True"
            in capsys.readouterr().err)
    assert not (root / "cam-tflite").exists()
    with pytest.raises(ValueError, match="format='onnx', explain='C1'"):
        kres.export(trained, str(tmp_path / "onnx"), format="onnx", explain="C1")
    with pytest.raises(ValueError, match=r"explain must be one of the model's stages \(C0, C1, "
                                         r"C2;.*Received: explain='C5'"):
        kres.export(trained, str(tmp_path / "c5"), explain="C5")
    with pytest.raises(ValueError, match="explain must be False, True"):
        kres.export(trained, str(tmp_path / "c5"), explain=3)
    assert not (tmp_path / "onnx").exists() and not (tmp_path / "c5").exists()


def test_a_network_built_into_a_bigger_model_is_explained_through_its_front_layers():
    """A user's model that rescales pixels in front of a kres network is explained
    as it computes (the network fed the rescaled pixels), and so is a mirror-averaged
    one; layers after the network are refused by name, not silently left out."""
    keras.utils.set_random_seed(0)
    inner = kres.CifarResNet20(input_shape=(SIZE, SIZE, 1), classes=2, depths=(1, 1, 1))
    pixels = keras.Input((SIZE, SIZE, 1))
    outer = keras.Model(pixels, inner(keras.layers.Rescaling(1 / 255.0)(pixels)))
    images, _, _ = _scenes(4, seed=5)
    found, direct = explain(outer, images), explain(inner, images / 255.0)
    np.testing.assert_allclose(found.scores, outer.predict(images, verbose=0).max(axis=1),
                               rtol=1e-5)
    np.testing.assert_allclose(found.heatmaps, direct.heatmaps, atol=1e-5)
    np.testing.assert_array_equal(found.classes, direct.classes)
    mirrored = explain(kres.flip_averaged(outer), images)
    assert mirrored.heatmaps.shape == (4, SIZE, SIZE)
    headed = keras.Model(pixels, keras.layers.Dense(3, name="my_head")(inner(pixels)))
    with pytest.raises(ValueError, match=r"has layers after it \(my_head\)"):
        explain(headed, images)
