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
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose training pass runs as one fused kernel.

    Same arguments, config, weights and maths as the Keras layer (whose
    config it keeps, so the two swap freely). In training, under the
    TensorFlow backend, for a 4D channels-last input without a mask, it
    computes the batch statistics, the normalisation and their gradients with
    TensorFlow's fused batch-norm op instead of Keras's chain of separate
    reductions and element-wise ops; that is one pass over the activations
    where Keras makes several, and batch norm is a large share of a
    ResNet's training step on a CPU (``docs/benchmarks.md``). The moving
    statistics are updated exactly as Keras updates them (from the biased
    batch variance). Everything else (inference, renorm, synchronized,
    masks, other layouts and backends) is the Keras layer's own code.

    Example:

    >>> layer = BatchNormalization(epsilon=1e-5)
    >>> layer(keras.ops.ones((2, 4, 4, 8)), training=True).shape
    (2, 4, 4, 8)
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable and self._fusable(inputs, mask)):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        scale = (ops.cast(self.gamma, "float32") if self.scale
                 else tf.ones((channels,), "float32"))
        offset = (ops.cast(self.beta, "float32") if self.center
                  else tf.zeros((channels,), "float32"))
        empty = tf.constant([], "float32")
        outputs, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=scale, offset=offset, mean=empty, variance=empty,
            epsilon=self.epsilon, exponential_avg_factor=1.0, data_format="NHWC",
            is_training=True)
        # The op returns the unbiased (n - 1) variance; Keras averages the biased one.
        count = tf.cast(tf.size(inputs) // channels, "float32")
        variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
        momentum = self.momentum
        self.moving_mean.assign(
            self.moving_mean * momentum + ops.cast(mean, self.moving_mean.dtype) * (1 - momentum))
        self.moving_variance.assign(
            self.moving_variance * momentum
            + ops.cast(variance, self.moving_variance.dtype) * (1 - momentum))
        return ops.cast(outputs, self.compute_dtype)

    def _fusable(self, inputs, mask):
        return (keras.backend.backend() == "tensorflow" and mask is None
                and len(inputs.shape) == 4 and self.axis in (3, -1)
                and inputs.shape[-1] is not None
                and not self.renorm and not self.synchronized
                and keras.backend.standardize_dtype(inputs.dtype) in (
                    "float32", "float16", "bfloat16"))


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
