"""Models: the families, their one template, and everything built from them.

- `kres.models.families`, one module per family (`resnet`, `densenet`,
  `vgg`, `googlenet`, `alexnet`): a frozen spec dataclass, a ``VARIANTS``
  table with one row per named model, one builder made from
  `kres.models.template`, and the family's `kres.models.family.Family`
  declaration (stage outputs, published weights, state-dict loader);
- `kres.models.blocks` (the one residual block, stems, stages) and
  `kres.models.heads` (the classifier tops);
- `kres.models.registry`: `build_model`, `get_spec`, `list_models`,
  `published_weights`, `preprocess_input`, and
  the generated `kres.models.catalog` and `kres.models.constructors`
  (``python -m kres.models.registry`` writes them);
- `kres.models.backbones`: `feature_extractor`;
- `kres.models.inputs` (a model's own pixel input and preprocessing),
  `kres.models.inference` (`in_float32`, `flip_averaged`),
  `kres.models.saving` (`load_model`), `kres.models.counting`
  (`count_params`, `count_macs`).

Models use `kres.layers` and the weights readers of `kres.weights`; they
import no data, training, tuning or serving code.
"""

from kres.lazy_names import public_names

_NAMES = {
    "build_model": "kres.models.registry", "get_spec": "kres.models.registry",
    "list_models": "kres.models.registry", "feature_extractor": "kres.models.backbones",
    "load_model": "kres.models.saving", "flip_averaged": "kres.models.inference",
    "in_float32": "kres.models.inference", "image_input": "kres.models.inputs",
    "preprocessing_layer": "kres.models.inputs", "with_preprocessing": "kres.models.inputs",
    "count_params": "kres.models.counting", "count_macs": "kres.models.counting",
    "strip_auxiliary": "kres.models.families.googlenet",
    "published_weights": "kres.models.registry",
    "load_timm_weights": "kres.models.families.resnet_timm",
    "preprocess_input": "kres.models.registry",
}
__getattr__, __dir__, __all__ = public_names(__name__, _NAMES)
