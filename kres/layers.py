"""Custom Keras layers that kres models need where no built-in layer fits.

Each layer is registered as serializable under the ``kres`` package, so models
that use it save to ``.keras`` and load back with ``safe_mode=True``.
"""

import contextlib
import contextvars
import functools
import os

import keras
from keras import ops

FORMULATION_VARIABLE = "KRES_GROUPED_CONV"
FORMULATIONS = ("auto", "native", "split")


@keras.saving.register_keras_serializable(package="kres")
class GroupedConv2D(keras.layers.Conv2D):
    """A grouped 2D convolution that is exact, fast and trainable on every device.

    It is `keras.layers.Conv2D(groups=g)` with the same arguments, the same
    config and the same kernel layout ``(kh, kw, in_channels // g, filters)``,
    so weights and configs move freely between the two. Only the computation
    differs: ``Conv2D`` sends every grouped convolution on a CPU through XLA,
    which is tens to hundreds of times slower there, while this layer picks,
    when it is traced, the fastest formulation that can run forward and
    backward (measurements in ``docs/benchmarks.md``):

    - ``native``: TensorFlow's own grouped convolution, called directly. On a
      GPU that is cuDNN's; on a CPU it is oneDNN's, whose backward pass
      TensorFlow runs when its oneDNN optimisations are on (its default on
      many x86 CPUs; ``TF_ENABLE_ONEDNN_OPTS`` sets them) and refuses to run
      when they are off;
    - ``split``: one ordinary convolution per group, concatenated. Exact and
      trainable everywhere; used on a CPU where the native backward pass is
      missing, and inside XLA-compiled functions on a CPU (XLA's CPU grouped
      convolution is the slow one).

    A graph traced with the native op is not portable to every CPU: where
    oneDNN is off, TensorFlow's graph optimiser fuses a grouped convolution
    with the bias, batch norm or ReLU after it into a kernel that refuses
    groups ("Fused conv implementation does not support grouped
    convolutions"). `kres.export` therefore traces the split formulation,
    which every CPU and GPU runs (see `formulation`).

    The environment variable ``KRES_GROUPED_CONV`` (``auto``, the default;
    ``native``; ``split``), read when a model is traced, overrides every
    choice, `kres.export`'s included. Under other Keras backends the layer
    is ``Conv2D``.

    Example:

    >>> layer = GroupedConv2D(64, 3, groups=32, padding="same")
    >>> layer(keras.ops.ones((1, 8, 8, 64))).shape
    (1, 8, 8, 64)
    """

    def convolution_op(self, inputs, kernel):
        if self.groups == 1 or keras.backend.backend() != "tensorflow":
            return super().convolution_op(inputs, kernel)
        import tensorflow as tf

        if grouped_formulation(tf, inputs) == "native":
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


_chosen = contextvars.ContextVar("kres_grouped_conv_formulation", default="auto")


@contextlib.contextmanager
def formulation(name):
    """Within the block, `GroupedConv2D` layers traced use formulation `name`.

    `name` is ``"native"``, ``"split"`` or ``"auto"`` (the layer's own
    choice); the environment variable ``KRES_GROUPED_CONV``, when set to
    ``native`` or ``split``, still wins. `kres.export` traces its SavedModel
    under ``formulation("split")``, the one every server runs.

    Example:

    >>> with formulation("split"):
    ...     y = GroupedConv2D(8, 3, groups=2)(keras.ops.ones((1, 4, 4, 4)))
    """
    if name not in FORMULATIONS:
        raise ValueError(f"name must be one of {', '.join(FORMULATIONS)}. Received: name={name!r}")
    token = _chosen.set(name)
    try:
        yield
    finally:
        _chosen.reset(token)


def grouped_formulation(tf, inputs):
    """``"native"`` or ``"split"``: how `GroupedConv2D` computes on `inputs` here and now.

    ``KRES_GROUPED_CONV`` when set to ``native`` or ``split``; else the
    enclosing `formulation` block's choice; otherwise the native op on a
    GPU, and on a CPU wherever TensorFlow can run its backward pass there
    (outside XLA-compiled functions), else ``split``.
    """
    choice = os.environ.get(FORMULATION_VARIABLE, "auto").strip().lower() or "auto"
    if choice not in FORMULATIONS:
        raise ValueError(
            f"{FORMULATION_VARIABLE} must be one of {', '.join(FORMULATIONS)}. "
            f"Received: {FORMULATION_VARIABLE}={os.environ[FORMULATION_VARIABLE]!r}")
    if choice == "auto":
        choice = _chosen.get()
    if choice != "auto":
        return choice
    if _placed_on_gpu(tf, inputs):
        return "native"
    if _in_xla_function(tf):
        return "split"
    dtype = keras.backend.standardize_dtype(inputs.dtype)
    return "native" if cpu_runs_grouped_backward(dtype) else "split"


