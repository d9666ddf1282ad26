"""kres: the classic image-classification networks for Keras 3, exact to their papers.

>>> import kres
>>> model = kres.ResNeXt50(classes=10, input_shape=(64, 64, 3))
>>> kres.list_models("cifar_resnet*")[:2]
['cifar_resnet110', 'cifar_resnet1202']

``import kres`` is quick: Keras and TensorFlow load when something needs them
(building a model, training, exporting), not before. kres's layers register
with Keras as soon as Keras is imported, before or after kres, so
`keras.saving.load_model` reads a kres ``.keras`` file after ``import kres,
keras`` in either order (`kres.load_model` also raises the recursion limit
for the deepest networks).
"""

import importlib
import importlib.abc
import importlib.util
import pkgutil
import sys
from typing import TYPE_CHECKING

from kres import catalog
from kres.constructors import *  # noqa: F401,F403  (the CamelCase constructors)
from kres.constructors import __all__ as _constructor_names
from kres.version import __version__

# Public constructor name -> registry name.
CONSTRUCTORS = {entry.constructor: name for name, entry in catalog.MODELS.items()}

# Public name -> the module that defines it, imported on first use.
_LAZY = {
    "build_model": "kres.registry",
    "get_spec": "kres.registry",
    "list_models": "kres.registry",
    "count_params": "kres.stats",
    "count_macs": "kres.stats",
    "load_model": "kres.models.base",
    "flip_averaged": "kres.models.base",
    "strip_auxiliary": "kres.models.googlenet",
    "load_keras_weights": "kres.weights",
    "preprocess_input": "kres.weights",
    "decode_predictions": "kres.weights",
    "load_timm_weights": "kres.timm",
    "train": "kres.training",
    "evaluate": "kres.training",
    "tune": "kres.tuning",
    "export": "kres.serving",
    "feature_extractor": "kres.backbones",
}
_SUBMODULES = {module.name for module in pkgutil.iter_modules(__path__)}  # noqa: F405

if TYPE_CHECKING:  # what the names above are, for IDEs and type checkers
    from kres.backbones import feature_extractor  # noqa: F401
    from kres.models.base import flip_averaged, load_model  # noqa: F401
    from kres.models.googlenet import strip_auxiliary  # noqa: F401
    from kres.registry import build_model, get_spec, list_models  # noqa: F401
    from kres.serving import export  # noqa: F401
    from kres.stats import count_macs, count_params  # noqa: F401
    from kres.timm import load_timm_weights  # noqa: F401
    from kres.training import evaluate, train  # noqa: F401
    from kres.tuning import tune  # noqa: F401
    from kres.weights import decode_predictions, load_keras_weights, preprocess_input  # noqa: F401


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"kres.{name}")
    raise AttributeError(f"module 'kres' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)


__all__ = [*sorted(_LAZY), "CONSTRUCTORS", "__version__", *_constructor_names]



class _RegisterLayersWithKeras(importlib.abc.MetaPathFinder):
    """Registers kres's layers as soon as Keras is imported, whenever that is.

    Keras finds a saved model's custom layers among the registered classes
    only, so `keras.saving.load_model` reads a kres model once kres's layers
    are registered; the layers import Keras, which ``import kres`` does not
    do. This finder waits for Keras's own import and registers them right
    after it, so a script may import kres and keras in either order. It
    finds nothing itself: Python's other finders locate Keras.
    """

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        sys.meta_path.remove(self)  # once; and the lookup below must not come back here
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            importlib.import_module("kres.layers")

        spec.loader.exec_module = exec_module
        return spec


if "keras" in sys.modules:
    # Keras is loaded already: register kres's layers now.
    from kres import layers  # noqa: F401
elif not any(isinstance(f, _RegisterLayersWithKeras) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterLayersWithKeras())
