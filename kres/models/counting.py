"""Counting a model's size and cost the way papers and torchvision report them."""

import math

import keras


def count_params(model):
    """Number of trainable parameters.

    Keras's ``model.count_params()`` also counts batch-norm moving statistics;
    papers and torchvision count trainable weights only.

    Args:
        model: a Keras model.

    Returns:
        The number of trainable scalars.

    Example:

    >>> import kres
    >>> model = kres.build_model("cifar_resnet20")
    >>> kres.count_params(model), model.count_params()  # Keras's also counts BN statistics
    (269722, 271098)
    """
    return sum(math.prod(w.shape) for w in model.trainable_weights)


def count_macs(model):
    """Multiply-accumulates of one forward pass on one image.

    Counts convolutions (grouped and depthwise included) and dense layers,
    the convention of torchvision's and the papers' GFLOPs/GMACs figures;
    batch norm, activations, pooling and additions are not counted.

    Args:
        model: a Functional Keras model with a fully known input shape.

    Returns:
        The number of multiply-accumulates (an int).

    Raises:
        ValueError: if the model's input height or width is unknown.
    """
    macs = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            macs += count_macs(layer)
            continue
        kernel = getattr(layer, "kernel", None)
        if kernel is None or not isinstance(
            layer, keras.layers.Conv2D | keras.layers.Dense | keras.layers.DepthwiseConv2D
        ):
            continue
        positions = layer.output.shape[1:-1]
        if any(d is None for d in positions):
            raise ValueError(
                "count_macs needs a model with a known input size; build it with an "
                f"input_shape such as (224, 224, 3). Received: a model with layer "
                f"{layer.name!r} of output shape {layer.output.shape}"
            )
        macs += math.prod(positions) * math.prod(kernel.shape)
    return macs
