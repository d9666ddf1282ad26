"""Decoding with limits, and the preprocessing inside the serving graph.

Everything here is TensorFlow graph code that runs in the server: the image
header's size is read before decoding (PNG, GIF, BMP headers parsed in the
graph, JPEG through ``extract_jpeg_shape``), an animated GIF is cut after its
first frame, and `Server` resizes exactly as the training pipeline's
evaluation did (`kres.preprocessing.eval_resize`), then hands the pixels to
the model, which normalises them itself (`kres.layers.InputPreprocessing`).
"""

import tensorflow as tf

from kres.preprocessing import eval_resize


def _bytes_at(data, offset, count):
    return tf.cast(tf.io.decode_raw(tf.strings.substr(data, offset, count), tf.uint8), tf.int64)


def _uint(data, offset, count, big_endian):
    digits = _bytes_at(data, offset, count)
    weights = 256 ** tf.range(count, dtype=tf.int64)
    if big_endian:
        weights = tf.reverse(weights, [0])
    return tf.reduce_sum(digits * weights)


def _header_pixels(data):
    """Pixels a header announces (width x height), or -1 for an unknown format.

    `data` is padded with zeros, so reading a short header never fails.
    """
    magic = tf.strings.substr(data, 0, 8)
    png = tf.equal(magic, b"\x89PNG\r\n\x1a\n")
    gif = tf.equal(tf.strings.substr(data, 0, 4), b"GIF8")
    bmp = tf.equal(tf.strings.substr(data, 0, 2), b"BM")
    jpeg = tf.equal(tf.strings.substr(data, 0, 2), b"\xff\xd8")

    def jpeg_pixels():
        shape = tf.cast(tf.image.extract_jpeg_shape(data), tf.int64)
        return shape[0] * shape[1]

    def bmp_pixels():
        height = _uint(data, 22, 4, big_endian=False)
        height = tf.where(height >= 2**31, 2**32 - height, height)  # top-down BMPs
        return _uint(data, 18, 4, big_endian=False) * height

    return tf.case([
        (png, lambda: _uint(data, 16, 4, True) * _uint(data, 20, 4, True)),
        (gif, lambda: _uint(data, 6, 2, False) * _uint(data, 8, 2, False)),
        (bmp, bmp_pixels),
        (jpeg, jpeg_pixels),
    ], default=lambda: tf.constant(-1, tf.int64))


def gif_first_frame(data):
    """The GIF cut after its first image, plus a trailer: one frame to decode.

    Walks the GIF's blocks (header, global colour table, extensions, the first
    image descriptor with its local colour table and data sub-blocks) and
    keeps only what comes before the second frame.
    """
    raw = tf.io.decode_raw(data, tf.uint8)
    n = tf.size(raw)
    byte = lambda i: tf.cast(raw[tf.minimum(i, n - 1)], tf.int32)  # noqa: E731

    def table_size(flags):
        return tf.where(flags >= 128, 3 * 2 ** (flags % 8 + 1), 0)

    def skip_sub_blocks(i):
        return tf.while_loop(lambda j: (j < n) & (byte(j) != 0),
                             lambda j: [j + byte(j) + 1], [i])[0] + 1

    def step(i, done):
        kind = byte(i)
        is_image = tf.equal(kind, 0x2C)
        after_descriptor = i + 10 + table_size(byte(i + 9))
        after_image = skip_sub_blocks(after_descriptor + 1)  # +1: LZW minimum code size
        after_extension = skip_sub_blocks(i + 2)
        stop = is_image | ~tf.equal(kind, 0x21) | (i >= n)
        return tf.where(is_image, after_image, tf.where(stop, i, after_extension)), stop

    start = 13 + table_size(byte(10))
    end, _ = tf.while_loop(lambda i, done: ~done, step, [start, tf.constant(False)])
    end = tf.minimum(end, n)
    return tf.strings.join([tf.strings.substr(data, 0, end), b";"])


def decode(data, channels, max_image_bytes, max_pixels):
    """One encoded image to uint8 pixels, refusing empty, foreign, oversized and
    bomb-like inputs with ``InvalidArgument`` before any large allocation."""
    size = tf.strings.length(data)
    tf.debugging.assert_positive(size, message="empty image")
    tf.debugging.assert_less_equal(size, max_image_bytes,
                                   message=f"image larger than {max_image_bytes} bytes")
    pixels = _header_pixels(tf.strings.join([data, b"\0" * 32]))
    tf.debugging.assert_non_negative(pixels, message="not a JPEG, PNG, BMP or GIF image")
    tf.debugging.assert_less_equal(pixels, tf.constant(max_pixels, tf.int64),
                                   message=f"image header announces more than {max_pixels} "
                                           "pixels")
    def gif():
        # TF decodes GIFs to RGB only; a 1-channel model gets the luma.
        image = tf.io.decode_gif(gif_first_frame(data))[0]
        return tf.image.rgb_to_grayscale(image) if channels == 1 else image

    def other():
        return tf.io.decode_image(data, channels=channels, expand_animations=False)

    image = tf.cond(tf.equal(tf.strings.substr(data, 0, 4), b"GIF8"), gif, other)
    image.set_shape([None, None, channels])
    return image


class Server:
    """The functions behind the signatures (closes over the model and settings).

    `model` takes pixels (0-255) and normalises them itself; `prep` says how
    images are brought to its input size.
    """

    def __init__(self, model, prep, class_names, top_k, max_image_bytes, max_pixels):
        self.model, self.prep = model, prep
        self.class_names = tf.constant(class_names)
        self.top_k = top_k
        self.limits = (max_image_bytes, max_pixels)

    def _fit(self, image):
        """Resizes or center-crops one float image as training's evaluation did."""
        return eval_resize(image, self.prep.height, self.prep.width,
                           self.prep.resize == "center_crop")

    def _outputs(self, images):
        probabilities = tf.cast(self.model(tf.cast(images, tf.float32), training=False),
                                tf.float32)
        scores, classes = tf.math.top_k(probabilities, k=self.top_k)
        return {"probabilities": probabilities, "classes": classes, "scores": scores,
                "labels": tf.gather(self.class_names, classes)}

    def serve_images(self, images):
        channels = self.prep.channels

        def one(data):
            image = decode(data, channels, *self.limits)
            return self._fit(tf.cast(image, tf.float32))

        spec = tf.TensorSpec([self.prep.height, self.prep.width, channels], tf.float32)
        return self._outputs(tf.map_fn(one, images, fn_output_signature=spec))

    def serve_pixels(self, pixels):
        images = tf.map_fn(self._fit, tf.cast(pixels, tf.float32),
                           fn_output_signature=tf.TensorSpec(
                               [self.prep.height, self.prep.width, self.prep.channels],
                               tf.float32))
        return self._outputs(images)
