"""kres's networks and recipes on Keras's JAX backend, with no TensorFlow in the process.

The networks are plain Keras: on another backend, kres's grouped convolution
and batch norm take Keras's own ops instead of TensorFlow's. A child process
on the JAX backend loads weights saved here (TensorFlow backend) and must
give the same predictions, train a step with a kres recipe in mixed float16,
and never import TensorFlow. This is how the GPU figures in
docs/benchmarks.md were made on a machine without TensorFlow.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import kres
from kres.data import fashion_mnist as offline

CHILD = r"""
import json, sys
import numpy as np
import keras, kres
from kres.data.fashion_mnist import read_fashion_mnist
from kres.training.recipes import compile_model, resolve_recipe

spec = json.loads(sys.argv[1])
out = {"backend": keras.backend.backend(), "predictions": {}}
for name, overrides, shape, path in spec["models"]:
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    model = kres.build_model(name, input_shape=tuple(shape), classes=10, **overrides)
    model.load_weights(path)
    x = np.load(spec["inputs"])[name]
    out["predictions"][name] = np.asarray(model.predict_on_batch(x)).tolist()

x, y = read_fashion_mnist(spec["data"])["test"]
model = kres.build_model("cifar_resnet20", input_shape=(28, 28, 1), classes=10,
                         depths=(1, 1, 1), dtype="mixed_float16")
compile_model(model, resolve_recipe("fast-cpu", epochs=3), steps_per_epoch=2, num_classes=10)
logs = model.train_on_batch(x[:16] / 255.0, keras.utils.to_categorical(y[:16], 10),
                            return_dict=True)
out["loss"] = float(logs["loss"])
out["optimizer"] = type(model.optimizer).__name__
out["tensorflow_modules"] = sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow")
print(json.dumps(out))
"""

# (name, spec overrides, input shape): a plain, a grouped and a dense network, each
# cut to a block or two per stage (the blocks are the same; XLA's compile time on
# JAX's CPU grows with the layers: 45 s of the test at full depth on a 2-core CPU).
MODELS = [
    ("cifar_resnet20", {"depths": (1, 1, 1)}, (28, 28, 1)),
    ("resnext29_32x4d", {"depths": (1, 1, 1)}, (32, 32, 3)),
    ("densenet_bc_100_12", {"depths": (2, 2, 2)}, (32, 32, 3)),
]


def _randomise_batch_norm(model, rng):
    """Batch norms with non-trivial statistics, so that inference exercises them."""
    for layer in model.layers:
        if "BatchNormalization" in type(layer).__name__:
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32")
                               if "variance" in w.path or "gamma" in w.path
                               else rng.normal(0, 0.2, w.shape).astype("float32")
                               for w in layer.weights])


def test_the_networks_and_a_recipe_run_on_jax_without_tensorflow(tmp_path):
    rng = np.random.default_rng(0)
    expected, inputs, models = {}, {}, []
    for name, overrides, shape in MODELS:
        model = kres.build_model(name, input_shape=shape, classes=10, **overrides)
        _randomise_batch_norm(model, rng)
        path = str(tmp_path / f"{name}.weights.h5")
        model.save_weights(path)
        inputs[name] = rng.normal(size=(4, *shape)).astype("float32")
        expected[name] = model.predict_on_batch(inputs[name])
        models.append((name, overrides, shape, path))
    np.savez(tmp_path / "inputs.npz", **inputs)
    spec = {"models": models, "inputs": str(tmp_path / "inputs.npz"),
            "data": offline.DEBIAN_FASHION_MNIST}
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["backend"] == "jax"
    assert out["tensorflow_modules"] == []
    for name, _, _ in MODELS:
        np.testing.assert_allclose(out["predictions"][name], expected[name],
                                   rtol=1e-4, atol=1e-5, err_msg=name)
    # Mixed float16 on any backend: Keras scales the loss, and the step is finite.
    assert out["optimizer"] == "LossScaleOptimizer"
    assert np.isfinite(out["loss"]) and 0 < out["loss"] < 10


# Augmentations whose draws both pipelines make: the CIFAR crop and flip, the
# ImageNet crop with colour jitter, RandAugment, and erasing with MixUp/CutMix.
PIPELINE_SETTINGS = [
    ("none", {}),
    ("crop_flip", {}),
    ("imagenet", {"color_jitter": 0.4}),
    ("crop_flip", {"auto_augment": "randaugment"}),
    ("crop", {"mixup_alpha": 0.2, "cutmix_alpha": 1.0, "random_erasing": 0.5}),
]


@pytest.mark.parametrize("augment, settings", PIPELINE_SETTINGS,
                         ids=[a + "".join(f"+{k}" for k in s) for a, s in PIPELINE_SETTINGS])
def test_the_two_pipelines_give_the_same_images_from_the_same_seed(augment, settings):
    """tf.data (`kres.data.pipeline`) and the pipeline without TensorFlow
    (`kres.data.batches`), here both on TensorFlow's ops: the same batches,
    across an epoch's end, from a resumed epoch. On JAX the order and keys are
    the same and the layers draw with JAX's generator
    (tests/test_without_tensorflow.py checks the order there)."""
    import tensorflow as tf

    from kres.data.batches import Examples, batches
    from kres.data.catalog import DatasetSpec
    from kres.data.pipeline import pipeline

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (50, 12, 12, 3), dtype=np.uint8)
    y = rng.integers(0, 5, 50)
    spec = DatasetSpec(None, 12, 3, 5, (0.5,) * 3, (0.25,) * 3, augment="crop_flip")
    common = dict(training=True, batch_size=8, image_size=12, channels=3, num_classes=5,
                  seed=3, augment=augment, first_epoch=2, **settings)
    ours = batches(Examples(x, y), spec, **common)
    for i, (images, labels) in zip(range(8), pipeline(
            tf.data.Dataset.from_tensor_slices((x, y)), spec, **common)):
        np.testing.assert_allclose(ours[i][0], images.numpy(), atol=1e-3, err_msg=f"batch {i}")
        np.testing.assert_allclose(ours[i][1], labels.numpy(), atol=1e-6, err_msg=f"batch {i}")


def test_the_two_pipelines_agree_on_grayscale_images_resized_to_rgb():
    """A grayscale split held in memory and trained at another size in 3
    channels: tf.data gathers and resizes whole batches, the pipeline without
    TensorFlow image by image; the same batches."""
    import tensorflow as tf

    from kres.data.batches import Examples, batches
    from kres.data.catalog import DatasetSpec
    from kres.data.pipeline import pipeline

    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (40, 12, 12, 1), dtype=np.uint8)
    y = rng.integers(0, 4, 40)
    spec = DatasetSpec(None, 12, 1, 4, (0.5,), (0.25,), augment="crop_flip")
    common = dict(training=True, batch_size=8, image_size=16, channels=3, num_classes=4,
                  seed=5)
    ours = batches(Examples(x, y), spec, **common)
    for i, (images, labels) in zip(range(7), pipeline(
            tf.data.Dataset.from_tensor_slices((x, y)), spec, **common)):
        assert images.shape == (8, 16, 16, 3)
        np.testing.assert_allclose(ours[i][0], images.numpy(), atol=1e-3, err_msg=f"batch {i}")
        np.testing.assert_allclose(ours[i][1], labels.numpy(), atol=1e-6, err_msg=f"batch {i}")


TRAIN_ON_JAX = r"""
import json, sys
import numpy as np
import keras, kres
from kres.data.fashion_mnist import read_fashion_mnist
from kres.data.sources import from_arrays

