"""Grouped convolutions that are exact, fast and trainable on every device."""

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
    grouped convolution set to ``split`` (`use_formulation`). On Keras's JAX
    backend, ``native`` is XLA's grouped convolution, and ``auto`` is split
    on a CPU and native on a GPU. Under other Keras backends the layer is
    ``Conv2D``.

    Args:
        *args, **kwargs: those of `keras.layers.Conv2D`.
        formulation: ``"auto"`` (the default), ``"native"`` or ``"split"``.

    Example:

    >>> import keras
    >>> from kres.layers import GroupedConv2D
    >>> layer = GroupedConv2D(64, 3, groups=32, padding="same")
    >>> tuple(layer(keras.ops.ones((1, 8, 8, 64))).shape), tuple(layer.kernel.shape)
    ((1, 8, 8, 64), (3, 3, 2, 64))
    """

    def __init__(self, *args, formulation="auto", **kwargs):
        super().__init__(*args, **kwargs)
        checks.choice("formulation", formulation, FORMULATIONS)
        self.formulation = formulation

    def get_config(self):
        return {**super().get_config(), "formulation": self.formulation}

    def convolution_op(self, inputs, kernel):
        if self.groups == 1 or keras.backend.backend() not in ("tensorflow", "jax"):
            return super().convolution_op(inputs, kernel)
        if keras.backend.backend() == "jax":
            if _jax_formulation(self.formulation) == "native":
                return super().convolution_op(inputs, kernel)
        else:
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

    >>> import keras
    >>> import kres
    >>> from kres.layers import use_formulation
    >>> model = kres.ResNeXt29_32x4d(depths=(1, 1, 1))
    >>> grouped = model.get_layer("conv2_block1_2_conv")
    >>> with use_formulation(model, "split"):
    ...     probabilities = model(keras.ops.ones((1, 32, 32, 3)))
    ...     grouped.formulation
    'split'
    >>> grouped.formulation, tuple(probabilities.shape)
    ('auto', (1, 10))
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
    variable = _asked_formulation()
    if variable != "auto":
        return variable
    if _placed_on_gpu(tf, inputs):
        return "native"
    if tf.__internal__.get_enclosing_xla_context() is not None:
        return "split"
    dtype = keras.backend.standardize_dtype(inputs.dtype)
    return "native" if cpu_runs_grouped_backward(dtype) else "split"


def _asked_formulation():
    """``KRES_GROUPED_CONV``'s formulation (``auto`` when unset), checked."""
    variable = os.environ.get(FORMULATION_VARIABLE, "auto").strip().lower() or "auto"
    if variable not in FORMULATIONS:
        raise ValueError(
            f"{FORMULATION_VARIABLE} must be one of {', '.join(FORMULATIONS)}. "
            f"Received: {FORMULATION_VARIABLE}={os.environ[FORMULATION_VARIABLE]!r}")
    return variable


def _jax_formulation(formulation):
    """On JAX: XLA's grouped convolution (``native``) on a GPU, one convolution per
    group (``split``) on a CPU, where XLA's grouped kernels are the slow ones;
    the layer's `formulation`, else ``KRES_GROUPED_CONV``, when set."""
    if formulation != "auto":
        return formulation
    variable = _asked_formulation()
    if variable != "auto":
        return variable
    import jax

    return "split" if jax.default_backend() == "cpu" else "native"


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
