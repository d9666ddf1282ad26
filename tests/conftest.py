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


def shared_root(tmp_path_factory):
    """The test session's temporary folder that every parallel worker shares (for
    what one of them makes once, under a lock, for all)."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


@pytest.fixture(scope="session")
def shared_tmp(tmp_path_factory):
    """`shared_root`, as a fixture."""
    return shared_root(tmp_path_factory)


def _need_debian_files(offline):
    if not os.path.isdir(offline.DEBIAN_FASHION_MNIST):
        pytest.fail("Debian's dataset-fashion-mnist is not installed; `make test` installs it.")


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


@pytest.fixture(scope="session")
def fashion_mnist_dir(tmp_path_factory):
    """Real Fashion-MNIST, prepared by tfds from Debian's files once per test session.

    Parallel workers share the directory; kres's preparation lock makes one of
    them write it while the others wait. Where ``KRES_DATA_DIR`` is set, the
    tests use (and if need be prepare) kres's own copy there, as `kres train`
    does: CI sets it, so that its `make demo` finds the data the tests prepared.
    """
    from kres import data as datasets
    from kres.data import fashion_mnist as offline

    _need_debian_files(offline)
    root = shared_root(tmp_path_factory)
    path = str(root / "fashion_mnist")
    if os.environ.get("KRES_DATA_DIR"):
        path = datasets.data_dir_for("fashion_mnist")
    datasets.ensure_prepared("fashion_mnist", path)
    return path


@pytest.fixture(scope="session")
def fashion_mnist_quick_dir(tmp_path_factory):
    """Real Fashion-MNIST cut to its first 10,000 training and 1,000 test images,
    stored by tfds's own code as tfds's ``fashion_mnist``, once per test session.
    For runs that test anything but the test accuracy: scoring all 10,000 test
    images at the end of every run was ~4 s of each on a 2-core CPU (and storing
    the whole training split again 28 s more)."""
    import fcntl

    import tensorflow_datasets as tfds

    from kres.data import fashion_mnist as offline

    _need_debian_files(offline)
    root = shared_root(tmp_path_factory)
    path = str(root / "fashion_mnist_quick")
    with open(str(root / "fashion_mnist_quick.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        builder = tfds.builder("fashion_mnist", data_dir=path)
        if not builder.is_prepared():
            splits = offline.read_fashion_mnist()
            sizes = {"train": 10_000, "test": 1_000}
            splits = {name: (x[:sizes[name]], y[:sizes[name]])
                      for name, (x, y) in splits.items()}
            offline._store(tfds, builder, splits, path)
    return path


@pytest.fixture(scope="session")
def trained(fashion_mnist_dir, tmp_path_factory):
    """The ``best.keras`` of a small ResNet trained by `kres.train` for two epochs on
    4,000 Fashion-MNIST images (about 75% test accuracy), once per test session:
    parallel workers wait for the first one's run. Its ``results.json`` is beside it."""
    import fcntl

    import kres

    root = shared_root(tmp_path_factory)
    run = os.path.join(root, "edge-run")
    with open(os.path.join(root, "edge-run.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.isfile(os.path.join(run, "results.json")):
            kres.train("cifar_resnet20", "fashion_mnist", run_dir=run,
                       model_overrides={"depths": (1, 1, 1)}, subset=4000, val_size=1000,
                       epochs=2, batch_size=64, augment="none", data_dir=fashion_mnist_dir,
                       verbose=0)
    return os.path.join(run, "best.keras")


@pytest.fixture(scope="session")
def moved(trained, tmp_path_factory):
    """The `trained` run's model file copied alone to a folder of its own (no
    ``model.json``, ``results.json`` or ``config.json`` beside it), as a user moves it."""
    import shutil

    path = tmp_path_factory.mktemp("elsewhere") / "fashion.keras"
    shutil.copyfile(trained, path)
    return str(path)


@pytest.fixture(scope="session")
def reported(trained):
    """The test accuracy the `trained` run reported on all 10,000 test images."""
    import json

    with open(os.path.join(os.path.dirname(trained), "results.json")) as f:
        return json.load(f)["test_accuracy"]


@pytest.fixture(scope="session")
def test_images(fashion_mnist_dir):
    """The first 2,000 Fashion-MNIST test images (uint8) and their labels."""
    import numpy as np
    import tensorflow_datasets as tfds

    test = tfds.load("fashion_mnist", split="test[:2000]", data_dir=fashion_mnist_dir,
                     as_supervised=True)
    images, labels = (np.stack(a) for a in zip(*tfds.as_numpy(test)))
    return images, labels
