"""A model's pixel input: the normalisation it carries, found or put in front of it.

A model that kres trains takes pixels (0-255) and normalises them in its first
layer, `kres.layers.InputPreprocessing`, which also records how images are
resized to the input and what the classes are called: `image_input` builds
that input, `preprocessing_layer` finds the layer in a model, and
`with_preprocessing` puts one in front of a model built without it.
"""

import keras

from kres.models.inference import leaves
from kres.models.template import one_or_all

PREPROCESSING_LAYER = "preprocessing"


def image_input(preprocessing, class_names=None, threshold=None):
    """The input of a model that normalises its own pixels.

    A ``keras.Input`` named ``image`` of the preprocessing's shape, through a
    `kres.layers.InputPreprocessing` layer named ``preprocessing``: pass it
    to a builder as `input_tensor` and the model takes pixels (0-255) and
    carries its normalisation, resize mode and class names in its config.
    `kres.train` and `kres.tune` build every model so.

    Args:
        preprocessing: a `kres.preprocessing.Preprocessing`.
        class_names: a name per class, or ``None``.
        threshold: a multi-label model's label threshold
            (`kres.layers.InputPreprocessing`), or ``None``.

    Example:

    >>> import kres
    >>> from kres.models.inputs import image_input, preprocessing_layer
    >>> prep = kres.preprocessing.Preprocessing(28, 28, 1, (0.286,), (0.353,))
    >>> model = kres.CifarResNet20(input_tensor=image_input(prep), classes=10)
    >>> preprocessing_layer(model).mean
    (0.286,)
    """
    from kres.layers import InputPreprocessing

    p = preprocessing
    image = keras.Input((p.height, p.width, p.channels), name="image")
    return InputPreprocessing(p.mean, p.std, p.channel_order, p.resize, class_names,
                              threshold=threshold, name=PREPROCESSING_LAYER)(image)


def preprocessing_layer(model):
    """The `kres.layers.InputPreprocessing` of a model that normalises its own
    input (nested models included), or ``None``.

    Raises:
        ValueError: for a model holding two that disagree.
    """
    from kres.layers import InputPreprocessing

    found = [layer for layer in leaves(model) if isinstance(layer, InputPreprocessing)]
    configs = {repr({k: v for k, v in layer.get_config().items() if k != "name"})
               for layer in found}
    if len(configs) > 1:
        raise ValueError(f"The model {model.name!r} holds {len(found)} InputPreprocessing "
                         "layers that disagree; a model has one normalisation.")
    return found[0] if found else None


def label_threshold(model):
    """A multi-label model's label threshold (its `kres.layers.InputPreprocessing`'s),
    or ``None`` for a model of one class per image."""
    layer = preprocessing_layer(model)
    return None if layer is None else getattr(layer, "threshold", None)


def with_preprocessing(model, preprocessing, class_names=None):
    """`model` behind an `InputPreprocessing` layer: a model that takes pixels.

    For a model built without one (by hand, or elsewhere) whose
    normalisation is known: the returned Functional model feeds `model`
    (nested, its weights shared) the normalised pixels, and carries the
    description in its config like a model kres trained.

    Args:
        model: a Keras model with a known input shape, normalising nothing itself.
        preprocessing: its `kres.preprocessing.Preprocessing`.
        class_names: a name per class, or ``None``.

    Raises:
        ValueError: for a model that normalises its input already, or a
            preprocessing of another input shape.

    Example:

    >>> import kres
    >>> from kres.models.inputs import with_preprocessing
    >>> prep = kres.preprocessing.Preprocessing(32, 32, 3, (0.5,), (0.25,))
    >>> served = with_preprocessing(kres.CifarResNet20(), prep)
    >>> served.input_shape, served.output_shape
    ((None, 32, 32, 3), (None, 10))
    """
    carried = preprocessing_layer(model)
    if carried is not None:
        raise ValueError(f"The model {model.name!r} normalises its input already "
                         f"(mean {carried.mean}, std {carried.std}); it needs no preprocessing. "
                         f"Received: preprocessing={preprocessing!r}")
    shape = (preprocessing.height, preprocessing.width, preprocessing.channels)
    if tuple(model.input_shape[1:]) != shape:
        raise ValueError(f"preprocessing must give the model's input shape "
                         f"{tuple(model.input_shape[1:])}. Received: "
                         f"preprocessing={preprocessing!r}")
    image = image_input(preprocessing, class_names)
    return keras.Model(one_or_all(keras.utils.get_source_inputs(image)), model(image),
                       name=model.name)
