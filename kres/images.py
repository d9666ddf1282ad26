"""The one image decoder: folders, pipelines, exports and their checks all decode with it.

`decode` turns an encoded image (JPEG, CMYK JPEG too, PNG, GIF, BMP, WebP,
JPEG XL) into uint8 pixels: decoded with all its channels as stored (the
first frame of an animated GIF, cut out of the file before decoding), then
converted by one rule that cannot fail: grayscale repeated to RGB, alpha
dropped, RGB to its luma (`tf.image.rgb_to_grayscale`'s weights) for
one-channel models. `decode_checked` refuses what a server must not decode
(empty, foreign, oversized, bomb-like bytes) from the header, before any
large allocation, then decodes the same way. Training on an image folder and
serving the same file give the same pixels.
"""

import tensorflow as tf

from kres import checks


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


def decode_stored(data):
    """An encoded image to uint8 ``[height, width, 1..4]``, as stored (GIF: first frame)."""
    def gif():
        # decode_image would decode every frame to keep the first; serving cuts the
        # file after its first frame, and so does training.
        return tf.io.decode_gif(gif_first_frame(data))[0]

    def other():
        return tf.io.decode_image(data, channels=0, expand_animations=False)

    return tf.cond(tf.equal(tf.strings.substr(data, 0, 4), b"GIF8"), gif, other)


def _to_channels(image, channels):
    """uint8 ``[h, w, 1..4]`` to ``[h, w, channels]``: gray repeated or RGB to gray,
    alpha dropped."""
    gray = tf.shape(image)[-1] < 3
    if channels == 3:
        image = tf.cond(gray, lambda: tf.repeat(image[..., :1], 3, axis=-1),
                        lambda: image[..., :3])
    else:
        image = tf.cond(gray, lambda: image[..., :1],
                        lambda: tf.image.rgb_to_grayscale(image[..., :3]))
    image.set_shape([None, None, channels])
    return image


def decode(data, channels=3):
    """Encoded image bytes to uint8 ``[height, width, channels]``, as the pipeline decodes.

    Args:
        data: a scalar string tensor: a JPEG (CMYK too), PNG, GIF (first
            frame), BMP, WebP or JPEG XL file's bytes.
        channels: 3 (grayscale repeated, alpha dropped) or 1 (RGB to luma).

    Returns:
        A uint8 tensor.

    Raises:
        tf.errors.InvalidArgumentError: for data that does not decode.

    Example:

    >>> import tensorflow as tf
    >>> from kres.images import decode
    >>> gray_png = tf.io.encode_png(tf.zeros([4, 5, 1], tf.uint8))
    >>> tuple(decode(gray_png).shape), tuple(decode(gray_png, channels=1).shape)
    ((4, 5, 3), (4, 5, 1))
    """
    checks.choice("channels", channels, (1, 3))
    return _to_channels(decode_stored(data), channels)


def decode_checked(data, channels, max_image_bytes, max_pixels):
    """One encoded image to uint8 ``[height, width, channels]`` as `decode` does,
    refusing empty, foreign (not JPEG, PNG, BMP or GIF), oversized and bomb-like
    inputs with ``InvalidArgument`` before any large allocation: what a server
    runs on bytes from anywhere.

    Args:
        data: a scalar string tensor.
        channels: 1 or 3.
        max_image_bytes: the largest encoded image accepted.
        max_pixels: the largest width x height its header may announce.
    """
    size = tf.strings.length(data)
    tf.debugging.assert_positive(size, message="empty image")
    tf.debugging.assert_less_equal(size, max_image_bytes,
                                   message=f"image larger than {max_image_bytes} bytes")
    pixels = _header_pixels(tf.strings.join([data, b"\0" * 32]))
    tf.debugging.assert_non_negative(pixels, message="not a JPEG, PNG, BMP or GIF image")
    tf.debugging.assert_less_equal(pixels, tf.constant(max_pixels, tf.int64),
                                   message=f"image header announces more than {max_pixels} "
                                           "pixels")
    return decode(data, channels)
