import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# Where PyTorch is installed (make test-torch), it must load before TensorFlow: the
# other order crashes while torchvision imports triton (their LLVMs collide).
try:
    import timm  # noqa: F401
    import torchvision  # noqa: F401
except ImportError:
    pass

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


@pytest.fixture(scope="session")
def fashion_mnist_dir(tmp_path_factory):
    """Real Fashion-MNIST, prepared by tfds from Debian's files once per test session.

    Parallel workers share the directory; kres's preparation lock makes one of
    them write it while the others wait.
    """
    from kres import datasets, offline

    if not os.path.isdir(offline.DEBIAN_FASHION_MNIST):
        pytest.fail("Debian's dataset-fashion-mnist is not installed; `make test` installs it.")
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    path = str(root / "fashion_mnist")
    datasets.ensure_prepared("fashion_mnist", path)
    return path
