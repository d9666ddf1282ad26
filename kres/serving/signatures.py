"""The functions behind an export's signatures: decode with limits, resize, classify.

Everything here is TensorFlow graph code that runs in the server: each image
is checked and decoded by `kres.images.decode_checked` (the training
pipeline's decoder, behind the limits), resized exactly as the training
pipeline's evaluation did (`kres.preprocessing.eval_resize`), then handed to
the model, which normalises it itself (`kres.layers.InputPreprocessing`).
The ``explain`` signature adds Grad-CAM (`kres.models.explain.GradCam`, the
operations `kres.explain` runs) to the encoded-images one.
"""

import tensorflow as tf

from kres.images import decode_checked
from kres.preprocessing import eval_resize


def multi_label_outputs(probabilities, class_names, threshold):
    """A multi-label model's answer: ``predicted`` (bool, one row per image, a
    column per class: probability at least `threshold`) and ``predicted_labels``
    (one string per image: the predicted classes' names in class order, joined
    by ``;``, as a label file writes them; empty for none)."""
    predicted = probabilities >= threshold
    names = tf.broadcast_to(class_names, tf.shape(predicted))
    chosen = tf.ragged.boolean_mask(names, predicted)
    return {"predicted": predicted,
            "predicted_labels": tf.strings.reduce_join(chosen, axis=-1, separator=";")}


class Server:
    """The functions behind the signatures (closes over the model and settings).

    `model` takes pixels (0-255) and normalises them itself; `prep` says how
    images are brought to its input size; `cam`, a `kres.models.explain.GradCam`
    of `model`, serves the ``explain`` signature. With `threshold` (a
    multi-label model), the outputs add ``predicted`` and ``predicted_labels``.
    """

    def __init__(self, model, prep, class_names, top_k, max_image_bytes, max_pixels,
                 cam=None, threshold=None):
        self.model, self.prep, self.cam = model, prep, cam
        self.threshold = threshold
        self.class_names = tf.constant(class_names)
        self.top_k = top_k
        self.limits = (max_image_bytes, max_pixels)

    def _fit(self, image):
        """Resizes or center-crops one float image as training's evaluation did."""
        return eval_resize(image, self.prep.height, self.prep.width,
                           self.prep.resize == "center_crop")

    def _probabilities(self, images):
        return self.model(tf.cast(images, tf.float32), training=False)

    def _outputs(self, probabilities):
        probabilities = tf.cast(probabilities, tf.float32)
        scores, classes = tf.math.top_k(probabilities, k=self.top_k)
        outputs = {"probabilities": probabilities, "classes": classes, "scores": scores,
                   "labels": tf.gather(self.class_names, classes)}
        if self.threshold is not None:
            outputs.update(multi_label_outputs(probabilities, self.class_names,
                                               self.threshold))
        return outputs

    def _decoded(self, images):
        channels = self.prep.channels

        def one(data):
            image = decode_checked(data, channels, *self.limits)
            return self._fit(tf.cast(image, tf.float32))

        spec = tf.TensorSpec([self.prep.height, self.prep.width, channels], tf.float32)
        return tf.map_fn(one, images, fn_output_signature=spec)

    def serve_images(self, images):
        return self._outputs(self._probabilities(self._decoded(images)))

    def serve_explain(self, images):
        """`serve_images`'s outputs and ``heatmap``: the top class's Grad-CAM,
        uint8 ``(batch, height, width)`` at the model's input size (0-255 for
        `kres.explain`'s 0-1)."""
        heatmaps, probabilities, _ = self.cam(self._decoded(images))
        outputs = self._outputs(probabilities)
        outputs["heatmap"] = tf.cast(tf.round(heatmaps * 255.0), tf.uint8)
        return outputs

    def serve_pixels(self, pixels):
        images = tf.map_fn(self._fit, tf.cast(pixels, tf.float32),
                           fn_output_signature=tf.TensorSpec(
                               [self.prep.height, self.prep.width, self.prep.channels],
                               tf.float32))
        return self._outputs(self._probabilities(images))