spec = json.loads(sys.argv[1])
(x, y), (x_test, y_test) = read_fashion_mnist(spec["data"]).values()
data = from_arrays(x[:512], y[:512], x_test[:128], y_test[:128], num_classes=10, val_size=128)
results = kres.train("cifar_resnet20", "arrays", data=data, run_dir=spec["run"], epochs=1,
                     model_overrides={"depths": (1, 1, 1)}, seed=0, verbose=0)
model = kres.load_model(spec["run"] + "/best.keras")
np.save(spec["out"], np.asarray(model.predict_on_batch(x_test[:32].astype("float32"))))
print(json.dumps({"backend": keras.backend.backend(), "precision": results["precision"]}))
"""


def test_a_model_trained_on_jax_exports_and_serves_the_same_outputs(tmp_path):
    """Trained by `kres.train` on Keras's JAX backend, exported here (TensorFlow) as a
    SavedModel: the served probabilities of PNG-encoded test images are the JAX model's."""
    import tensorflow as tf

    spec = {"data": offline.DEBIAN_FASHION_MNIST, "run": str(tmp_path / "run"),
            "out": str(tmp_path / "jax.npy")}
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", TRAIN_ON_JAX, json.dumps(spec)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"backend": "jax", "precision": "float32"}
    path = kres.export(str(tmp_path / "run" / "best.keras"), str(tmp_path / "served"))
    _, (x_test, _) = offline.read_fashion_mnist().values()
    pngs = [tf.io.encode_png(image).numpy() for image in x_test[:32]]
    served = kres.serving.predict(path, pngs)["probabilities"]
    np.testing.assert_allclose(served, np.load(spec["out"]), atol=2e-5)
