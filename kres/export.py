"""Export for TF Serving: versioned SavedModels that carry their preprocessing.

`export(model, "saved_models/<name>")` writes ``saved_models/<name>/<version>/``
(``saved_model.pb``, ``variables/``, ``assets.extra/``, ``kres.json``) in TF
Serving's layout, atomically: everything is written and checked in a directory
whose name is not an integer (TF Serving ignores those), then renamed into
place. Existing versions are never touched.

Signatures (tag ``serve``), both returning the same named outputs:

- ``serving_default``: input ``images``, a string tensor of encoded images
  (JPEG, PNG, BMP or GIF bytes; the REST API's ``{"b64": ...}``), decoded,
  resized and normalised inside the graph;
- ``serving_pixels``: input ``pixels``, uint8 ``(batch, height, width,
  channels)``, resized and normalised inside the graph.

Outputs: ``probabilities`` (float32, one row per image), ``classes`` (int32
top-k indices), ``scores`` (their probabilities) and ``labels`` (their class
names).

Hostile input fails with ``InvalidArgument`` before any large allocation: an
empty string, bytes that are no image, more than ``max_image_bytes``, or a
header announcing more than ``max_pixels`` pixels (a decompression bomb). An
animated GIF is cut after its first frame before decoding, so its other
frames cost nothing.
"""

import ctypes
import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from kres.layers import formulation
from kres.models.googlenet import strip_auxiliary

RESIZE_MODES = ("resize", "center_crop")
TAG = "serve"


@dataclass(frozen=True)
class Preprocessing:
    """What the serving graph does to an image before the model sees it.

    Attributes:
        height: model input height.
        width: model input width.
        channels: model input channels (1 or 3).
        mean: per-channel mean in [0, 1] (one value, or one per channel).
        std: per-channel standard deviation in [0, 1].
        resize: ``"resize"`` (straight to the input size) or ``"center_crop"``
            (shorter side to ``size / 0.875``, then the central crop).
    """

    height: int
    width: int
    channels: int
    mean: tuple
    std: tuple
    resize: str = "resize"

    @classmethod
    def for_dataset(cls, model, dataset):
        """The preprocessing that `kres.train` used for `dataset` with `model`."""
        from kres import data

        spec = data.get_dataset_spec(dataset)
        _, height, width, channels = model.input_shape
        resize = "center_crop" if spec.augment == "imagenet" else "resize"
        return cls(height, width, channels, tuple(spec.mean), tuple(spec.std), resize)


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model. Received: model={model!r}")
    shape = model.input_shape
    if not isinstance(shape, tuple) or len(shape) != 4 or None in shape[1:]:
        raise ValueError(
            "The model needs a known input size (height, width, channels) to be served: "
            f"build it with an input_shape such as (224, 224, 3). Received: a model with "
            f"input shape {shape}"
        )
    if shape[3] not in (1, 3):
        raise ValueError(f"Served models take 1 or 3 channels. Received: input shape {shape}")


# --- Decoding with limits ---------------------------------------------------------

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


def _gif_first_frame(data):
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


def _decode(data, channels, max_image_bytes, max_pixels):
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
        image = tf.io.decode_gif(_gif_first_frame(data))[0]
        return tf.image.rgb_to_grayscale(image) if channels == 1 else image

    def other():
        return tf.io.decode_image(data, channels=channels, expand_animations=False)

    image = tf.cond(tf.equal(tf.strings.substr(data, 0, 4), b"GIF8"), gif, other)
    image.set_shape([None, None, channels])
    return image


