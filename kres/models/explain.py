"""Where a classifier's decision comes from: Grad-CAM (Selvaraju et al. 2017).

For an image and a class, Grad-CAM weighs each channel of a stage's feature
map by the mean gradient of the class's score (before the softmax) over the
map, sums the weighted channels, keeps the positive part and scales it up to
the input: a heatmap of the places whose features raised that class's score.
The stage is one of the backbone stages `kres.feature_extractor` knows
(``C<k>``, at stride ``2**k``); by default the deepest, the usual choice.
"""

import collections

import keras
import numpy as np

from kres import checks
from kres.models.backbones import stage_layers
from kres.models.inference import in_float32, leaves

Explanation = collections.namedtuple("Explanation", "heatmaps classes scores")
Explanation.__doc__ = """Grad-CAM's answer for a batch of images.

Attributes:
    heatmaps: float32 ``(images, height, width)``, each in [0, 1] (its
        largest value 1, unless the class's score rises nowhere: all 0), at
        the input's resolution.
    classes: the class explained for each image (int).
    scores: the model's probability of that class for each image.
"""


METHODS = ("gradcam", "gradcam++")


def explain(model, images, class_index=None, stage=None, *, method="gradcam", batch_size=32):
    """Grad-CAM heatmaps of `model`'s decision for `images`.

    Args:
        model: a kres classifier (a family with stage outputs: every one but
            AlexNet), as trained: taking pixels if it carries its
            preprocessing, from a model built or trained in mixed precision
            too (the gradients are taken in float32).
        images: the model's input, ``(height, width, channels)`` or a batch
            of them (pixels 0-255 for a model that normalises its own).
        class_index: the class to explain: ``None`` for each image's top
            class, an int for one class, or one int per image.
        stage: the stage whose feature map is weighed, ``"C<k>"``
            (`kres.models.backbones.stage_layers` lists a model's); ``None``
            for the deepest.
        method: ``"gradcam"`` (Selvaraju et al. 2017: each channel weighed by
            its mean gradient) or ``"gradcam++"`` (Chattopadhyay et al. 2018:
            by its positive gradients, each weighed by the closed-form
            coefficient of the exponential score, so that several instances
            of a class each count). The same gradients, the same cost.
        batch_size: images per gradient computation.

    Returns:
        An `Explanation`: ``heatmaps``, ``classes``, ``scores``.

    Raises:
        ValueError: for images of another shape than the model's input, a
            class or stage the model does not have, or a model of no family
            with stages; naming the argument and the value.

    Example:

    >>> import numpy as np, kres
    >>> model = kres.CifarResNet20(input_shape=(32, 32, 3))
    >>> found = kres.explain(model, np.zeros((2, 32, 32, 3), np.float32), class_index=3)
    >>> found.heatmaps.shape, found.classes.tolist()
    ((2, 32, 32), [3, 3])
    """
    checks.positive_int("batch_size", batch_size)
    checks.choice("method", method, METHODS)
    batch = _check_images(model, images)
    cam = GradCam(model, stage, method=method)
    wanted = _check_classes(class_index, len(batch), model.output_shape[-1])
    heatmaps, chosen, scores = [], [], []
    for start in range(0, len(batch), batch_size):
        maps, probs, cls = cam(batch[start:start + batch_size],
                               None if wanted is None else wanted[start:start + batch_size])
        heatmaps.append(maps.numpy())
        chosen.append(cls.numpy().astype(np.int64))
        scores.append(np.take_along_axis(probs.numpy(), chosen[-1][:, None], axis=1)[:, 0])
    return Explanation(np.concatenate(heatmaps), np.concatenate(chosen),
                       np.concatenate(scores).astype(np.float32))


class GradCam:
    """Grad-CAM of one model at one stage, as TensorFlow operations.

    The same operations serve `explain` (eagerly) and an export's ``explain``
    signature (in the served graph), so the two agree.

    Args:
        model: as `explain`'s.
        stage: as `explain`'s; the attribute ``stage`` names the one taken.
        method: as `explain`'s.
        field: the argument's name in the error for a stage the model lacks.

    Raises:
        ValueError: for a backend other than TensorFlow, a stage the model
            lacks, or a model of no family with stages.
    """

    def __init__(self, model, stage=None, *, method="gradcam", field="stage"):
        if keras.backend.backend() != "tensorflow":
            raise ValueError("kres.explain takes its gradients with TensorFlow for now. "
                             f"Received: KERAS_BACKEND={keras.backend.backend()!r}")
        checks.choice("method", method, METHODS)
        self.method = method
        network, self.prefix = _network(model)
        self.size = tuple(model.input_shape[1:3])
        self.stage, layer_name = _stage_layer(network, stage, field)
        features = network.get_layer(layer_name).output
        self.head = next((layer for layer in leaves(network) if layer.name == "predictions"
                          and isinstance(layer, keras.layers.Dense)
                          and getattr(layer.activation, "__name__", "") == "softmax"), None)
        outputs = [features, network.output]
        if self.head is not None:
            outputs.append(self.head.input)
        self.probe = keras.Model(network.input, outputs)

    def __call__(self, x, wanted=None):
        """Heatmaps of the classes `wanted` (``None``: the top ones) for a batch `x`.

        Returns:
            Tensors: the heatmaps ``(batch, height, width)`` at the input's
            size, each scaled to a largest value of 1 (all 0 where the class's
            score rises nowhere), the probabilities and the classes explained.
        """
        import tensorflow as tf

        x = tf.convert_to_tensor(x, tf.float32)
        if self.prefix is not None:
            x = self.prefix(x)
        with tf.GradientTape() as tape:
            found = self.probe(x, training=False)
            features, probs = found[0], found[1]
            if self.head is not None:  # the score before the softmax
                scores = tf.matmul(found[2], self.head.kernel) + self.head.bias
            else:  # a model without kres's head: the log-probability
                scores = tf.math.log(tf.maximum(probs, 1e-12))
            cls = (tf.argmax(probs, axis=-1) if wanted is None
                   else tf.cast(tf.convert_to_tensor(wanted), tf.int64))
            target = tf.gather(scores, cls, batch_dims=1)
        grads = tape.gradient(target, features)
        if self.method == "gradcam":
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        else:  # Grad-CAM++'s coefficients for exp(score): g^2 / (2 g^2 + sum(A) g^3)
            squared = tf.square(grads)
            total = tf.reduce_sum(features, axis=(1, 2), keepdims=True)
            alpha = tf.math.divide_no_nan(squared, 2.0 * squared + total * squared * grads)
            weights = tf.reduce_sum(alpha * tf.nn.relu(grads), axis=(1, 2), keepdims=True)
        maps = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))
        up = tf.image.resize(maps[..., None], self.size, method="bilinear")[..., 0]
        top = tf.reduce_max(up, axis=(1, 2), keepdims=True)
        return tf.math.divide_no_nan(up, top), probs, cls


