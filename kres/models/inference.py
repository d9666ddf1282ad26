"""A model's inference forms: in float32, averaged over mirror images; its layers, flat."""

import keras

from kres.models.saving import deep_graphs


def leaves(model):
    """Every layer of `model` that is no model itself, nested models walked into."""
    for layer in model.layers:
        yield from leaves(layer) if isinstance(layer, keras.Model) else (layer,)


def in_float32(model):
    """`model` computing in float32: a mixed-precision model's network with its own weights.

    A model built or trained in ``mixed_bfloat16`` or ``mixed_float16``
    keeps float32 variables; this rebuilds its graph with every layer in
    float32 and gives it those variables' values, so it computes what the
    trained weights say at float32 precision, on any device (bfloat16 is
    emulated, and slow, on CPUs without AVX512-BF16 or AMX). `kres.export`
    serves every model through it. A float32 model is returned as it is.

    Example:

    >>> import kres
    >>> from kres.models.inference import in_float32
    >>> model = kres.CifarResNet20(dtype="mixed_bfloat16")
    >>> in_float32(model).get_layer("conv1_conv").compute_dtype
    'float32'
    """
    if all(layer.compute_dtype == "float32" for layer in leaves(model)):
        return model

    def float32_layer(layer):
        if isinstance(layer, keras.Model):  # a nested network (`flip_averaged`'s)
            return in_float32(layer)
        config = layer.get_config()
        if "dtype" not in config:  # an operation such as `keras.ops.flip`
            return layer.__class__.from_config(config)
        return layer.__class__.from_config({**config, "dtype": "float32"})

    with deep_graphs():
        clone = keras.models.clone_model(model, clone_function=float32_layer)
    clone.set_weights(model.get_weights())
    return clone


def flip_averaged(model):
    """`model` averaging its predictions for each image and its mirror image.

    Test-time augmentation for networks trained with horizontal flips (the
    CIFAR and Fashion-MNIST recipes' ``crop_flip``): the returned Functional
    model runs `model` on the image and on the image flipped left to right
    and outputs the mean of the two probability vectors. It shares `model`'s
    weights, costs two forward passes per image, saves, loads and exports
    like any kres model. A recipe's ``test_flip`` scores a run's test set
    through it.

    Args:
        model: a Keras image classifier (channels-last) that outputs
            probabilities.

    Returns:
        A Functional `keras.Model` with `model`'s input and output shapes.

    Raises:
        ValueError: for a model whose input is not an image batch
            ``(batch, height, width, channels)``.

    Example:

    >>> import kres
    >>> model = kres.CifarResNet20(classes=10, input_shape=(28, 28, 1))
    >>> kres.flip_averaged(model).output_shape
    (None, 10)
    """
    shape = model.input_shape
    if not isinstance(shape, tuple) or len(shape) != 4:
        raise ValueError("model must take one image batch of shape (batch, height, width, "
                         f"channels). Received: a model with input_shape={shape}")
    image = keras.Input(shape=shape[1:], name="image")
    mirrored = keras.ops.flip(image, axis=2)
    probabilities = keras.layers.Average(name="flip_average", dtype="float32")(
        [model(image), model(mirrored)])
    return keras.Model(image, probabilities, name=f"{model.name}_flip_averaged")
