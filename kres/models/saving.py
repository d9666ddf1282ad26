"""Loading saved kres models, and the recursion limit the deepest graphs need."""

import contextlib
import os
import sys

import keras

from kres import checks


@contextlib.contextmanager
def deep_graphs(limit=20_000):
    """Within the block, Keras can walk graphs thousands of layers deep (ResNet-1202).

    Keras maps a Functional graph recursively, one Python frame per layer, so
    the default recursion limit of 1000 stops it near 1000 layers deep. The
    limit is raised for the block only and restored on leaving. Needed around
    building, `keras.Model.from_config` and `keras.saving.load_model` of such
    models (`kres.load_model` uses it).
    """
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def load_model(path, *, safe_mode=True, **kwargs):
    """Loads a ``.keras`` file holding a kres model (or any Keras model).

    `keras.saving.load_model` with kres's layers registered and the
    recursion limit raised for deep graphs (ResNet-1202) while it loads.

    Args:
        path: a ``.keras`` file, e.g. a run's ``best.keras``.
        safe_mode: Keras's safe mode (on by default: kres models need no
            ``Lambda``).
        **kwargs: other arguments of `keras.saving.load_model`.

    Returns:
        The Keras model.

    Raises:
        ValueError: if there is no file at `path`.

    Example:

    >>> import os, tempfile
    >>> import kres
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = os.path.join(folder.name, "model.keras")
    >>> kres.CifarResNet20().save(path)
    >>> kres.count_params(kres.load_model(path))
    269722
    >>> folder.cleanup()
    """
    import kres.layers  # noqa: F401  (registers kres's layers with Keras)
    import kres.losses  # noqa: F401  (and the distillation loss a student's checkpoint names)

    if not os.path.isfile(path):
        checks.fail("path", os.fspath(path), "must be an existing .keras file")
    with deep_graphs():
        return keras.saving.load_model(path, safe_mode=safe_mode, **kwargs)


def saved_config(path):
    """The model config stored in a ``.keras`` file, read without building the model.

    Returns:
        The dict Keras wrote (``{"class_name": "Functional", "config": {"name":
        ..., "layers": [...]}}``), or ``None`` for a file that is no readable
        ``.keras`` archive.

    Example:

    >>> import os, tempfile
    >>> import kres
    >>> from kres.models.saving import saved_config
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = os.path.join(folder.name, "model.keras")
    >>> kres.CifarResNet20().save(path)
    >>> saved_config(path)["config"]["name"]
    'cifar_resnet20'
    >>> folder.cleanup()
    """
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def saved_input_shape(path):
    """``(height, width, channels)`` of the model in a ``.keras`` file (entries may
    be ``None``), from its stored config; ``None`` when the file does not say."""
    config = saved_config(path)
    try:
        first = config["config"]["layers"][0]
        shape = first["config"]["batch_shape"]
    except (TypeError, KeyError, IndexError):
        return None
    return tuple(shape[1:]) if first.get("class_name") == "InputLayer" else None
