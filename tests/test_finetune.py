"""Fine-tuning: runs that start from pretrained weights (kres.training.finetune and kres.train).

The pretrained networks are real kres runs and real timm-layout state dicts
(written with the reference safetensors writer of test_timm); the data are
small learnable arrays, so that each run takes seconds.
"""

import json
import os

import keras
import numpy as np
import pytest

import kres
from kres.data.sources import from_arrays
from kres.preprocessing import IMAGENET_MEAN, Preprocessing
from kres.training import finetune
from tests.test_timm import TorchArch, random_state, write_safetensors

TINY = {"depths": (1, 1, 1)}


def _arrays(classes, n, size=28, channels=1, seed=0):
    """Images whose class is a bright square at its own place, over noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.integers(0, 80, (n, size, size, channels)).astype(np.uint8)
    step = size // classes
    for i, label in enumerate(y):
        x[i, label * step:(label + 1) * step, : size // 2] = 230
    return x, y


def _data(classes, n=192, seed=0, **kwargs):
    x, y = _arrays(classes, n, seed=seed, **kwargs)
    xt, yt = _arrays(classes, 64, seed=seed + 9, **kwargs)
    return from_arrays(x, y, xt, yt, val_size=32, name=f"arrays{classes}")


def _weights_by_layer(model):
    return {layer.name: [np.array(w) for w in layer.get_weights()]
            for layer in model.layers if layer.weights}


class _Snapshots(keras.callbacks.Callback):
    """Every layer's weights at the end of each epoch (by absolute epoch)."""

    def __init__(self):
        super().__init__()
        self.at = {}

    def on_epoch_end(self, epoch, logs=None):
        self.at[epoch] = _weights_by_layer(self.model)


class _CrashAt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt(f"killed at the start of epoch {epoch}")


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory):
    """A kres run on five classes: best.keras and its model.json."""
    run = str(tmp_path_factory.mktemp("pretrain") / "run")
    kres.train("cifar_resnet20", "arrays5", data=_data(5), run_dir=run, epochs=2, batch_size=32,
               augment="none", model_overrides=TINY, verbose=0)
    return run


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_frozen_phase_keeps_the_backbone_and_resume_crosses_the_phase_boundary(
        pretrained_run, tmp_path):
    weights = os.path.join(pretrained_run, "best.keras")
    source = _weights_by_layer(kres.load_model(weights))
    run = str(tmp_path / "finetune")
    settings = dict(data=_data(3, seed=3), run_dir=run, recipe="transfer", epochs=3,
                    frozen_epochs=1, batch_size=32, augment="none", weights=weights,
                    model_overrides=TINY, verbose=0)
    first = _Snapshots()
    # Killed as the second phase starts: the frozen phase is over, its backup gone.
    with pytest.raises(KeyboardInterrupt):
        kres.train("cifar_resnet20", "arrays3", callbacks=[first, _CrashAt(1)], **settings)
    assert os.path.isfile(os.path.join(run, "frozen.npz"))
    assert not os.path.exists(os.path.join(run, "backup-frozen"))
    frozen = first.at[0]
    backbone = [name for name in frozen if name != "predictions"]
    assert len(backbone) > 10
    for name in backbone:  # kernels, gamma/beta and the moving statistics alike
        assert _same(frozen[name], source[name]), name
    assert frozen["predictions"][0].shape == (64, 3)

    second = _Snapshots()
    results = kres.train("cifar_resnet20", "arrays3", callbacks=[second], **settings)
    assert sorted(second.at) == [1, 2]  # the frozen phase was not run again
    assert results["epochs_run"] == 3
    with open(os.path.join(run, "history.csv")) as f:
        assert len(f.read().splitlines()) == 4  # header and one row per epoch
    last = second.at[2]
    changed_bn = [n for n in backbone if n.endswith("_bn")
                  and not np.array_equal(last[n][2], source[n][2])]  # moving means
    changed_conv = [n for n in backbone if n.endswith("_conv")
                    and not np.array_equal(last[n][0], source[n][0])]
    assert len(changed_bn) == len([n for n in backbone if n.endswith("_bn")])
    assert len(changed_conv) == len([n for n in backbone if n.endswith("_conv")])
    with open(os.path.join(run, "model.json")) as f:
        run_prep = json.load(f)["preprocessing"]
    with open(os.path.join(pretrained_run, "model.json")) as f:
        source_prep = json.load(f)["preprocessing"]
    # The fine-tuned model sees its inputs normalised as the pretrained one did.
    assert (run_prep["mean"], run_prep["std"]) == (source_prep["mean"], source_prep["std"])


