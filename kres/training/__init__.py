"""Training: a run's config, its preparation, the one fit, scoring, and what surrounds it.

- `kres.training.config`: `TrainConfig`, `as_config`;
- `kres.training.preparation`: `prepare` (data, input, pretrained weights),
  `load_data`, `resolve_input`;
- `kres.training.run`: `train`, in named steps;
- `kres.training.fit`: the one call of `model.fit` and its callbacks
  (shared with tuning), `pipelines`;
- `kres.training.evaluation`: `evaluate` a saved model, `scores`;
- `kres.training.lr_range`: the learning-rate range test, `lr_find`;
- `kres.training.recipes`: `Recipe`, `RECIPES`, schedules, compile (no
  TensorFlow);
- `kres.training.finetune`: pretrained weights into a run's network;
- `kres.training.devices`, `cluster`, `multiworker`: precision, strategies,
  several machines.
"""

from kres.lazy_names import public_names

_NAMES = {
    "TrainConfig": "kres.training.config", "as_config": "kres.training.config",
    "prepare": "kres.training.preparation", "load_data": "kres.training.preparation",
    "resolve_input": "kres.training.preparation", "train": "kres.training.run",
    "evaluate": "kres.training.evaluation", "lr_find": "kres.training.lr_range",
}
__getattr__, __dir__, __all__ = public_names(__name__, _NAMES)
