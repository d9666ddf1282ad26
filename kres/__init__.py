"""kres: the classic image-classification networks for Keras 3, exact to their papers.

>>> import kres
>>> model = kres.ResNeXt50(classes=10, input_shape=(64, 64, 3))
>>> model.output_shape
(None, 10)
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
import sys
from typing import TYPE_CHECKING

from kres import backends
from kres.lazy_names import public_names
from kres.models import catalog
from kres.models.constructors import *  # noqa: F401,F403  (the CamelCase constructors)
from kres.models.constructors import __all__ as _constructor_names
from kres.version import __version__

# Public constructor name -> registry name.
CONSTRUCTORS = {entry.constructor: name for name, entry in catalog.MODELS.items()}

# Public name -> the module that defines it, imported on first use.
_LAZY = {
    "build_model": "kres.models.registry",
    "get_spec": "kres.models.registry",
    "list_models": "kres.models.registry",
    "count_params": "kres.models.counting",
    "count_macs": "kres.models.counting",
    "load_model": "kres.models.saving",
    "flip_averaged": "kres.models.inference",
    "strip_auxiliary": "kres.models.families.googlenet",
    "feature_extractor": "kres.models.backbones",
    "explain": "kres.models.explain",
    "load_keras_weights": "kres.weights.keras_applications",
    "preprocess_input": "kres.models.registry",
    "published_weights": "kres.models.registry",
    "decode_predictions": "kres.weights.keras_applications",
    "load_timm_weights": "kres.models.families.resnet_timm",
    "train": "kres.training.run",
    "evaluate": "kres.training.evaluation",
    "lr_find": "kres.training.lr_range",
    "tune": "kres.tuning.run",
    "export": "kres.serving.dispatch",
}
__getattr__, __dir__, _names = public_names(__name__, _LAZY)

if TYPE_CHECKING:  # what the names above are, for IDEs and type checkers
    from kres.models.backbones import feature_extractor  # noqa: F401
    from kres.models.counting import count_macs, count_params  # noqa: F401
    from kres.models.explain import explain  # noqa: F401
    from kres.models.families.googlenet import strip_auxiliary  # noqa: F401
    from kres.models.families.resnet_timm import load_timm_weights  # noqa: F401
    from kres.models.inference import flip_averaged  # noqa: F401
    from kres.models.registry import (  # noqa: F401
        build_model,
        get_spec,
        list_models,
        preprocess_input,
        published_weights,
    )
    from kres.models.saving import load_model  # noqa: F401
    from kres.serving.dispatch import export  # noqa: F401
    from kres.training.evaluation import evaluate  # noqa: F401
    from kres.training.lr_range import lr_find  # noqa: F401
    from kres.training.run import train  # noqa: F401
    from kres.tuning.run import tune  # noqa: F401
    from kres.weights.keras_applications import (  # noqa: F401
        decode_predictions,
        load_keras_weights,
    )


__all__ = [*_names, "CONSTRUCTORS", "__version__", *_constructor_names]



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
            missing = backends.missing_backend_package()
            if missing:  # Keras would fail later, naming only the module it missed
                sys.meta_path.insert(0, self)  # for the import once the backend is set
                raise ModuleNotFoundError(missing[1], name=missing[0])
            load(module)
            importlib.import_module("kres.layers")

        spec.loader.exec_module = exec_module
        return spec


if "keras" in sys.modules:
    # Keras is loaded already: register kres's layers now.
    from kres import layers  # noqa: F401
elif not any(isinstance(f, _RegisterLayersWithKeras) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterLayersWithKeras())
