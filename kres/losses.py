"""The losses and metric of kres's runs beyond Keras's own, registered with Keras so that
a checkpoint, which names them in its compile settings, loads (`kres.load_model`
imports this module): distillation's (`kres.training.distill` uses them) and a
multi-label run's binary cross-entropy summed over the classes."""

import keras


@keras.saving.register_keras_serializable("kres")
class DistillationLoss(keras.losses.Loss):
    """The distillation loss of a student with `num_classes` outputs (Hinton et al. 2015):

        (1 - w) * CE(labels, p) + w * T^2 * KL(softmax(log q / T) || softmax(log p / T))

    for the student's probabilities p and the teacher's q. `y_true` holds the
    one-hot (or mixed) labels, then the teacher's probabilities
    (`kres.training.distill.with_teacher`); labels alone (validation, test) give the
    cross-entropy alone, so validation losses compare with runs without a
    teacher.

    Args:
        num_classes: the number of classes.
        temperature: T, the softening of both distributions.
        weight: w, the weight of the teacher's term (the labels' is 1 - w).
        label_smoothing: the cross-entropy's label smoothing.

    Example:

    >>> import numpy as np
    >>> from kres.losses import DistillationLoss
    >>> loss = DistillationLoss(2, temperature=1.0, weight=1.0)
    >>> p = np.array([[0.25, 0.75]])
    >>> round(float(loss(np.concatenate([[[1.0, 0.0]], p], 1), p)), 6)  # the teacher agrees
    0.0
    """

    def __init__(self, num_classes, temperature=4.0, weight=0.5, label_smoothing=0.0,
                 name="distillation", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes, self.temperature, self.weight = num_classes, temperature, weight
        self.label_smoothing = label_smoothing
        self._labels = keras.losses.CategoricalCrossentropy(
            label_smoothing=label_smoothing, reduction=None)

    def call(self, y_true, y_pred):
        ops, n = keras.ops, self.num_classes
        y_pred = ops.cast(y_pred, "float32")
        labels = ops.cast(y_true[..., :n], "float32")
        hard = self._labels(labels, y_pred)
        if y_true.shape[-1] == n:
            return hard
        teacher = ops.cast(y_true[..., n:], "float32")
        t = self.temperature
        log_student = ops.log_softmax(ops.log(ops.clip(y_pred, 1e-7, 1.0)) / t, axis=-1)
        log_teacher = ops.log_softmax(ops.log(ops.clip(teacher, 1e-7, 1.0)) / t, axis=-1)
        soft = ops.sum(ops.exp(log_teacher) * (log_teacher - log_student), axis=-1)
        return (1.0 - self.weight) * hard + self.weight * t * t * soft

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "temperature": self.temperature, "weight": self.weight,
                "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable("kres")
class SummedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy summed over the classes (averaged over the batch): a
    multi-label run's loss.

    Keras's `BinaryCrossentropy` averages over the classes, so its gradient is
    1/classes of the softmax cross-entropy's for the same errors, and a
    recipe's learning rate and weight decay, set for the latter, would act as
    if divided and multiplied by the number of classes. Summed, each class's
    term has the scale of a softmax output's. Label smoothing as Keras's: the
    targets move towards 0.5.

    Example:

    >>> import numpy as np
    >>> from kres.losses import SummedBinaryCrossentropy
    >>> loss = SummedBinaryCrossentropy()
    >>> y, p = np.array([[1.0, 0.0, 1.0]]), np.array([[0.9, 0.2, 0.6]])
    >>> round(float(loss(y, p)), 4), round(float(-np.log([0.9, 0.8, 0.6]).sum()), 4)
    (0.8393, 0.8393)
    """

    def __init__(self, label_smoothing=0.0, name="summed_binary_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        ops = keras.ops
        y_pred = ops.cast(y_pred, "float32")
        y_true = ops.cast(y_true, "float32")
        mean = keras.losses.binary_crossentropy(y_true, y_pred,
                                                label_smoothing=self.label_smoothing)
        return mean * ops.cast(ops.shape(y_true)[-1], "float32")

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable("kres")
class LabelAccuracy(keras.metrics.MeanMetricWrapper):
    """Top-`k` accuracy on the labels of a distillation batch (its first
    `num_classes` columns; the teacher's probabilities follow)."""

    def __init__(self, num_classes, k=1, name="accuracy", dtype=None):
        self.num_classes, self.k = num_classes, k
        super().__init__(fn=self._score, name=name, dtype=dtype)

    def _score(self, y_true, y_pred):
        labels = keras.ops.argmax(y_true[..., :self.num_classes], axis=-1)
        return keras.ops.cast(keras.ops.in_top_k(labels, y_pred, self.k), "float32")

    def get_config(self):
        return {"num_classes": self.num_classes, "k": self.k, "name": self.name,
                "dtype": self.dtype}
