"""Weights files into a built model: chosen by their kind, and refused on any mismatch."""

import os
import re

from kres import checks


def check_weights(weights):
    """`weights` must be ``None`` or an existing file (``"imagenet"`` is the registry's)."""
    if weights is None:
        return
    if isinstance(weights, str) and weights == "imagenet":
        raise ValueError(
            "weights='imagenet' is resolved by kres.build_model and the constructors "
            "(kres.ResNet50(weights='imagenet')), not by the family builders. "
            "Received: weights='imagenet'"
        )
    if not isinstance(weights, str | os.PathLike) or not os.path.isfile(weights):
        checks.fail("weights", weights, "must be None or the path of an existing weights file")


def load_weights_file(model, path):
    """Loads a weights file of any kind kres reads, chosen by its name.

    ``*.safetensors`` (timm/torchvision state dicts) are refused: their
    tensor names are the family's to map, so they load through
    `kres.build_model` (or `kres.load_timm_weights`); ``*.h5`` other than
    ``*.weights.h5``: a keras.applications file (`kres.load_keras_weights`);
    anything else: a Keras weights file
    (`load_weights_strict`).

    Raises:
        ValueError: if the file does not match the model.
    """
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        raise ValueError(
            "A timm/torchvision state dict loads through its family's mapping: pass it to "
            "kres.build_model (or a constructor such as kres.ResNet50), or use "
            f"kres.load_timm_weights. Received: weights={path!r}")
    if path.endswith(".h5") and not path.endswith(".weights.h5"):
        from kres.weights.keras_applications import load_keras_weights

        load_keras_weights(model, path)
    else:
        load_weights_strict(model, path)


def load_weights_strict(model, path):
    """Loads a Keras weights file into `model`, refusing any mismatch.

    Keras loads a ``.weights.h5`` file by position and accepts a file that
    holds more variables than the model; this refuses that, so a file from
    another architecture is never half-loaded silently.

    Args:
        model: a built Keras model.
        path: a Keras ``.weights.h5`` file (or any file `model.load_weights`
            reads).

    Raises:
        ValueError: naming the file, when its variables do not match the
            model's in number or shape.
    """
    path = os.fspath(path)
    stored = _count_stored_variables(path)
    if stored is not None and stored != len(model.weights):
        raise ValueError(
            f"The weights file does not match the architecture of {model.name!r}: it holds "
            f"{stored} variables, the model has {len(model.weights)}. Received: weights={path!r}"
        )
    try:
        model.load_weights(path)
    except (ValueError, KeyError, OSError) as error:
        # Keras's message goes on to print whole variables; keep its gist.
        text = str(error)
        detail = text.splitlines()[0] if text else type(error).__name__
        shapes = re.search(r"variable\.shape=\([^)]*\), Received: value\.shape=\([^)]*\)", text)
        if shapes:
            detail += f" ({shapes.group(0)})"
        raise ValueError(
            f"The weights file does not match the architecture of {model.name!r}: {detail} "
            f"Received: weights={path!r}"
        ) from error


def _count_stored_variables(path):
    """Number of variables in a Keras 3 ``.weights.h5`` file, else ``None``."""
    if not path.endswith(".weights.h5"):
        return None
    import h5py

    count = 0

    def visit(_, obj):
        nonlocal count
        count += isinstance(obj, h5py.Dataset)

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return count
