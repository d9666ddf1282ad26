"""The check of an export through the loader TF Serving links: TensorFlow's C API.

`verify_saved_model` loads a written SavedModel with
``TF_LoadSessionFromSavedModel`` (through ctypes on the wheel's own shared
libraries), runs its pixels signature and compares it with the Keras model;
`c_api_run` runs any signature that way.
"""

import ctypes
import os

import numpy as np
import tensorflow as tf

TAG = "serve"


def verify_saved_model(path, model, preprocessing, atol=1e-5, explain_stage=None,
                       threshold=None):
    """Loads a written SavedModel as TF Serving would and checks it against the model.

    Refuses a SavedModel without its variables (TF Serving's C++ loader
    loads one without complaint; only its first request fails), then loads it
    through TensorFlow's C API (`c_api_run`), runs the pixels signature on
    random images and compares with ``model.predict`` on the same pixels
    after the same resize (`model` normalises its own input). With
    `explain_stage` (the export's ``explain``), it also runs the ``explain``
    signature on the same pixels as PNG bytes and compares its heatmaps with
    `kres.explain`'s (within one level of 255) and its classes. With
    `threshold` (a multi-label model), the served ``predicted`` must be its
    probabilities at or above the threshold.

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
    served = c_api_run(path, "serving_pixels", {"pixels": pixels})
    got = served["probabilities"]
    if threshold is not None and not np.array_equal(served["predicted"], got >= threshold):
        raise ValueError(f"The SavedModel in {path} predicts other labels than its "
                         f"probabilities at threshold {threshold:g} give")
    crop = pixels[:, top:top + prep.height, left:left + prep.width]
    expected = model.predict(crop.astype(np.float32), verbose=0)
    diff = float(np.max(np.abs(got - expected)))
    if diff > atol:
        raise ValueError(f"The SavedModel in {path} disagrees with the model: max abs "
                         f"difference {diff:.3g} > {atol}")
    if explain_stage is not None:
        from kres.models.explain import explain

        served = c_api_run(path, "explain",
                           {"images": [tf.io.encode_png(p).numpy() for p in pixels]})
        found = explain(model, crop, stage=explain_stage)
        levels = np.abs(served["heatmap"].astype(np.int32)
                        - np.round(found.heatmaps * 255).astype(np.int32))
        if (served["classes"][:, 0] != found.classes).any() or levels.max() > 1:
            raise ValueError(f"The SavedModel in {path}: its explain signature disagrees with "
                             f"kres.explain (heatmaps differ by up to {levels.max()} of 255, "
                             f"classes {served['classes'][:, 0]} vs {found.classes})")


# --- The C++ loader, through TensorFlow's C API -------------------------------------

class _Buffer(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("length", ctypes.c_size_t),
                ("data_deallocator", ctypes.c_void_p)]


class _Output(ctypes.Structure):
    _fields_ = [("oper", ctypes.c_void_p), ("index", ctypes.c_int)]


_TF_DTYPES = {np.dtype(np.float32): 1, np.dtype(np.int32): 3, np.dtype(np.uint8): 4,
              np.dtype(np.bool_): 10}
_NP_DTYPES = {code: dtype for dtype, code in _TF_DTYPES.items()}
_TF_STRING = 7
_TSTRING_BYTES = 24  # sizeof(TF_TString), TensorFlow's string in a tensor's buffer


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
        "StringInit": fn("TF_StringInit", None, p),
        "StringCopy": fn("TF_StringCopy", None, p, ctypes.c_char_p, sz),
        "StringDealloc": fn("TF_StringDealloc", None, p),
    }


def c_api_run(path, signature, inputs):
    """Runs a signature of a SavedModel loaded by TensorFlow's C++ loader.

    This is the loader TF Serving links (`TF_LoadSessionFromSavedModel`, tag
    ``serve``): the graph comes from ``saved_model.pb``, the tensors of the
    signature from the MetaGraphDef the loader returns.

    Args:
        path: a SavedModel directory.
        signature: a signature name, e.g. ``"serving_pixels"``.
        inputs: ``{input name: NumPy array}`` (float32, int32 or uint8), or
            a list of bytes for a string input (encoded images).

    Returns:
        ``{output name: NumPy array}`` for the signature's float32, int32
        and uint8 outputs.

    Raises:
        RuntimeError: with the C API's message if loading or running fails.
    """
    from tensorflow.core.protobuf import meta_graph_pb2

    c = _c_api()
    status, options, graph = c["NewStatus"](), c["NewSessionOptions"](), c["NewGraph"]()
    meta = c["NewBuffer"]()
    tensors, strings = [], []

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
            if isinstance(inputs[name], list | tuple):  # strings: TF_TString elements
                items = [bytes(item) for item in inputs[name]]
                dims = (ctypes.c_int64 * 1)(len(items))
                tensor = c["AllocateTensor"](_TF_STRING, dims, 1, _TSTRING_BYTES * len(items))
                tensors.append(tensor)
                base = c["TensorData"](tensor)
                for j, item in enumerate(items):
                    element = base + j * _TSTRING_BYTES
                    c["StringInit"](element)
                    strings.append(element)
                    c["StringCopy"](element, item, len(item))
            else:
                array = np.ascontiguousarray(inputs[name])
                dims = (ctypes.c_int64 * array.ndim)(*array.shape)
                tensor = c["AllocateTensor"](_TF_DTYPES[array.dtype], dims, array.ndim,
                                             array.nbytes)
                tensors.append(tensor)
                ctypes.memmove(c["TensorData"](tensor), array.ctypes.data, array.nbytes)
            values[k] = tensor
        out_names = sorted(n for n, t in sig.outputs.items() if t.dtype in _NP_DTYPES)
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
            dtype = _NP_DTYPES[c["TensorType"](tensor)]
            size = c["TensorByteSize"](tensor)
            outputs[name] = np.frombuffer(ctypes.string_at(c["TensorData"](tensor), size),
                                          dtype).reshape(shape).copy()
        c["CloseSession"](session, status)
        c["DeleteSession"](session, status)
        return outputs
    finally:
        for element in strings:  # the caller frees what TF_StringCopy allocated
            c["StringDealloc"](element)
        for tensor in tensors:
            c["DeleteTensor"](tensor)
        c["DeleteBuffer"](meta)
        c["DeleteGraph"](graph)
        c["DeleteSessionOptions"](options)
        c["DeleteStatus"](status)