class _Server:
    """The functions behind the signatures (closes over the model and settings)."""

    def __init__(self, model, prep, class_names, top_k, max_image_bytes, max_pixels):
        self.model, self.prep = model, prep
        self.class_names = tf.constant(class_names)
        self.top_k = top_k
        self.limits = (max_image_bytes, max_pixels)
        channels = prep.channels
        self.mean = tf.constant(np.broadcast_to(prep.mean, (channels,)) * 255.0, tf.float32)
        self.std = tf.constant(np.broadcast_to(prep.std, (channels,)) * 255.0, tf.float32)

    def _fit(self, image):
        """Resizes or center-crops one float image as training's evaluation did."""
        from kres.data import eval_resize

        return eval_resize(image, self.prep.height, self.prep.width,
                           self.prep.resize == "center_crop")

    def _outputs(self, images):
        images = (tf.cast(images, tf.float32) - self.mean) / self.std
        probabilities = tf.cast(self.model(images, training=False), tf.float32)
        scores, classes = tf.math.top_k(probabilities, k=self.top_k)
        return {"probabilities": probabilities, "classes": classes, "scores": scores,
                "labels": tf.gather(self.class_names, classes)}

    def serve_images(self, images):
        channels = self.prep.channels

        def one(data):
            image = _decode(data, channels, *self.limits)
            return self._fit(tf.cast(image, tf.float32))

        spec = tf.TensorSpec([self.prep.height, self.prep.width, channels], tf.float32)
        return self._outputs(tf.map_fn(one, images, fn_output_signature=spec))

    def serve_pixels(self, pixels):
        images = tf.map_fn(self._fit, tf.cast(pixels, tf.float32),
                           fn_output_signature=tf.TensorSpec(
                               [self.prep.height, self.prep.width, self.prep.channels],
                               tf.float32))
        return self._outputs(images)


# --- Versions and files ----------------------------------------------------------

def versions(directory):
    """The integer version directories under `directory`, sorted."""
    if not os.path.isdir(directory):
        return []
    return sorted(int(d) for d in os.listdir(directory)
                  if re.fullmatch(r"[0-9]+", d) and os.path.isdir(os.path.join(directory, d)))


def _sha256_of_files(root):
    digest = hashlib.sha256()
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def export(model, directory, version=None, *, class_names=None, preprocessing=None,
           dataset=None, top_k=None, max_image_bytes=20 << 20, max_pixels=40_000_000,
           metadata=None, warmup_images=None, verify=True):
    """Exports `model` as version `version` of a TF Serving model in `directory`.

    Args:
        model: a Keras model with a known input size.
        directory: the model's base path, e.g. ``saved_models/resnext50``.
        version: a positive integer; default: one more than the highest
            existing version (1 for the first).
        class_names: a name per class (default: the class indices).
        preprocessing: a `Preprocessing`; default: the one of `dataset`, or
            ImageNet statistics (averaged for 1-channel models) with a plain
            resize.
        dataset: the training dataset's name (for the preprocessing and the
            record in ``kres.json``).
        top_k: how many classes ``classes``, ``scores`` and ``labels`` give
            (default: 5, or every class for models with fewer).
        max_image_bytes: the largest encoded image accepted.
        max_pixels: the largest width x height an image header may announce.
        metadata: extra facts for ``kres.json`` (test accuracy, spec, ...).
        warmup_images: encoded images for ``assets.extra/
            tf_serving_warmup_requests`` (default: generated PNGs).
        verify: load the written SavedModel back and compare it with the
            model before publishing it.

    Returns:
        The path of the new version directory.

    Raises:
        ValueError: for a model without a known input size, a `directory`
            that is a file, an existing `version`, or invalid settings.
    """
    _check_model(model)
    # Auxiliary classifiers (GoogLeNet) are for training only.
    model = strip_auxiliary(model)
    directory = os.fspath(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(f"directory is a file, not a folder. Received: directory={directory!r}")
    existing = versions(directory)
    if version is None:
        version = (existing[-1] + 1) if existing else 1
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version must be a positive integer. Received: version={version!r}")
    final = os.path.join(directory, str(version))
    if os.path.exists(final):
        raise ValueError(f"Version {version} exists already in {directory}; versions are "
                         f"never overwritten. Received: version={version}")
    classes = model.output_shape[-1]
    class_names = [str(c) for c in (class_names or range(classes))]
    if len(class_names) != classes:
        raise ValueError(f"class_names must name the model's {classes} classes. "
                         f"Received: {len(class_names)} names")
    if top_k is None:
        top_k = min(5, classes)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= classes:
        raise ValueError(f"top_k must be between 1 and {classes}. Received: top_k={top_k!r}")
    if preprocessing is None:
        if dataset is not None:
            preprocessing = Preprocessing.for_dataset(model, dataset)
        else:
            from kres.data import IMAGENET_MEAN, IMAGENET_STD

            _, h, w, c = model.input_shape
            mean, std = IMAGENET_MEAN, IMAGENET_STD
            if c == 1:
                mean, std = (float(np.mean(mean)),), (float(np.mean(std)),)
            preprocessing = Preprocessing(h, w, c, mean, std)
    if preprocessing.resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}. "
                         f"Received: resize={preprocessing.resize!r}")

    os.makedirs(directory, exist_ok=True)
    # TF Serving only loads integer directories: build the version beside them.
    staging = tempfile.mkdtemp(prefix=f".staging-{version}-", dir=directory)
    try:
        _write(model, staging, preprocessing, class_names, top_k, max_image_bytes, max_pixels,
               warmup_images)
        if verify:
            verify_saved_model(staging, model, preprocessing)
        record = {
            "model": model.name, "version": version, "classes": classes,
            "class_names": class_names, "input_shape": list(model.input_shape[1:]),
            "preprocessing": dataclasses.asdict(preprocessing), "dataset": dataset,
            "signatures": {"serving_default": "images (encoded image bytes)",
                           "serving_pixels": "pixels (uint8)"},
            "outputs": ["probabilities", "classes", "scores", "labels"], "top_k": top_k,
            "limits": {"max_image_bytes": max_image_bytes, "max_pixels": max_pixels},
            "versions": _versions(), **(metadata or {}),
        }
        record["sha256"] = _sha256_of_files(staging)
        with open(os.path.join(staging, "kres.json"), "w") as f:
            json.dump(record, f, indent=2)
        os.rename(staging, final)  # atomic on one file system; fails if `final` exists
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    update_models_config(os.path.dirname(os.path.abspath(directory)))
    return final


