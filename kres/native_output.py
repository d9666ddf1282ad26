"""Output that native code writes to the terminal, held back where kres says it better.

TensorFlow, CUDA and the image libraries inside TensorFlow write to file
descriptor 2 from C++ (start-up notices, libjpeg's "Input file read error"),
where no Python setting reaches. `native_stderr_hidden` sends it to a buffer
for the duration of a block, and shows the buffer if the block fails.
"""

import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def native_stderr_hidden(enabled=True):
    """Within the block, file descriptor 2 goes to a buffer, shown only if the block raises.

    Args:
        enabled: False leaves the terminal as it is (``--verbose``).

    Example:

    >>> import os
    >>> from kres.native_output import native_stderr_hidden
    >>> stderr = os.fstat(2).st_ino
    >>> with native_stderr_hidden():
    ...     _ = os.write(2, b"I0000 a notice from C++\\n")  # to the buffer
    ...     os.fstat(2).st_ino == stderr
    False
    >>> os.fstat(2).st_ino == stderr
    True
    """
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as buffer:
        os.dup2(buffer.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            buffer.seek(0)
            sys.stderr.write(buffer.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
