"""Custom Keras layers that kres models need where no built-in layer fits.

Each layer is registered as serializable under the ``kres`` package, so models
that use it save to ``.keras`` and load back with ``safe_mode=True``.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kres")
class GroupedConv2D(keras.layers.Conv2D):
    """A grouped 2D convolution that is exact, fast and trainable on every device.

    It is `keras.layers.Conv2D(groups=g)` with the same arguments, the same
    config and the same kernel layout ``(kh, kw, in_channels // g, filters)``,
    so weights and configs move freely between the two. Only the computation
    differs, chosen per device when the layer is traced (measurements in
    ``docs/benchmarks.md``):

    - on a GPU, TensorFlow's own grouped convolution (cuDNN's), called
      directly; ``Conv2D`` would wrap it in an XLA cluster of its own;
    - on a CPU, one ordinary convolution per group, concatenated. TensorFlow
      has no CPU kernel for the grouped convolution's backward pass, and
      ``Conv2D`` falls back to XLA, which is hundreds of times slower.

    Under other Keras backends it is ``Conv2D``. A model traced on a GPU
    (a SavedModel exported there, say) holds the native grouped op, whose
    forward pass also runs on a CPU.

    Example:

    >>> layer = GroupedConv2D(64, 3, groups=32, padding="same")
    >>> layer(keras.ops.ones((1, 8, 8, 64))).shape
    (1, 8, 8, 64)
    """

    def convolution_op(self, inputs, kernel):
        if self.groups == 1 or keras.backend.backend() != "tensorflow":
            return super().convolution_op(inputs, kernel)
        import tensorflow as tf

        if _placed_on_gpu(tf, inputs):
            return tf.nn.convolution(
                inputs, kernel, strides=list(self.strides), padding=self.padding.upper(),
                dilations=list(self.dilation_rate),
                data_format="NHWC" if self.data_format == "channels_last" else "NCHW")
        axis = -1 if self.data_format == "channels_last" else 1
        groups = zip(
            ops.split(inputs, self.groups, axis=axis),
            ops.split(kernel, self.groups, axis=-1),
        )
        return ops.concatenate(
            [
                ops.conv(
                    x,
                    k,
                    strides=list(self.strides),
                    padding=self.padding,
                    dilation_rate=self.dilation_rate,
                    data_format=self.data_format,
                )
                for x, k in groups
            ],
            axis=axis,
        )


def _placed_on_gpu(tf, tensor):
    """Whether ops on `tensor` will run on a GPU: its device when known, else whether one exists."""
    device = getattr(tensor, "device", "") or ""
    if device:
        return "GPU" in device.upper()
    return bool(tf.config.list_logical_devices("GPU"))


@keras.saving.register_keras_serializable(package="kres")
class ZeroPadChannels(keras.layers.Layer):
    """Appends all-zero channels to a channels-last tensor.

    The parameter-free "option A" shortcut of the ResNet paper (Sec. 4.2) uses
    it to widen the identity when a stage doubles its width.

    Args:
        padding: a pair ``(before, after)``: how many zero channels to put
            before and after the existing ones.

    Example:

    >>> ZeroPadChannels((1, 2))(keras.ops.ones((1, 2, 2, 3))).shape
    (1, 2, 2, 6)
    """

    def __init__(self, padding, **kwargs):
        super().__init__(**kwargs)
        before, after = (int(p) for p in padding)
        if before < 0 or after < 0:
            raise ValueError(
                f"padding must be two non-negative integers. Received: padding={padding}"
            )
        self.padding = (before, after)

    def call(self, inputs):
        return ops.pad(inputs, [[0, 0], [0, 0], [0, 0], list(self.padding)])

    def compute_output_shape(self, input_shape):
        channels = input_shape[-1]
        if channels is not None:
            channels += sum(self.padding)
        return (*input_shape[:-1], channels)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


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

    >>> LocalResponseNormalization()(keras.ops.ones((1, 2, 2, 8))).shape
    (1, 2, 2, 8)
    """

    def __init__(self, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        if isinstance(depth_radius, bool) or not isinstance(depth_radius, int) or depth_radius < 0:
            raise ValueError(
                "depth_radius must be a non-negative integer. "
                f"Received: depth_radius={depth_radius!r}"
            )
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
