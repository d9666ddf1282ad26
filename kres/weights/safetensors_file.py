"""The ``.safetensors`` format, read with NumPy alone (no PyTorch, no safetensors package).

timm and torchvision publish their weights as safetensors files;
`read_safetensors` validates one fully (header, dtypes, shapes, offsets)
before returning its tensors.
"""

import json
import math
import os

import numpy as np

from kres.checks import is_int as _is_int

# safetensors dtype name -> NumPy dtype of the stored bytes (little-endian).
# BF16 is read as raw 16-bit words and widened to float32.
SAFETENSORS_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}


def read_safetensors(path):
    """Reads a ``.safetensors`` file into NumPy arrays, without PyTorch.

    The format: an 8-byte little-endian header length, a JSON header mapping
    each tensor name to its ``dtype``, ``shape`` and ``data_offsets`` (begin
    and end, relative to the data buffer that follows the header), optionally
    a ``__metadata__`` entry, and the raw little-endian data buffer. Supported
    dtypes: F64, F32, F16, BF16 (returned as float32, which holds every
    bfloat16 exactly), I64, I32, I16, I8, U8 and BOOL.

    Args:
        path: path of the ``.safetensors`` file.

    Returns:
        A dict mapping each tensor's name to a NumPy array of its shape (the
        ``__metadata__`` entry is left out).

    Raises:
        ValueError: if the file cannot be read, is too short, has a header
            that is not a JSON object, or describes a tensor with an
            unsupported dtype, an invalid shape, or data offsets outside the
            data buffer or inconsistent with its shape and dtype. The message
            names the file and, where one is at fault, the tensor.

    Example:

    timm's ``resnet50.a1_in1k`` file gives ``fc.weight`` of shape ``(1000,
    2048)``. A file written by hand:

    >>> import json, os, struct, tempfile
    >>> import numpy as np
    >>> from kres.weights.safetensors_file import read_safetensors
    >>> header = json.dumps({"fc.bias": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = os.path.join(folder.name, "tiny.safetensors")
    >>> with open(path, "wb") as f:
    ...     _ = f.write(struct.pack("<Q", len(header)) + header.encode()
    ...                 + np.float32([0.5, -1.0]).tobytes())
    >>> {name: array.tolist() for name, array in read_safetensors(path).items()}
    {'fc.bias': [0.5, -1.0]}
    >>> folder.cleanup()
    """
    try:
        path = os.fspath(path)
    except TypeError:
        raise ValueError(
            f"path must be the path of a .safetensors file. Received: path={path!r}"
        ) from None
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 8:
                raise ValueError(
                    f"The file is too short to be a safetensors file: {size} bytes, while the "
                    f"header length alone takes 8. Received: path={path!r}"
                )
            header_len = int.from_bytes(f.read(8), "little")
            if header_len > size - 8:
                raise ValueError(
                    f"The safetensors file is truncated or not a safetensors file: it announces "
                    f"a {header_len}-byte header, but only {size - 8} bytes follow. "
                    f"Received: path={path!r}"
                )
            raw_header = f.read(header_len)
            buffer = np.fromfile(f, dtype=np.uint8)
    except OSError as error:
        raise ValueError(
            f"Cannot read the safetensors file: {error.strerror or error}. Received: path={path!r}"
        ) from error
    try:
        header = json.loads(raw_header.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"The header of the safetensors file is not valid JSON ({error}); the file is "
            f"corrupted or not a safetensors file. Received: path={path!r}"
        ) from error
    if not isinstance(header, dict):
        raise ValueError(
            "The header of the safetensors file must be a JSON object, not "
            f"{type(header).__name__}. Received: path={path!r}"
        )
    return {name: _decode_tensor(name, info, buffer, path)
            for name, info in header.items() if name != "__metadata__"}


def _decode_tensor(name, info, buffer, path):
    """One tensor of a safetensors file, validated against its header entry."""

    def invalid(problem, received):
        return ValueError(
            f"Tensor {name!r} of the safetensors file {path!r} {problem}. "
            f"Received: {received} in path={path!r}"
        )

    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
        raise invalid("needs a header entry with 'dtype', 'shape' and 'data_offsets'",
                      f"{name}={info!r}")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if dtype not in SAFETENSORS_DTYPES:
        raise invalid(f"has an unsupported dtype (supported: {', '.join(SAFETENSORS_DTYPES)})",
                      f"dtype={dtype!r}")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise invalid("needs a shape that is a list of non-negative integers",
                      f"shape={shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(_is_int(o) for o in offsets)):
        raise invalid("needs data_offsets [begin, end], two integers",
                      f"data_offsets={offsets!r}")
    begin, end = offsets
    if not 0 <= begin <= end <= buffer.size:
        raise invalid(f"has data offsets outside the {buffer.size}-byte data buffer (the file "
                      "may be truncated)", f"data_offsets={offsets}")
    stored = SAFETENSORS_DTYPES[dtype]
    expected = math.prod(shape) * stored.itemsize
    if end - begin != expected:
        raise invalid(f"spans {end - begin} bytes, but shape {shape} of {dtype} takes "
                      f"{expected}", f"data_offsets={offsets}")
    array = buffer[begin:end].view(stored).reshape(shape)
    if dtype == "BF16":
        # A bfloat16 is the high half of a float32.
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array.astype(stored.newbyteorder("="), copy=True)
