"""Custom Keras layers that kres models need where no built-in layer fits.

Each layer is registered as serializable under the ``kres`` package, so models
that use it save to ``.keras`` and load back with ``safe_mode=True``.
"""

import contextlib
import functools
import os

import keras
from keras import ops

from kres import checks

FORMULATION_VARIABLE = "KRES_GROUPED_CONV"
FORMULATIONS = ("auto", "native", "split")


@keras.saving.register_keras_serializable(package="kres")
class GroupedConv2D(keras.layers.Conv2D):
    """A grouped 2D convolution that is exact, fast and trainable on every device.

    It is `keras.layers.Conv2D(groups=g)` with the same arguments, the same
    config (plus `formulation`) and the same kernel layout ``(kh, kw,
    in_channels // g, filters)``, so weights move freely between the two.
    Only the computation differs: ``Conv2D`` sends every grouped convolution
    on a CPU through XLA, which is tens to hundreds of times slower there,
    while this layer computes it in one of two ways (measurements in
    ``docs/benchmarks.md``):

    - ``native``: TensorFlow's own grouped convolution, called directly. On a
      GPU that is cuDNN's; on a CPU it is oneDNN's, whose backward pass
      TensorFlow runs when its oneDNN optimisations are on (its default on
      many x86 CPUs; ``TF_ENABLE_ONEDNN_OPTS`` sets them) and refuses to run
      when they are off;
    - ``split``: one ordinary convolution per group, concatenated. Exact and
      trainable everywhere.

    Which one, when the layer is traced, in this order:

    1. the layer's `formulation` argument, when not ``"auto"``;
    2. the environment variable ``KRES_GROUPED_CONV`` (``native`` or
       ``split``), when set;
    3. otherwise a probe: native on a GPU; split inside an XLA-compiled
       function on a CPU (XLA's CPU grouped convolution is the slow one);
       native on a CPU where TensorFlow runs the grouped backward pass
       (`cpu_runs_grouped_backward`), else split.

    A graph traced with the native op is not portable to every CPU: where
    oneDNN is off, TensorFlow's graph optimiser fuses a grouped convolution
    with the bias, batch norm or ReLU after it into a kernel that refuses
    groups ("Fused conv implementation does not support grouped
    convolutions"). `kres.export` therefore traces its SavedModel with every
    grouped convolution set to ``split`` (`use_formulation`). Under other
    Keras backends the layer is ``Conv2D``.

    Args:
        *args, **kwargs: those of `keras.layers.Conv2D`.
        formulation: ``"auto"`` (the default), ``"native"`` or ``"split"``.

    Example:

    >>> layer = GroupedConv2D(64, 3, groups=32, padding="same")
    >>> layer(keras.ops.ones((1, 8, 8, 64))).shape
    (1, 8, 8, 64)
    """

    def __init__(self, *args, formulation="auto", **kwargs):
        super().__init__(*args, **kwargs)
        checks.choice("formulation", formulation, FORMULATIONS)
        self.formulation = formulation

    def get_config(self):
        return {**super().get_config(), "formulation": self.formulation}

    def convolution_op(self, inputs, kernel):
        if self.groups == 1 or keras.backend.backend() != "tensorflow":
            return super().convolution_op(inputs, kernel)
        import tensorflow as tf

        if grouped_formulation(tf, inputs, self.formulation) == "native":
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


@contextlib.contextmanager
def use_formulation(model, formulation):
    """Within the block, every `GroupedConv2D` of `model` is traced as `formulation`.

    Sets the layers' `formulation` argument (which wins over
    ``KRES_GROUPED_CONV`` and the probe) and restores each layer's own value
    on leaving. Functions traced before the block keep their formulation.
    `kres.export` traces its SavedModel under ``use_formulation(model,
    "split")``, the form every server runs.

    Args:
        model: a Keras model (nested models included) or layer.
        formulation: ``"auto"``, ``"native"`` or ``"split"``.

    Example:

    >>> model = kres.ResNeXt29_32x4d(depths=(1, 1, 1))
    >>> with use_formulation(model, "split"):
    ...     probabilities = model(keras.ops.ones((1, 32, 32, 3)))
    """
    checks.choice("formulation", formulation, FORMULATIONS)
    layers = [layer for layer in _flat_layers(model) if isinstance(layer, GroupedConv2D)]
    saved = [layer.formulation for layer in layers]
    for layer in layers:
        layer.formulation = formulation
    try:
        yield
    finally:
        for layer, value in zip(layers, saved):
            layer.formulation = value


def _flat_layers(layer):
    yield layer
    for child in getattr(layer, "layers", ()):
        yield from _flat_layers(child)


