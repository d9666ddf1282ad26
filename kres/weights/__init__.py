"""Weights files: Keras's published ImageNet files, timm/torchvision state dicts.

- `kres.weights.keras_applications`: `PublishedWeights` (what a family
  declares of its published ImageNet files), `load_keras_weights`,
  `decode_predictions`;
- `kres.weights.torch_state_dict`: `load_state_dict` (a PyTorch state dict
  into Keras variables through a family's mapping, NumPy only);
- `kres.weights.safetensors_file`: the `.safetensors` reader;
- `kres.weights.files`: any weights file into a model (`load_weights_file`),
  refusing mismatches.
"""

from kres.lazy_names import public_names

_NAMES = {
    "PublishedWeights": "kres.weights.keras_applications",
    "load_keras_weights": "kres.weights.keras_applications",
    "decode_predictions": "kres.weights.keras_applications",
    "load_state_dict": "kres.weights.torch_state_dict",
    "load_weights_file": "kres.weights.files",
}
__getattr__, __dir__, __all__ = public_names(__name__, _NAMES)