def _check_images(model, images):
    try:
        batch = np.asarray(images, dtype=np.float32)
    except (TypeError, ValueError):
        checks.fail("images", type(images).__name__, "must be an array of images")
    if batch.ndim == 3:
        batch = batch[None]
    expected = tuple(model.input_shape[1:])
    if batch.ndim != 4 or len(batch) == 0 or any(
            e is not None and e != got for e, got in zip(expected, batch.shape[1:])):
        raise ValueError(f"images must be one image or a batch of the model's input shape "
                         f"{expected}. Received: images of shape {batch.shape}")
    return batch


def _check_classes(class_index, count, classes):
    if class_index is None:
        return None
    wanted = np.asarray(class_index)
    if wanted.ndim == 0:
        wanted = np.full(count, wanted)
    if (wanted.shape != (count,) or not np.issubdtype(wanted.dtype, np.integer)
            or wanted.min() < 0 or wanted.max() >= classes):
        raise ValueError(f"class_index must be None, a class in [0, {classes}) or one per "
                         f"image ({count}). Received: class_index={class_index!r}")
    return wanted.astype(np.int64)


def _network(model):
    """The Functional model holding the stages, in float32, and the function that
    feeds it what `model` feeds it, or ``None`` when it takes `model`'s input as is."""
    return _unwrap(in_float32(model))


def _unwrap(model):
    """`_network` of a float32 model. A model with no convolution of its own and one
    nested model wraps it (`with_preprocessing`, `flip_averaged`, a user's model
    with layers in front such as a rescaling): its stages are the nested model's,
    fed through the layers before it. Keras keeps a Functional model's calls in
    ``_nodes_by_depth`` (no public accessor in Keras 3.15)."""
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(nested) != 1 or any(isinstance(layer, keras.layers.Conv2D)
                               for layer in model.layers):
        return model, None
    inner = nested[0]
    calls = [node for nodes in model._nodes_by_depth.values() for node in nodes
             if node.operation is inner]
    feed = None
    if len(calls) == 1:  # (two: `flip_averaged`, the network on the image and its mirror)
        call = calls[0]
        if model.outputs[0] is not call.output_tensors[0]:
            after = [layer.name for layer in model.layers[model.layers.index(inner) + 1:]]
            raise ValueError(
                f"kres.explain weighs the stages of a kres network, alone or wrapped with "
                f"layers in front of it; the model {model.name!r} has layers after it "
                f"({', '.join(after) or 'its output'}). Explain the network itself. "
                f"Received: model={model.name!r}")
        if call.input_tensors[0] is not model.inputs[0]:
            front = keras.Model(model.inputs[0], call.input_tensors[0])
            feed = lambda x: front(x, training=False)  # noqa: E731
    network, inner_feed = _unwrap(inner)
    if feed is None or inner_feed is None:
        return network, feed or inner_feed
    return network, lambda x: inner_feed(feed(x))


def _stage_layer(network, stage, field="stage"):
    """``(stage name, layer name)`` of `stage` (``None``: the deepest)."""
    stages = stage_layers(network)
    if stage is None:
        stage = max(stages, key=lambda s: int(s[1:]))
    if stage not in stages:
        raise ValueError(f"{field} must be one of the model's stages ({', '.join(stages)}; "
                         f"C<k> is the output at stride 2**k). Received: {field}={stage!r}")
    return stage, stages[stage].layer


def overlay(image, heatmap, *, alpha=0.45):
    """An image with its heatmap laid over it in the ``jet`` colours, uint8 RGB.

    Args:
        image: uint8 pixels ``(height, width, channels)``, 1 or 3 channels.
        heatmap: ``(height, width)`` in [0, 1].
        alpha: the heatmap's opacity.
    """
    from matplotlib import colormaps

    rgb = np.asarray(image, dtype=np.float32)
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    colours = colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3] * 255
    return np.clip((1 - alpha) * rgb + alpha * colours, 0, 255).astype(np.uint8)
