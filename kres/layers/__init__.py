"""Custom Keras layers that kres models need where no built-in layer fits.

Each layer is registered as serializable under the ``kres`` package, so models
that use it save to ``.keras`` and load back with ``safe_mode=True`` (kres
registers them as soon as Keras is imported: see `kres`).

- `GroupedConv2D` (and `use_formulation`): ``Conv2D(groups=g)`` computed fast
  on every device (`kres.layers.grouped_conv`);
- `BatchNormalization`: Keras's layer on TensorFlow's fused op, frozen for
  good on request (`kres.layers.batch_norm`);
- `ZeroPadChannels`: the ResNet paper's option A shortcut;
- `LocalResponseNormalization`: AlexNet's and GoogLeNet's LRN;
- `InputPreprocessing`: a trained model's own input normalisation, resize
  mode and class names (`kres.layers.input_preprocessing`).
"""

from kres.layers.batch_norm import BatchNormalization
from kres.layers.grouped_conv import (
    FORMULATION_VARIABLE,
    FORMULATIONS,
    GroupedConv2D,
    cpu_runs_grouped_backward,
    grouped_formulation,
    use_formulation,
)
from kres.layers.input_preprocessing import InputPreprocessing
from kres.layers.local_response_norm import LocalResponseNormalization
from kres.layers.zero_pad_channels import ZeroPadChannels

__all__ = ["BatchNormalization", "FORMULATIONS", "FORMULATION_VARIABLE", "GroupedConv2D",
           "InputPreprocessing", "LocalResponseNormalization", "ZeroPadChannels",
           "cpu_runs_grouped_backward", "grouped_formulation", "use_formulation"]
