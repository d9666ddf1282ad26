"""Image files decoded without TensorFlow, to the pixels TensorFlow decodes.

Where TensorFlow is not installed (Keras on JAX), an image folder's scan
(`kres.data.folders.scan`) and its training batches (`kres.data.batches`)
decode files here: JPEGs with libjpeg-turbo through `simplejpeg`, set as
TensorFlow sets it (the fast integer DCT, fancy upsampling), the rest with
Pillow, each kind converted as `tf.io.decode_image` converts it:

- palette PNGs to RGB (RGBA with a transparent colour), 16-bit PNGs to their
  high byte;
- a GIF's first frame to RGB, its transparent pixels black;
- 8-bit BMPs to one channel of their palette indices (TensorFlow ignores a
  BMP's palette), 32-bit BMPs with their alpha; other BMP depths refused;
- CMYK JPEGs (Adobe's inverted CMYK) to RGB.

`tests/test_folders.py` checks that every kind decodes to TensorFlow's
pixels exactly (`kres.images.decode`). JPEG XL needs TensorFlow's decoder.
Then the same `read` as `kres.images.decode`: gray repeated to RGB, alpha
dropped, RGB to luma (``0.2989 R + 0.587 G + 0.114 B``, as
`tf.image.rgb_to_grayscale` computes it) for one channel.
"""

import io
import re

import numpy as np

from kres import checks

# The packages that decode without TensorFlow, and what pip installs them as.
PACKAGES = {"PIL": "pillow", "simplejpeg": "simplejpeg"}
# tf.image.rgb_to_grayscale's weights.
_LUMA = np.array([0.2989, 0.587, 0.114], np.float32)


class DecodeError(ValueError):
    """A file that does not decode; the message says why, on one line."""


def missing_packages():
    """The pip names of the decoding packages that are not installed."""
    from importlib.util import find_spec

    return [pip for module, pip in PACKAGES.items() if find_spec(module) is None]


def probe(path):
    """``(height, width, channels, jpeg components, first 32 bytes)`` of a file, decoding
    all of it, as the scan's TensorFlow probe gives them.

    Raises:
        DecodeError: for a file that does not decode.
    """
    data = _read_bytes(path)
    image, components = _stored(data)
    height, width, channels = image.shape
    return height, width, channels, components, data[:32]


def read(path, channels=3):
    """uint8 ``[height, width, channels]`` of an image file, as `kres.images.decode`.

    Args:
        path: the file.
        channels: 3 (grayscale repeated, alpha dropped) or 1 (RGB to luma).

    Raises:
        DecodeError: for a file that does not decode.

    Example:

    >>> import os, tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> from kres.data.file_decoding import read
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = os.path.join(folder.name, "gray.png")
    >>> Image.fromarray(np.full((4, 5), 200, np.uint8)).save(path)
    >>> read(path).shape, read(path, channels=1).shape, int(read(path)[0, 0, 2])
    ((4, 5, 3), (4, 5, 1), 200)
    >>> folder.cleanup()
    """
    checks.choice("channels", channels, (1, 3))
    image, _ = _stored(_read_bytes(path))
    gray = image.shape[-1] < 3
    if channels == 3:
        return np.repeat(image[..., :1], 3, axis=-1) if gray else image[..., :3]
    if gray:
        return image[..., :1]
    # As tf.image.rgb_to_grayscale: on floats in [0, 1], back to uint8 by
    # tf.image.convert_image_dtype (times 255.5, truncated).
    luma = (image[..., :3].astype(np.float32) / np.float32(255)) @ _LUMA
    return np.clip(luma * np.float32(255.5), 0, 255).astype(np.uint8)[..., None]


def _read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as error:
        raise DecodeError(f"cannot read the file: {error.strerror}") from None