def export_run(model_path, directory, version=None, **kwargs):
    """Exports a ``.keras`` model of a `kres.train` run with what the run knows.

    The run directory (the model file's folder) gives the dataset (hence the
    preprocessing), the class names and the test accuracy for ``kres.json``.

    Raises:
        ValueError: if `model_path` is no model file.
    """
    if not os.path.isfile(model_path):
        raise ValueError(f"No model file at model_path. Received: model_path={model_path!r}")
    model = keras.saving.load_model(model_path)
    run = os.path.dirname(os.path.abspath(model_path))
    config, results = (_read_json(os.path.join(run, name))
                       for name in ("config.json", "results.json"))
    dataset = config.get("dataset")
    from kres import data

    if dataset not in data.DATASETS:
        dataset = None
    metadata = {"training": {"run": run, "dataset": config.get("dataset"),
                             "config": config or None,
                             "test_accuracy": results.get("test_accuracy")}}
    if config.get("model"):
        from kres.registry import resolve_spec
        from kres.train import TrainConfig, model_overrides, resolve_recipe

        train_config = TrainConfig(**config)
        recipe = resolve_recipe(train_config.recipe, **train_config.recipe_overrides)
        spec = resolve_spec(train_config.model, **model_overrides(train_config, recipe))
        metadata["spec"] = {"name": train_config.model, **dataclasses.asdict(spec)}
    kwargs.setdefault("class_names", results.get("class_names"))
    return export(model, directory, version, dataset=dataset, metadata=metadata, **kwargs)


