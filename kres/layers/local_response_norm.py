"""Local response normalisation across channels, as AlexNet and GoogLeNet use it."""

import keras
from keras import ops

from kres import checks


@keras.saving.register_keras_serializable(package="kres")
class LocalResponseNormalization(keras.layers.Layer):
    """Local response normalisation across channels (AlexNet paper, Sec. 3.3).

    ``b_c = a_c / (bias + alpha * sum(a_j ** 2 for j within depth_radius of c)) ** beta``,
    with the sum over the channels ``c - depth_radius ... c + depth_radius``
    that exist. The defaults are the paper's ``k = 2, n = 5, alpha = 1e-4,
    beta = 0.75``; like TensorFlow's ``tf.nn.local_response_normalization``
    (and unlike Caffe and PyTorch) `alpha` multiplies the sum, not the mean.

    Args:
        depth_radius: half the window, ``(n - 1) / 2``.
        bias: the constant ``k``.
        alpha: the scale of the sum of squares.
        beta: the exponent.

    Example:

    >>> import keras
    >>> from kres.layers import LocalResponseNormalization
    >>> outputs = LocalResponseNormalization()(keras.ops.ones((1, 2, 2, 8)))
    >>> tuple(outputs.shape), round(float(outputs[0, 0, 0, 0]), 4)  # 1 / (2 + 3e-4) ** 0.75
    ((1, 2, 2, 8), 0.5945)
    """

    def __init__(self, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        checks.integer("depth_radius", depth_radius, minimum=0)
        self.depth_radius = depth_radius
        self.bias, self.alpha, self.beta = float(bias), float(alpha), float(beta)

    def call(self, inputs):
        channels = inputs.shape[-1]
        r = self.depth_radius
        squares = ops.pad(ops.square(inputs), [[0, 0], [0, 0], [0, 0], [r, r]])
        window = sum(squares[..., d:d + channels] for d in range(2 * r + 1))
        return inputs / ops.power(self.bias + self.alpha * window, self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "depth_radius": self.depth_radius, "bias": self.bias,
                "alpha": self.alpha, "beta": self.beta}