def _stored(data):
    """``(uint8 [h, w, 1..4] as tf.io.decode_image gives, JPEG components)``."""
    if data[:2] == b"\xff\xd8":
        return _jpeg(data)
    if data[:2] == b"\xff\x0a" or data[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n":
        raise DecodeError("a JPEG XL file: only TensorFlow's decoder reads it here")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            image = _pillow(im, data)
    except DecodeError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as error:
        message = re.sub(r" <_io\.BytesIO object at \w+>", "", str(error)).splitlines()
        raise DecodeError(message[0] if message else type(error).__name__) from None
    image = image[..., None] if image.ndim == 2 else image
    return image, image.shape[-1]


def _pillow(im, data):
    fmt, mode = im.format, im.mode
    if fmt not in ("PNG", "GIF", "BMP", "WEBP"):  # what tf.io.decode_image reads besides JPEG
        raise DecodeError(f"an image in {fmt} format: TensorFlow's decoder reads JPEG, PNG, "
                          "GIF, BMP and WebP files only")
    if fmt == "GIF":  # the first frame, in RGB; transparent pixels black
        index = np.asarray(im)
        rgb = np.asarray(im.convert("RGB")).copy()
        if im.mode == "P" and "transparency" in im.info:
            rgb[index == im.info["transparency"]] = 0
        return rgb
    if fmt == "BMP":
        bits = int.from_bytes(data[28:30], "little") if len(data) > 29 else 0
        if bits == 8:  # the palette indices, as TensorFlow reads an 8-bit BMP
            return np.asarray(im)
        if bits == 32:
            rgb = np.asarray(im.convert("RGB"))
            alpha = _bmp_alpha(im, data, rgb.shape[:2])
            return np.dstack([rgb, alpha])
        if bits != 24:
            raise DecodeError(f"a {bits}-bit BMP: TensorFlow reads 8, 24 and 32-bit BMPs")
        return np.asarray(im.convert("RGB"))
    if mode == "P" or mode == "PA":
        return np.asarray(im.convert("RGBA" if "transparency" in im.info or mode == "PA"
                                     else "RGB"))
    if mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit gray: its high byte
        return (np.asarray(im).astype(np.uint32) >> 8).astype(np.uint8)
    if mode == "1":
        return np.asarray(im.convert("L"))
    if mode in ("L", "LA", "RGB", "RGBA"):
        return np.asarray(im)
    if mode == "CMYK":
        return np.asarray(im.convert("RGB"))
    raise DecodeError(f"an image in Pillow's mode {mode!r}, which kres does not convert")


def _bmp_alpha(im, data, shape):
    """A 32-bit BMP's fourth bytes (its alpha, as TensorFlow keeps them)."""
    offset = int.from_bytes(data[10:14], "little")
    height = int.from_bytes(data[22:26], "little", signed=True)
    rows, width = shape
    pixels = np.frombuffer(data, np.uint8, rows * width * 4, offset).reshape(rows, width, 4)
    alpha = pixels[..., 3]
    return alpha[::-1] if height > 0 else alpha  # bottom-up rows unless the height is negative


def _jpeg(data):
    try:
        import simplejpeg
    except ImportError:
        raise DecodeError("a JPEG: decoding it without TensorFlow needs simplejpeg "
                          "(pip install simplejpeg)") from None
    try:
        _, _, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as error:
        raise DecodeError(_first_line(error)) from None
    if colorspace in ("CMYK", "YCCK"):
        cmyk = _jpeg_pixels(simplejpeg, data, "CMYK").astype(np.uint16)
        if not _adobe_marker(data):  # plain CMYK; Adobe's writers store it inverted
            cmyk = 255 - cmyk
        # To RGB as TensorFlow converts either.
        rgb = cmyk[..., :3] * cmyk[..., 3:] // 255
        return rgb.astype(np.uint8), 4
    gray = colorspace == "Gray"
    image = _jpeg_pixels(simplejpeg, data, "GRAY" if gray else "RGB")
    return (image if image.ndim == 3 else image[..., None]), 1 if gray else 3


def _adobe_marker(data):
    """Whether a JPEG's header holds Adobe's APP14 segment (which says its CMYK is
    stored inverted), as libjpeg reads it: the segments before the scan."""
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker, length = data[at + 1], int.from_bytes(data[at + 2:at + 4], "big")
        if marker == 0xDA:  # start of scan: the header is over
            return False
        if marker == 0xEE and data[at + 4:at + 9] == b"Adobe":
            return True
        at += 2 + length
    return False


def _jpeg_pixels(simplejpeg, data, colorspace):
    """libjpeg's pixels as TensorFlow asks for them: its warnings on corrupt scan data
    ("Corrupt JPEG data: ...") pass, as they do in TensorFlow's decoder, which refuses
    only a file that ends early ("Premature end of JPEG file") or a fatal error."""
    try:
        return simplejpeg.decode_jpeg(data, colorspace=colorspace, fastdct=True)
    except ValueError as error:
        if not str(error).startswith("Corrupt JPEG data"):
            raise DecodeError(_first_line(error)) from None
    try:
        return simplejpeg.decode_jpeg(data, colorspace=colorspace, fastdct=True, strict=False)
    except ValueError as error:
        raise DecodeError(_first_line(error)) from None


def _first_line(error):
    lines = str(error).splitlines()
    return lines[0] if lines else "not a JPEG that decodes"