def grouped_formulation(tf, inputs, formulation="auto"):
    """``"native"`` or ``"split"``: how `GroupedConv2D` computes on `inputs` here and now.

    In order: `formulation` when not ``"auto"``; ``KRES_GROUPED_CONV`` when
    set to ``native`` or ``split``; otherwise the native op on a GPU, and on
    a CPU wherever TensorFlow can run its backward pass there (outside
    XLA-compiled functions), else ``split``.

    Raises:
        ValueError: for a ``KRES_GROUPED_CONV`` that is none of these.
    """
    if formulation != "auto":
        return formulation
    variable = os.environ.get(FORMULATION_VARIABLE, "auto").strip().lower() or "auto"
    if variable not in FORMULATIONS:
        raise ValueError(
            f"{FORMULATION_VARIABLE} must be one of {', '.join(FORMULATIONS)}. "
            f"Received: {FORMULATION_VARIABLE}={os.environ[FORMULATION_VARIABLE]!r}")
    if variable != "auto":
        return variable
    if _placed_on_gpu(tf, inputs):
        return "native"
    if tf.__internal__.get_enclosing_xla_context() is not None:
        return "split"
    dtype = keras.backend.standardize_dtype(inputs.dtype)
    return "native" if cpu_runs_grouped_backward(dtype) else "split"


def _placed_on_gpu(tf, tensor):
    """Whether ops on `tensor` will run on a GPU: its device when known, else whether one exists."""
    device = getattr(tensor, "device", "") or ""
    if device:
        return "GPU" in device.upper()
    return bool(tf.config.list_logical_devices("GPU"))


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

    Same arguments, weights and maths as the Keras layer, and its config plus
    `fused_inference`. Under the TensorFlow backend, for a 4D channels-last
    input without a mask, it normalises with ``FusedBatchNormV3`` instead of
    Keras's chain of separate reductions and element-wise ops:

    - in training, the batch statistics, the normalisation and their
      gradients are one pass over the activations where Keras makes several,
      and batch norm is a large share of a ResNet's training step on a CPU;
      the moving statistics are updated exactly as Keras updates them (from
      the biased batch variance);
    - in inference (the moving statistics), the op is one TensorFlow's graph
      optimiser folds into the convolution before it, as it does not fold
      Keras's element-wise ops. After a convolution with a bias, which stops
      that folding, Keras's own multiply-add measured faster: the builders
      pass ``fused_inference=False`` there.

    Measurements in ``docs/benchmarks.md``. Everything else (renorm,
    synchronized, masks, other layouts and backends) is the Keras layer's
    own code.

    A `frozen` layer is batch norm as detectors fine-tune a pretrained
    backbone (torchvision's ``FrozenBatchNorm2d``): it always normalises
    with its moving statistics, and its scale, offset and statistics never
    change, whatever ``trainable`` is set to later and whatever `training`
    a caller passes. Keras's own layer has no such state: setting
    ``model.trainable = True`` makes every inner batch norm trainable again,
    and Keras 3's ``fit`` trains a functional model's layers even where it
    was called with ``training=False`` (keras-team/keras#20285). `frozen` is
    part of the config, so it survives saving and loading.

    Args:
        *args, **kwargs: those of `keras.layers.BatchNormalization`.
        fused_inference: use the fused op in inference too (True, the
            default); False keeps Keras's ops there (after a biased
            convolution).
        frozen: freeze the layer for good (False by default; also settable
            as the attribute ``layer.frozen``).

    Example:

    >>> layer = BatchNormalization(epsilon=1e-5)
    >>> layer(keras.ops.ones((2, 4, 4, 8)), training=True).shape
    (2, 4, 4, 8)
    """

    def __init__(self, *args, fused_inference=True, frozen=False, **kwargs):
        super().__init__(*args, **kwargs)
        checks.boolean("fused_inference", fused_inference)
        self.fused_inference = fused_inference
        self.frozen = frozen

    @property
    def frozen(self):
        """Whether the layer is frozen for good (see the class docstring)."""
        return getattr(self, "_frozen", False)

    @frozen.setter
    def frozen(self, value):
        checks.boolean("frozen", value)
        self._frozen = value
        self._sync_variables()

    @property
    def trainable(self):
        """Keras's `trainable`, always False while the layer is `frozen`."""
        return self._trainable and not self.frozen

    @trainable.setter
    def trainable(self, value):
        # What Keras's setter does (a model's `trainable = True` reaches every layer
        # through it), except that a frozen layer's variables stay untrainable.
        self._trainable = bool(value)
        self._sync_variables()

    def _sync_variables(self):
        for variable in self._trainable_variables:
            variable.trainable = self.trainable

    def build(self, input_shape):
        super().build(input_shape)
        self._sync_variables()

    def get_config(self):
        return {**super().get_config(), "fused_inference": self.fused_inference,
                "frozen": self.frozen}

    def call(self, inputs, training=None, mask=None):
        inference = not (training and self.trainable)
        if not self._fusable(inputs, mask) or (inference and not self.fused_inference):
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

    Example:

    >>> layer = InputPreprocessing(mean=(0.5,), std=(0.25,))
    >>> float(layer(keras.ops.full((1, 2, 2, 1), 255.0))[0, 0, 0, 0])
    2.0
    """

    def __init__(self, mean, std, channel_order="rgb", resize="resize", class_names=None,
                 **kwargs):
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
                "class_names": self.class_names}
