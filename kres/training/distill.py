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

import numpy as np

from kres import checks
from kres.losses import DistillationLoss, LabelAccuracy  # noqa: F401 (re-exported)


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
    inference mode. `ds` is a tf.data pipeline, or the pipeline without
    TensorFlow (`kres.data.batches.Batches`).
    """
    from kres.data.batches import Batches

    if isinstance(ds, Batches):
        def add_to_arrays(images, labels):
            probabilities = np.asarray(teacher.predict_on_batch(images), labels.dtype)
            return images, np.concatenate([labels, probabilities], axis=-1)

        return ds.map(add_to_arrays)
    import tensorflow as tf

    def add(images, labels):
        probabilities = tf.cast(teacher(images, training=False), labels.dtype)
        return images, tf.concat([labels, probabilities], axis=-1)

    return ds.map(add, num_parallel_calls=tf.data.AUTOTUNE)


def metrics(num_classes):
    """The recipes' metrics (accuracy, and top-5 beyond 10 classes) of a student."""
    found = [LabelAccuracy(num_classes)]
    if num_classes > 10:
        found.append(LabelAccuracy(num_classes, k=5, name="top5"))
    return found
