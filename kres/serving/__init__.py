"""Serving: exported models for TF Serving and devices, and the checks that they serve right.

- `kres.serving.dispatch`: `export`, the one entry for every format
  (`served_model`: the model with its own normalisation), and `predict`
  through any export;
- `kres.serving.saved_model`: TF Serving's versioned SavedModels (signatures,
  warmup records, ``models.config``, ``kres.json``);
- `kres.serving.signatures`: the functions behind the signatures (decoding
  with limits by `kres.images`, the resize, the outputs);
- `kres.serving.litert_onnx`: LiteRT (TFLite, with quantization) and ONNX
  files, each checked against the Keras model before it is written;
- `kres.serving.verify`: loading an export through TensorFlow's C API (the
  loader TF Serving links) and comparing it with the Keras model;
- `kres.serving.records`: what an export records about itself.

Serving needs a model that carries its normalisation (every model kres
trains does: `kres.layers.InputPreprocessing`), or is told it, and never the
data, training or tuning code, nor TensorFlow Datasets.
"""

from kres.preprocessing import Preprocessing
from kres.serving.dispatch import export, predict
from kres.serving.saved_model import (
    read_warmup_requests,
    update_models_config,
    versions,
    write_warmup_requests,
)
from kres.serving.verify import c_api_run, verify_saved_model

__all__ = ["Preprocessing", "c_api_run", "export", "predict", "read_warmup_requests",
           "update_models_config", "verify_saved_model", "versions", "write_warmup_requests"]
