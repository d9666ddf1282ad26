"""Batch normalisation computed by TensorFlow's fused op, and frozen for good on request."""

import keras
from keras import ops

from kres import checks


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

    >>> import keras
    >>> from kres.layers import BatchNormalization
    >>> layer = BatchNormalization(epsilon=1e-5)
    >>> tuple(layer(keras.ops.ones((2, 4, 4, 8)), training=True).shape)
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
