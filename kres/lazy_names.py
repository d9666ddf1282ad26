"""A package's public names, imported from their modules on first use.

kres's packages keep their imports light (``import kres`` loads neither Keras
nor TensorFlow, and ``kres.training.recipes`` or ``kres.data.fashion_mnist``
load without TensorFlow on Keras's other backends), yet each names what the
others may use. `public_names` gives a package the module-level
``__getattr__`` and ``__dir__`` that do both.
"""

import importlib
import pkgutil
import sys


def public_names(package, names):
    """``(__getattr__, __dir__, __all__)`` for `package`: each name in `names`
    (name -> defining module) is imported on first use, and so are its
    submodules; ``__all__`` lists the names.

    Example:

    In a package's ``__init__.py``, ``__getattr__, __dir__, __all__ =
    public_names(__name__, {"train": "kres.training.run"})``. Called by hand:

    >>> import kres.training
    >>> from kres.lazy_names import public_names
    >>> getattr_, dir_, all_ = public_names("kres.training", {"train": "kres.training.run"})
    >>> all_, getattr_("train").__module__, "run" in dir_()
    (['train'], 'kres.training.run', True)
    """
    module = sys.modules[package]
    submodules = {m.name for m in pkgutil.iter_modules(module.__path__)}

    def __getattr__(name):
        if name in names:
            value = getattr(importlib.import_module(names[name]), name)
            setattr(module, name, value)
            return value
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(vars(module)) | set(names) | submodules)

    return __getattr__, __dir__, sorted(names)
