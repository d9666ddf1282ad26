"""What an export records about itself: the library versions, and a hash of its files."""

import hashlib
import os


def library_versions():
    """The versions of kres, Keras and TensorFlow that wrote an export."""
    import keras
    import tensorflow as tf

    from kres.version import __version__

    return {"kres": __version__, "keras": keras.__version__, "tensorflow": tf.__version__}


def sha256_of_files(root):
    """The SHA-256 of every file under `root`: relative path and contents, in sorted order."""
    digest = hashlib.sha256()
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()
