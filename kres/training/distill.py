"""Knowledge distillation: a student trained on the labels and a teacher's softened output.

Hinton et al. 2015: the student's loss mixes the cross-entropy with the
labels and the Kullback-Leibler divergence from the teacher's probabilities,
both softened by a temperature T:

    loss = (1 - w) * CE(labels, p_student)
           + w * T^2 * KL(softmax(log p_teacher / T) || softmax(log p_student / T))

(the T^2 keeps the soft term's gradients at the scale of the hard term's).
kres networks end in a softmax, and ``softmax(log p / T)`` is the softmax of
the logits over T: the temperature needs no logits.

The student is the model that is compiled, fitted, checkpointed, backed up,
averaged and exported, as in any run: the teacher stays in the training
pipeline (`with_teacher`), which appends its probabilities to each batch's
labels, and `DistillationLoss` splits them off again. So every callback, the
resume and every export see the student alone. Keras's
`keras.distillation.Distiller` wraps teacher and student in one model, which
would then be what the checkpoint, the backup and the weight average hold,
and it distils logits, which kres networks do not output.
"""

import os

import keras

from kres import checks


def check_teacher(teacher):
    """`teacher` must be ``None`` or an existing ``.keras`` file.

    A kres run's model normalises its own pixels, as the pipeline's are; a
    network with published weights becomes such a teacher by a run
    fine-tuned from them (``kres train --weights imagenet``).

    Raises:
        ValueError: naming `teacher` and the value received.
    """
    if teacher is None:
        return
    if not isinstance(teacher, str) or not teacher.endswith(".keras"):
        checks.fail("teacher", teacher, "must be a .keras file of a kres run (its best.keras)")
    if not os.path.isfile(teacher):
        checks.fail("teacher", teacher, "names no file")


def load_teacher(teacher, num_classes, input_shape):
    """The teacher model of a ``.keras`` file, frozen.

    Raises:
        ValueError: for a teacher whose classes or input differ from the
            student's data, naming `teacher`.
    """
    from kres.models.saving import load_model

    model = load_model(teacher)
    classes = model.output_shape[-1]
    if classes != num_classes:
        checks.fail("teacher", teacher, f"predicts {classes} classes; the data have "
                    f"{num_classes}")
    shape = tuple(model.input_shape[1:])
    if shape != tuple(input_shape):
        checks.fail("teacher", teacher, f"takes inputs of {shape}; the student's are "
                    f"{tuple(input_shape)}")
    model.trainable = False
    return model


def with_teacher(ds, teacher):
    """`ds`'s batches ``(images, labels)`` as ``(images, labels ++ teacher's probabilities)``.

    The teacher sees the batch as augmented (mixed images included), in
    inference mode.
    """
    import tensorflow as tf

    def add(images, labels):
        probabilities = tf.cast(teacher(images, training=False), labels.dtype)
        return images, tf.concat([labels, probabilities], axis=-1)

    return ds.map(add, num_parallel_calls=tf.data.AUTOTUNE)


@keras.saving.register_keras_serializable("kres")
class DistillationLoss(keras.losses.Loss):
    """The distillation loss of a student with `num_classes` outputs (see the module).

    `y_true` holds the one-hot (or mixed) labels, then the teacher's
    probabilities (`with_teacher`); labels alone (validation, test) give the
    cross-entropy alone, so validation losses compare with runs without a
    teacher.

    Args:
        num_classes: the number of classes.
        temperature: T, the softening of both distributions.
        weight: w, the weight of the teacher's term (the labels' is 1 - w).
        label_smoothing: the cross-entropy's label smoothing.

    Example:

    >>> import numpy as np
    >>> from kres.training.distill import DistillationLoss
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


def metrics(num_classes):
    """The recipes' metrics (accuracy, and top-5 beyond 10 classes) of a student."""
    found = [LabelAccuracy(num_classes)]
    if num_classes > 10:
        found.append(LabelAccuracy(num_classes, k=5, name="top5"))
    return found
