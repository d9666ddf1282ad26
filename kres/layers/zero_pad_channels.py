"""The zero-padded identity of the ResNet paper's option A shortcut."""

import keras
from keras import ops

from kres import checks


@keras.saving.register_keras_serializable(package="kres")
class ZeroPadChannels(keras.layers.Layer):
    """Appends all-zero channels to a channels-last tensor.

    The parameter-free "option A" shortcut of the ResNet paper (Sec. 4.2) uses
    it to widen the identity when a stage doubles its width.

    Args:
        padding: a pair ``(before, after)``: how many zero channels to put
            before and after the existing ones.

    Example:

    >>> import keras
    >>> from kres.layers import ZeroPadChannels
    >>> outputs = ZeroPadChannels((1, 2))(keras.ops.ones((1, 2, 2, 3)))
    >>> tuple(outputs.shape), keras.ops.convert_to_numpy(outputs[0, 0, 0]).tolist()
    ((1, 2, 2, 6), [0.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    """

    def __init__(self, padding, **kwargs):
        super().__init__(**kwargs)
        padding = checks.as_tuple(padding)
        checks.int_tuple("padding", padding, minimum=0)
        if len(padding) != 2:
            checks.fail("padding", padding, "must be a pair (before, after)")
        self.padding = padding

    def call(self, inputs):
        return ops.pad(inputs, [[0, 0], [0, 0], [0, 0], list(self.padding)])

    def compute_output_shape(self, input_shape):
        channels = input_shape[-1]
        if channels is not None:
            channels += sum(self.padding)
        return (*input_shape[:-1], channels)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}