def _read_json(path):
    """The JSON object in `path`, or ``{}`` when there is no such file."""
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def predict(saved_model, images, version=None, signature="serving_default"):
    """Runs an exported version on encoded images.

    Args:
        saved_model: the model's base path (``saved_models/<name>``) or a
            version directory.
        images: encoded images (bytes).
        version: a version number (default: the highest).

    Returns:
        The signature's outputs as NumPy arrays.
    """
    path = saved_model
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        available = versions(saved_model)
        if not available:
            raise ValueError(f"No exported version in saved_model. "
                             f"Received: saved_model={saved_model!r}")
        path = os.path.join(saved_model, str(version or available[-1]))
    loaded = tf.saved_model.load(path)
    outputs = loaded.signatures[signature](images=tf.constant(list(images)))
    return {k: v.numpy() for k, v in outputs.items()}


def _versions():
    import kres

    return {"kres": kres.__version__, "keras": keras.__version__, "tensorflow": tf.__version__}


def _write(model, path, prep, class_names, top_k, max_image_bytes, max_pixels, warmup_images):
    server = _Server(model, prep, class_names, top_k, max_image_bytes, max_pixels)
    archive = keras.export.ExportArchive()
    archive.track(model)
    # Grouped convolutions as per-group convolutions: a graph holding TensorFlow's
    # native grouped op fails on CPUs without oneDNN (kres.layers.GroupedConv2D).
    with formulation("split"):
        archive.add_endpoint("serving_default", server.serve_images,
                             input_signature=[tf.TensorSpec([None], tf.string, name="images")])
        archive.add_endpoint("serving_pixels", server.serve_pixels, input_signature=[
            tf.TensorSpec([None, None, None, prep.channels], tf.uint8, name="pixels")])
        archive.write_out(path, verbose=False)
    os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
    write_warmup_requests(os.path.join(path, "assets.extra", "tf_serving_warmup_requests"),
                          warmup_images or _sample_images(prep), model_name=model.name)


def _sample_images(prep, count=3):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (count, prep.height, prep.width, prep.channels), np.uint8)
    return [tf.io.encode_png(image).numpy() for image in images]


def write_warmup_requests(path, images, model_name="model"):
    """Writes TF Serving warmup records: one PredictRequest per image.

    Args:
        path: the ``assets.extra/tf_serving_warmup_requests`` file.
        images: encoded images (bytes).
        model_name: the model name written in the requests.
    """
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    with tf.io.TFRecordWriter(path) as writer:
        for image in images:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name,
                                               signature_name="serving_default"))
            request.inputs["images"].CopyFrom(tf.make_tensor_proto([image]))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def read_warmup_requests(path):
    """The encoded images of a warmup file, one list per request."""
    from tensorflow_serving.apis import prediction_log_pb2

    requests = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        requests.append(list(tf.make_ndarray(log.predict_log.request.inputs["images"])))
    return requests


def update_models_config(root):
    """Rewrites ``<root>/models.config`` with one entry per exported model.

    Each folder of `root` holding at least one integer version is a model; the
    file is TF Serving's ``--model_config_file`` format, with base paths
    under ``/models`` as in the ``tensorflow/serving`` Docker image.
    """
    entries = []
    for name in sorted(os.listdir(root)):
        if versions(os.path.join(root, name)):
            entries.append(f'  config {{\n    name: "{name}"\n    base_path: "/models/{name}"\n'
                           f'    model_platform: "tensorflow"\n  }}\n')
    text = "model_config_list {\n" + "".join(entries) + "}\n"
    tmp = os.path.join(root, ".models.config.tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, os.path.join(root, "models.config"))


def verify_saved_model(path, model, preprocessing, atol=1e-5):
    """Loads a written SavedModel as TF Serving would and checks it against the model.

    Refuses a SavedModel without its variables (TF Serving's C++ loader
    loads one without complaint; only its first request fails), then loads it
    through TensorFlow's C API (`c_api_run`), runs the pixels signature on
    random images and compares with ``model.predict`` after the same preprocessing.

    Raises:
        ValueError: if the SavedModel is incomplete or disagrees.
    """
    index = os.path.join(path, "variables", "variables.index")
    if not os.path.isfile(index):
        raise ValueError(f"The SavedModel in {path} has no variables (missing {index}).")
    prep = preprocessing
    h, w = prep.height, prep.width
    top = left = 0
    if prep.resize == "center_crop":
        # Images whose shorter side is already size / 0.875: the serving resize
        # is then the identity and the crop a slice, which NumPy can repeat.
        side = int(round(min(h, w) / 0.875))
        top, left = (side + h - min(h, w) - h) // 2, (side + w - min(h, w) - w) // 2
        h, w = side + h - min(h, w), side + w - min(h, w)
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (2, h, w, prep.channels), np.uint8)
    got = c_api_run(path, "serving_pixels", {"pixels": pixels})["probabilities"]
    mean = np.broadcast_to(prep.mean, (prep.channels,)) * 255.0
    std = np.broadcast_to(prep.std, (prep.channels,)) * 255.0
    crop = pixels[:, top:top + prep.height, left:left + prep.width]
    expected = model.predict((crop.astype(np.float32) - mean) / std, verbose=0)
    diff = float(np.max(np.abs(got - expected)))
    if diff > atol:
        raise ValueError(f"The SavedModel in {path} disagrees with the model: max abs "
                         f"difference {diff:.3g} > {atol}")


