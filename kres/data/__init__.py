"""Data: the datasets kres names, image folders, arrays, and the input pipelines.

- `kres.data.catalog`: `DatasetSpec`, `DATASETS`, `list_datasets`,
  `get_dataset_spec`, `data_dir_for` (no TensorFlow);
- `kres.data.sources`: `load` (tfds, folders, arrays), `Data`,
  `from_arrays`, `ensure_prepared` (offline preparation);
- `kres.data.folders` and `kres.data.splits`: an image folder's scan, and
  its stratified splits and class weights; `kres.data.folder_data` a folder
  loaded as a dataset;
- `kres.data.label_file`: an image folder's labels from a CSV file
  (``path,label`` or ``path,label1;label2`` rows; no TensorFlow);
- `kres.data.fashion_mnist`: Fashion-MNIST from Debian's IDX files (no
  TensorFlow to read them);
- `kres.data.pipeline`: the `tf.data` pipelines; `kres.data.batches` the
  pipeline without TensorFlow (a Keras `PyDataset` of in-memory
  `Examples`) and `make_pipeline`, which picks one for a split;
  `kres.data.augment` the augmentation layers, `kres.data.batch_augment`
  the recipes' batch augmentation, `kres.data.keyed_draws` their draws keyed
  to an image or a batch, and the epoch order;
- `kres.data.calibration`: representative pixels for quantization.

Data reads images with `kres.images` and run directories with
`kres.rundir`; it imports no model, training, tuning or serving code.
"""

from kres.lazy_names import public_names

_NAMES = {
    "DatasetSpec": "kres.data.catalog", "DATASETS": "kres.data.catalog",
    "list_datasets": "kres.data.catalog", "get_dataset_spec": "kres.data.catalog",
    "data_dir_for": "kres.data.catalog", "load": "kres.data.sources",
    "Data": "kres.data.sources", "from_arrays": "kres.data.sources",
    "ensure_prepared": "kres.data.sources", "Examples": "kres.data.batches",
}
__getattr__, __dir__, __all__ = public_names(__name__, _NAMES)
