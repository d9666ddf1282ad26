"""A model's own input normalisation, with what a server needs to know about its input."""

import keras
from keras import ops

from kres import checks


@keras.saving.register_keras_serializable(package="kres")
class InputPreprocessing(keras.layers.Layer):
    """A model's own input normalisation, and what else its server needs to know.

    The first layer of every model kres trains: it takes RGB (or grayscale)
    pixels, 0-255, at the model's input size, and normalises them as the
    network was trained (`kres.preprocessing.Preprocessing.normalize`:
    channel order, mean, standard deviation). Its config also records how an
    image is brought to the input size (`resize`) and what the classes are
    called (`class_names`), so a ``.keras`` file alone says how to serve the
    model: `kres.export`, `kres evaluate` and `kres predict` read it from
    here, wherever the file was moved. It has no weights and computes in
    float32 whatever the model's dtype policy.

    Args:
        mean: per-channel mean in [0, 1] (one value, or one per channel),
            in the model's channel order.
        std: per-channel standard deviation in [0, 1].
        channel_order: ``"rgb"``, or ``"bgr"`` for weights trained on BGR
            images (the layer reverses the channels first).
        resize: ``"resize"`` or ``"center_crop"``: how an image of another
            size is brought to the input size (`kres.preprocessing.eval_resize`).
        class_names: a name per class, or ``None``.
        threshold: a multi-label model's (sigmoid outputs): an image's labels
            are the classes whose probability is at least `threshold`, in
            (0, 1); ``None`` for a classifier of one class per image.

    Example:

    >>> import keras
    >>> from kres.layers import InputPreprocessing
    >>> layer = InputPreprocessing(mean=(0.5,), std=(0.25,))
    >>> float(layer(keras.ops.full((1, 2, 2, 1), 255.0))[0, 0, 0, 0])
    2.0
    """

    def __init__(self, mean, std, channel_order="rgb", resize="resize", class_names=None,
                 threshold=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.mean, self.std = checks.as_tuple(mean), checks.as_tuple(std)
        self.channel_order, self.resize = channel_order, resize
        if class_names is not None:
            if not isinstance(class_names, list | tuple) or not all(
                    isinstance(c, str) for c in class_names):
                checks.fail("class_names", class_names, "must be a list of strings or None")
            class_names = list(class_names)
        self.class_names = class_names
        if threshold is not None:
            checks.number("threshold", threshold, low=0, high=1, low_open=True, high_open=True)
            threshold = float(threshold)
        self.threshold = threshold
        # Every value checked now, before the channels are known (at build).
        widest = max([len(v) for v in (self.mean, self.std) if isinstance(v, tuple)]
                     + [3 if channel_order == "bgr" else 1])
        self._description(1, 1, 3 if widest == 3 else 1)

    def _description(self, height, width, channels):
        from kres.preprocessing import Preprocessing

        return Preprocessing(height, width, channels, self.mean, self.std, self.resize,
                             self.channel_order)

    def build(self, input_shape):
        self._prep = self._description(1, 1, input_shape[-1])

    def call(self, inputs):
        return self._prep.normalize(ops.cast(inputs, self.compute_dtype))

    def compute_output_shape(self, input_shape):
        return input_shape

    def preprocessing(self, height, width, channels):
        """The `kres.preprocessing.Preprocessing` of an input of that size."""
        return self._description(height, width, channels)

    def get_config(self):
        return {**super().get_config(), "mean": list(self.mean), "std": list(self.std),
                "channel_order": self.channel_order, "resize": self.resize,
                "class_names": self.class_names,
                **({"threshold": self.threshold} if self.threshold is not None else {})}
