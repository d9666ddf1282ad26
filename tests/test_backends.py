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
