"""Which Keras backend runs kres, and what of kres needs TensorFlow.

kres's networks, training, search and evaluation run on Keras's TensorFlow
and JAX backends. On JAX, TensorFlow is optional: where it is installed the
tf.data pipelines feed JAX; where it is not, the pipeline without it
(`kres.data.batches`) does. What needs TensorFlow itself (the SavedModel
export, tfds datasets other than Fashion-MNIST read from its IDX files,
the multi-worker strategy) says so by `require_tensorflow` before any work.
Image folders are decoded without it by `kres.data.file_decoding`.
"""

import importlib.util
import os

SUPPORTED = ("tensorflow", "jax")


def has_tensorflow():
    """Whether TensorFlow can be imported (without importing it)."""
    return _installed("tensorflow")


def _installed(package):
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def require_tensorflow(what):
    """Imports TensorFlow for `what`, or raises naming the missing package.

    Raises:
        RuntimeError: when TensorFlow is not installed, naming `what` and
            how to install it.
    """
    try:
        import tensorflow as tf
    except ModuleNotFoundError as error:
        if error.name is not None and error.name.split(".")[0] != "tensorflow":
            raise
        raise RuntimeError(
            f"{what} needs TensorFlow, which is not installed here (Keras backend "
            f"{keras_backend()!r}): pip install tensorflow") from None
    return tf


def missing_tensorflow(error):
    """Whether `error` (an ImportError) says that TensorFlow or tensorflow-datasets is missing."""
    name = getattr(error, "name", None) or ""
    return isinstance(error, ModuleNotFoundError) and name.split(".")[0] in (
        "tensorflow", "tensorflow_datasets")


def keras_backend():
    """The backend Keras runs on: Keras's own answer once it is imported; before,
    KERAS_BACKEND, else Keras's configuration file (without importing Keras)."""
    import json
    import sys

    keras = sys.modules.get("keras")
    if hasattr(keras, "backend"):  # imported (not while its own import runs)
        return keras.backend.backend()

    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            return json.load(f).get("backend", "tensorflow")
    except (OSError, ValueError):
        return "tensorflow"


def check_backend():
    """Refuses a Keras backend that kres does not run on, or whose package is missing.

    Returns the backend's name.

    Raises:
        RuntimeError: naming the backend and what is missing.
    """
    backend = keras_backend()
    if backend not in SUPPORTED:
        raise RuntimeError(
            f"kres runs on Keras's {' and '.join(SUPPORTED)} backends, not {backend!r} "
            f"(KERAS_BACKEND={backend}): set KERAS_BACKEND=jax or tensorflow")
    missing = missing_backend_package()
    if missing:
        raise RuntimeError(missing[1])
    return backend


def missing_backend_package():
    """``(package, message)`` when the package of Keras's backend is not installed, else None.

    The message names the backend, the package and, where one is installed,
    a backend to set instead: Keras itself only fails deep in its import with
    TensorFlow's module name (its default backend is TensorFlow, so an
    environment with JAX alone needs ``KERAS_BACKEND=jax``).
    """
    backend = keras_backend()
    if not backend or _installed(backend):  # each backend's package bears its name
        return None
    others = [b for b in SUPPORTED if b != backend and _installed(b)]
    instead = (f"set KERAS_BACKEND={others[0]} (installed here)" if others
               else "set KERAS_BACKEND to a backend that is installed")
    chosen = (f"KERAS_BACKEND={backend}" if os.environ.get("KERAS_BACKEND")
              else "Keras's choice with KERAS_BACKEND unset")
    return backend, (f"Keras's {backend} backend needs the {backend} package, which is not "
                     f"installed here ({chosen}): pip install {backend}, or {instead}")