def _placed_on_gpu(tf, tensor):
    """Whether ops on `tensor` will run on a GPU: its device when known, else whether one exists."""
    device = getattr(tensor, "device", "") or ""
    if device:
        return "GPU" in device.upper()
    return bool(tf.config.list_logical_devices("GPU"))


def _in_xla_function(tf):
    """Whether the graph being traced is compiled by XLA (``jit_compile=True``)."""
    from tensorflow.python.ops import control_flow_util

    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


@functools.cache
def cpu_runs_grouped_backward(dtype):
    """Whether TensorFlow computes a grouped convolution's gradients on this CPU in `dtype`.

    It does when its oneDNN optimisations are on (they supply the kernels);
    its own CPU kernels refuse. Tried once per dtype on a tiny convolution,
    in a graph function as `model.fit` runs one.
    """
    import tensorflow as tf

    @tf.function(autograph=False)
    def gradients(x, kernel, dy):  # a 3x3, stride-2, 2-group convolution's two gradients
        strides = [1, 2, 2, 1]
        return (tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(x), filter=kernel,
                                               out_backprop=dy, strides=strides, padding="SAME"),
                tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=tf.shape(kernel),
                                                out_backprop=dy, strides=strides, padding="SAME"))

    with tf.init_scope(), tf.device("/cpu:0"):
        try:
            gradients(tf.ones((1, 5, 5, 4), dtype), tf.ones((3, 3, 2, 4), dtype),
                      tf.ones((1, 3, 3, 4), dtype))
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError,
                tf.errors.NotFoundError):
            return False
    return True


@keras.saving.register_keras_serializable(package="kres")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` computed by TensorFlow's fused batch-norm op.

    Same arguments, config, weights and maths as the Keras layer (whose
    config it keeps, so the two swap freely). Under the TensorFlow backend,
    for a 4D channels-last input without a mask, it normalises with
    ``FusedBatchNormV3`` instead of Keras's chain of separate reductions and
    element-wise ops:

    - in training, the batch statistics, the normalisation and their
      gradients are one pass over the activations where Keras makes several,
      and batch norm is a large share of a ResNet's training step on a CPU;
      the moving statistics are updated exactly as Keras updates them (from
      the biased batch variance);
    - in inference (the moving statistics), the op is one TensorFlow's graph
      optimiser folds into the convolution before it, as it does not fold
      Keras's element-wise ops; after a convolution with a bias (which stops
      that folding), Keras's own ops, which measured faster there.

    Measurements in ``docs/benchmarks.md``. Everything else (renorm,
    synchronized, masks, other layouts and backends) is the Keras layer's
    own code.

    Example:

    >>> layer = BatchNormalization(epsilon=1e-5)
    >>> layer(keras.ops.ones((2, 4, 4, 8)), training=True).shape
    (2, 4, 4, 8)
    """

    def call(self, inputs, training=None, mask=None):
        inference = not (training and self.trainable)
        # After a bias add Keras's multiply-add measured faster: it folds there, ours not.
        if not self._fusable(inputs, mask) or (inference and _is_biased_convolution(inputs)):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        scale = (ops.cast(self.gamma, "float32") if self.scale
                 else tf.ones((channels,), "float32"))
        offset = (ops.cast(self.beta, "float32") if self.center
                  else tf.zeros((channels,), "float32"))
        if inference:
            outputs, *_ = tf.raw_ops.FusedBatchNormV3(
                x=inputs, scale=scale, offset=offset,
                mean=ops.cast(self.moving_mean, "float32"),
                variance=ops.cast(self.moving_variance, "float32"),
                epsilon=self.epsilon, data_format="NHWC", is_training=False)
            return ops.cast(outputs, self.compute_dtype)
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


def _is_biased_convolution(tensor):
    """Whether `tensor`, in a graph being traced, is a convolution's output plus a bias."""
    op = getattr(tensor, "op", None)  # eager tensors have none
    if op is None or op.type not in ("AddV2", "Add", "BiasAdd") or len(op.inputs) != 2:
        return False
    a, b = op.inputs
    return any(conv.op.type in ("Conv2D", "DepthwiseConv2dNative")
               and bias.shape.num_elements() == conv.shape[-1]  # not a residual sum
               for conv, bias in ((a, b), (b, a)))


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