def test_a_run_killed_in_its_frozen_phase_resumes_each_phase_at_its_own_epochs(
        pretrained_run, tmp_path):
    """Killed in the frozen phase's second epoch: the resumed run finishes that phase
    from its backup, then starts the next phase at its own first epoch (Keras keeps
    the first phase's resumed epoch on the model; it used to start there again)."""

    class Begun(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs = []

        def on_epoch_begin(self, epoch, logs=None):
            self.epochs.append(epoch)

    run = str(tmp_path / "finetune")
    settings = dict(data=_data(3, seed=3), run_dir=run, recipe="transfer", epochs=3,
                    frozen_epochs=2, batch_size=32, augment="none",
                    weights=os.path.join(pretrained_run, "best.keras"),
                    model_overrides=TINY, verbose=0)
    with pytest.raises(KeyboardInterrupt):
        kres.train("cifar_resnet20", "arrays3", callbacks=[_CrashAt(1)], **settings)
    assert os.path.isdir(os.path.join(run, "backup-frozen"))
    begun = Begun()
    results = kres.train("cifar_resnet20", "arrays3", callbacks=[begun], **settings)
    assert begun.epochs == [1, 2] and results["epochs_run"] == 3
    with open(os.path.join(run, "history.csv")) as f:
        assert [line.split(",")[0] for line in f.read().splitlines()[1:]] == ["0", "1", "2"]


def test_unfreeze_names_the_stages_trained_after_the_frozen_phase():
    model = kres.build_model("cifar_resnet20", classes=3, input_shape=(16, 16, 1), **TINY)
    finetune.freeze_backbone(model)
    assert [layer.name for layer in model.layers if layer.trainable] == ["predictions"]
    finetune.unfreeze(model, ("conv4",))
    trainable = {layer.name for layer in model.layers if layer.trainable and layer.weights}
    assert trainable == {n for n in trainable if n.startswith("conv4_")} | {"predictions"}
    assert "conv4_block1_1_conv" in trainable and "conv3_block1_1_conv" not in trainable
    with pytest.raises(ValueError, match=r"unfreeze names layers .* Received: "
                                         r"unfreeze=\('conv9',\)"):
        finetune.unfreeze(model, ("conv9",))


def test_from_a_timm_state_dict(tmp_path):
    # A narrow ResNet-18 with one block per stage (timm's layout, its own widths).
    arch = TorchArch("basic", widths=(16, 32, 64, 128))
    layout = {"depths": arch.depths, "widths": arch.widths}
    path = write_safetensors(tmp_path / "resnet18.safetensors", random_state(arch, seed=2))
    reference = kres.build_model("resnet18", include_top=False, input_shape=(32, 32, 3),
                                 weights=str(path), **layout)
    expected = _weights_by_layer(reference)
    snapshots = _Snapshots()
    run = str(tmp_path / "run")
    kres.train("resnet18", "arrays4", data=_data(4, n=96, size=32, channels=3),
               run_dir=run, weights=str(path), recipe="transfer", epochs=2, frozen_epochs=1,
               batch_size=16, augment="none", model_overrides=layout,
               callbacks=[snapshots], verbose=0)
    frozen = snapshots.at[0]
    assert set(expected) == set(frozen) - {"predictions"}
    for name, values in expected.items():
        assert _same(frozen[name], values), name
    assert not _same(snapshots.at[1]["conv1_conv"], expected["conv1_conv"])
    with open(os.path.join(run, "model.json")) as f:
        prep = json.load(f)["preprocessing"]
    assert prep["mean"] == list(IMAGENET_MEAN) and prep["channel_order"] == "rgb"


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_weights_normalisation_is_keras_preprocess_input(mode):
    import tensorflow as tf

    pixels = np.random.default_rng(0).uniform(0, 255, (2, 5, 5, 3)).astype(np.float32)
    mean, std, order = finetune._normalization(mode)
    prep = Preprocessing(5, 5, 3, mean, std, channel_order=order)
    expected = keras.applications.imagenet_utils.preprocess_input(pixels.copy(), mode=mode)
    np.testing.assert_allclose(prep.normalize(pixels), expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(prep.normalize(tf.constant(pixels)).numpy(), expected,
                               rtol=1e-5, atol=1e-4)


def test_caffe_normalisation_inside_the_model_and_the_export(tmp_path):
    from kres.data.pipeline import pipeline
    from kres.models.inputs import image_input
    from kres.serving import c_api_run, export

    mean, std, order = finetune._normalization("caffe")
    prep = Preprocessing(8, 8, 3, mean, std, channel_order=order)
    x, y = _arrays(2, 4, size=8, channels=3)
    data = from_arrays(x, y, x, y, val_size=1)
    batch, _ = next(iter(pipeline(data.test, data.spec, training=False, batch_size=4,
                                  image_size=8, channels=3, num_classes=2, preprocessing=prep,
                                  deterministic=True)))
    np.testing.assert_array_equal(batch.numpy(), x)  # the pipeline gives pixels
    caffe = keras.applications.imagenet_utils.preprocess_input(x.astype(np.float32),
                                                              mode="caffe")
    # The model's first layer normalises them as keras.applications' caffe mode.
    model = kres.build_model("cifar_resnet20", classes=2, input_tensor=image_input(prep),
                             **TINY)
    normalised = keras.Model(model.input, model.get_layer("preprocessing").output)
    np.testing.assert_allclose(normalised.predict(batch, verbose=0), caffe, atol=1e-4)
    path = export(model, str(tmp_path / "served"), class_names=["a", "b"])
    served = c_api_run(path, "serving_pixels", {"pixels": x})["probabilities"]
    np.testing.assert_allclose(served, model.predict(batch, verbose=0), atol=1e-5)
    with open(os.path.join(path, "kres.json")) as f:
        assert json.load(f)["preprocessing"] == prep.to_json()


# A network of each normalisation keras.applications' files expect, narrow, one block
# per stage: the normalisation is the same code at any size (two are long, marked slow).
NARROW = {"resnet50": {"depths": (1, 1, 1, 1), "widths": (8, 8, 8, 8), "stem_width": 8},
          "densenet121": {"depths": (1, 1, 1, 1), "growth_rate": 4, "stem_width": 8}}
NARROW["resnet50v2"] = NARROW["resnet50"]
MODES = [("caffe", "resnet50", "bgr"),
         pytest.param("tf", "resnet50v2", "rgb", marks=pytest.mark.slow),
         pytest.param("torch", "densenet121", "rgb", marks=pytest.mark.slow)]


@pytest.mark.parametrize("mode, name, order", MODES)
def test_a_keras_applications_file_fine_tuned_is_served_with_its_normalisation(
        tmp_path, mode, name, order):
    """`kres train --weights FILE.h5` (Keras's legacy format, in the published files'
    layout): the fine-tuned model, and its SavedModel, LiteRT and ONNX exports, take
    pixels and compute the network on keras.applications' `preprocess_input` of
    that mode; ``model.json`` names its statistics and channel order."""
    from kres.cli import main
    from kres.models.inference import in_float32
    from kres.serving import c_api_run
    from tests.test_edge import _file_probabilities
    from tests.test_weights import _save_legacy

    layout = {**dict(kres.published_weights(name).layout), **NARROW[name]}
    source = kres.build_model(name, include_top=False, input_shape=(32, 32, 3), **layout)
    weights = _save_legacy(source, tmp_path / f"{name}.h5")
    run = str(tmp_path / "run")
    kres.train(name, "arrays4", data=_data(4, n=48, size=32, channels=3), run_dir=run,
               weights=weights, epochs=1, batch_size=16, augment="none",
               model_overrides=NARROW[name], verbose=0)
    with open(os.path.join(run, "model.json")) as f:
        described = json.load(f)["preprocessing"]
    assert described["channel_order"] == order

    model = in_float32(kres.load_model(os.path.join(run, "best.keras")))
    network = keras.Model(model.get_layer("preprocessing").output, model.output)
    x, _ = _arrays(4, 8, size=32, channels=3, seed=5)
    normalised = keras.applications.imagenet_utils.preprocess_input(x.astype(np.float32),
                                                                    mode=mode)
    expected = network.predict(normalised, verbose=0)
    assert np.abs(model.predict(x.astype(np.float32), verbose=0) - expected).max() < 1e-5

    best = os.path.join(run, "best.keras")
    out = str(tmp_path / "exports")
    assert main(["export", "--model", best, "--name", "m", "--out", out]) == 0
    served = {"saved_model": c_api_run(os.path.join(out, "m", "1"), "serving_pixels",
                                       {"pixels": x})["probabilities"]}
    np.save(tmp_path / "pixels.npy", x)  # the run's arrays are no dataset kres can load
    for fmt in ("tflite", "onnx"):
        assert main(["export", "--model", best, "--name", "m", "--out", out, "--format", fmt,
                     "--calibration-data", str(tmp_path / "pixels.npy")]) == 0
        served[fmt] = _file_probabilities(os.path.join(out, f"m-{fmt}"), x)[0]
    for fmt, probabilities in served.items():
        assert np.abs(probabilities - expected).max() < 1e-4, fmt


def test_bad_weights_are_refused_before_training(pretrained_run, tmp_path):
    with pytest.raises(ValueError, match=r"weights must be 'imagenet' or a \.keras.*"
                                         r"Received: weights='model\.pt'"):
        kres.train("cifar_resnet20", "arrays3", data=_data(3), weights="model.pt")
    with pytest.raises(ValueError, match=r"frozen_epochs freezes pretrained layers.*"
                                         r"Received: frozen_epochs=2"):
        kres.train("cifar_resnet20", "arrays3", data=_data(3), recipe="transfer")
    weights = os.path.join(pretrained_run, "best.keras")
    with pytest.raises(ValueError, match=r"do not fit 'cifar_resnet20'.*'conv3_block2_1_conv' "
                                         r"is not in the weights' network"):
        kres.train("cifar_resnet20", "arrays3", data=_data(3), weights=weights,
                   recipe="transfer", model_overrides={"depths": (2, 2, 2)},
                   run_dir=str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run")