# --- The C++ loader, through TensorFlow's C API -------------------------------------

class _Buffer(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("length", ctypes.c_size_t),
                ("data_deallocator", ctypes.c_void_p)]


class _Output(ctypes.Structure):
    _fields_ = [("oper", ctypes.c_void_p), ("index", ctypes.c_int)]


_TF_DTYPES = {np.dtype(np.float32): 1, np.dtype(np.int32): 3, np.dtype(np.uint8): 4}


def _c_api():
    """TensorFlow's C API from the wheel's shared libraries, with argument types."""
    folder = os.path.dirname(tf.__file__)
    libs = [ctypes.CDLL(os.path.join(folder, name), mode=ctypes.RTLD_GLOBAL)
            for name in ("libtensorflow_framework.so.2", "libtensorflow_cc.so.2")]

    def fn(name, restype, *argtypes):
        for lib in libs:
            if hasattr(lib, name):
                f = getattr(lib, name)
                f.restype, f.argtypes = restype, list(argtypes)
                return f
        raise OSError(f"{name} is not in TensorFlow's C API libraries in {folder}")

    p, i, sz = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
    return {
        "NewStatus": fn("TF_NewStatus", p), "DeleteStatus": fn("TF_DeleteStatus", None, p),
        "GetCode": fn("TF_GetCode", i, p), "Message": fn("TF_Message", ctypes.c_char_p, p),
        "NewSessionOptions": fn("TF_NewSessionOptions", p),
        "DeleteSessionOptions": fn("TF_DeleteSessionOptions", None, p),
        "NewGraph": fn("TF_NewGraph", p), "DeleteGraph": fn("TF_DeleteGraph", None, p),
        "NewBuffer": fn("TF_NewBuffer", ctypes.POINTER(_Buffer)),
        "DeleteBuffer": fn("TF_DeleteBuffer", None, ctypes.POINTER(_Buffer)),
        "Load": fn("TF_LoadSessionFromSavedModel", p, p, p, ctypes.c_char_p,
                   ctypes.POINTER(ctypes.c_char_p), i, p, ctypes.POINTER(_Buffer), p),
        "OperationByName": fn("TF_GraphOperationByName", p, p, ctypes.c_char_p),
        "AllocateTensor": fn("TF_AllocateTensor", p, i, ctypes.POINTER(ctypes.c_int64), i, sz),
        "TensorData": fn("TF_TensorData", p, p), "TensorByteSize": fn("TF_TensorByteSize", sz, p),
        "NumDims": fn("TF_NumDims", i, p), "Dim": fn("TF_Dim", ctypes.c_int64, p, i),
        "TensorType": fn("TF_TensorType", i, p), "DeleteTensor": fn("TF_DeleteTensor", None, p),
        "SessionRun": fn("TF_SessionRun", None, p, p, ctypes.POINTER(_Output),
                         ctypes.POINTER(p), i, ctypes.POINTER(_Output), ctypes.POINTER(p), i,
                         p, i, p, p),
        "CloseSession": fn("TF_CloseSession", None, p, p),
        "DeleteSession": fn("TF_DeleteSession", None, p, p),
    }


def c_api_run(path, signature, inputs):
    """Runs a signature of a SavedModel loaded by TensorFlow's C++ loader.

    This is the loader TF Serving links (`TF_LoadSessionFromSavedModel`, tag
    ``serve``): the graph comes from ``saved_model.pb``, the tensors of the
    signature from the MetaGraphDef the loader returns.

    Args:
        path: a SavedModel directory.
        signature: a signature name, e.g. ``"serving_pixels"``.
        inputs: ``{input name: NumPy array}`` (float32, int32 or uint8).

    Returns:
        ``{output name: NumPy array}`` for the signature's float32 and int32
        outputs.

    Raises:
        RuntimeError: with the C API's message if loading or running fails.
    """
    from tensorflow.core.protobuf import meta_graph_pb2

    c = _c_api()
    status, options, graph = c["NewStatus"](), c["NewSessionOptions"](), c["NewGraph"]()
    meta = c["NewBuffer"]()
    tensors = []

    def check(what):
        if c["GetCode"](status) != 0:
            raise RuntimeError(f"{what}: {c['Message'](status).decode()}")

    try:
        tags = (ctypes.c_char_p * 1)(TAG.encode())
        session = c["Load"](options, None, os.fsencode(path), tags, 1, graph, meta, status)
        check(f"TF_LoadSessionFromSavedModel({path})")
        meta_graph = meta_graph_pb2.MetaGraphDef.FromString(
            ctypes.string_at(meta.contents.data, meta.contents.length))
        sig = meta_graph.signature_def[signature]

        def output_of(tensor_name):
            op, index = tensor_name.rsplit(":", 1)
            oper = c["OperationByName"](graph, op.encode())
            if not oper:
                raise RuntimeError(f"No operation {op!r} in the loaded graph")
            return _Output(oper, int(index))

        in_names = sorted(inputs)
        feeds = (_Output * len(in_names))(*[output_of(sig.inputs[n].name) for n in in_names])
        values = (ctypes.c_void_p * len(in_names))()
        for k, name in enumerate(in_names):
            array = np.ascontiguousarray(inputs[name])
            dims = (ctypes.c_int64 * array.ndim)(*array.shape)
            tensor = c["AllocateTensor"](_TF_DTYPES[array.dtype], dims, array.ndim, array.nbytes)
            tensors.append(tensor)
            ctypes.memmove(c["TensorData"](tensor), array.ctypes.data, array.nbytes)
            values[k] = tensor
        out_names = sorted(n for n, t in sig.outputs.items() if t.dtype in (1, 3))
        fetches = (_Output * len(out_names))(*[output_of(sig.outputs[n].name)
                                              for n in out_names])
        results = (ctypes.c_void_p * len(out_names))()
        c["SessionRun"](session, None, feeds, values, len(in_names), fetches, results,
                        len(out_names), None, 0, None, status)
        check(f"TF_SessionRun({signature})")
        outputs = {}
        for name, tensor in zip(out_names, results):
            tensors.append(tensor)
            shape = [c["Dim"](tensor, d) for d in range(c["NumDims"](tensor))]
            dtype = {1: np.float32, 3: np.int32}[c["TensorType"](tensor)]
            size = c["TensorByteSize"](tensor)
            outputs[name] = np.frombuffer(ctypes.string_at(c["TensorData"](tensor), size),
                                          dtype).reshape(shape).copy()
        c["CloseSession"](session, status)
        c["DeleteSession"](session, status)
        return outputs
    finally:
        for tensor in tensors:
            c["DeleteTensor"](tensor)
        c["DeleteBuffer"](meta)
        c["DeleteGraph"](graph)
        c["DeleteSessionOptions"](options)
        c["DeleteStatus"](status)
