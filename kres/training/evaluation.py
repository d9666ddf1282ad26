"""Scoring a model: a saved ``.keras`` on a dataset split, or a model on a pipeline.

Every score comes from one prediction pass (`scored`), whose predictions the
per-class report reuses.
"""

import os

import keras
import numpy as np

from kres import checks, rundir
from kres.data import splits as ksplits
from kres.data.batches import make_pipeline as pipeline
from kres.losses import SummedBinaryCrossentropy
from kres.models.inference import flip_averaged
from kres.models.inputs import label_threshold, preprocessing_layer, with_preprocessing
from kres.models.saving import load_model
from kres.preprocessing import Preprocessing
from kres.training import report as reports
from kres.training.preparation import load_data


def scored(model, ds, num_classes, *, loss, flip=False, mistakes=16, threshold=None):
    """`model`'s scores on `ds` from one prediction pass, and its predictions.

    Args:
        model: a classifier with softmax outputs (taking what `ds` holds), or
            sigmoid outputs with `threshold`.
        ds: an evaluation pipeline's batches of ``(images, one-hot labels)``
            (multi-hot with `threshold`).
        num_classes: the number of classes.
        loss: the loss to report (a Keras loss or its name), computed on
            every image's probabilities.
        flip: score each image's and its mirror image's probabilities
            averaged (`kres.flip_averaged`).
        mistakes: how many of the most confident mistakes the predictions keep.
        threshold: multi-label: the probability at which a label is predicted.

    Returns:
        ``(scores, predictions)``: ``loss``, ``accuracy`` (and ``top5`` beyond
        10 classes, as the recipes' metrics), or with `threshold` ``map`` (mean
        average precision), ``f1`` (micro-averaged at `threshold`),
        ``macro_f1`` and ``subset_accuracy`` (`kres.training.report.multilabel_report`);
        and `kres.training.report.predict`'s answer, which
        `kres.training.report.from_predictions` turns into the report.
    """
    if flip:
        model = flip_averaged(model)
    labels, probabilities, wrong = reports.predict(model, ds, mistakes=mistakes,
                                                   threshold=threshold)
    loss_fn = keras.losses.get(loss) if isinstance(loss, str) else loss
    if threshold is not None:
        graded = reports.multilabel_report(labels, probabilities, list(range(num_classes)),
                                           threshold=threshold)
        result = {"loss": float(np.mean(np.asarray(
                      loss_fn(labels.astype(np.float32), probabilities)))),
                  "map": graded["map"], "f1": graded["micro_avg"]["f1"],
                  "macro_f1": graded["macro_avg"]["f1"],
                  "subset_accuracy": graded["subset_accuracy"]}
        return result, (labels, probabilities, wrong)
    onehot = np.eye(num_classes, dtype=np.float32)[labels]
    result = {"loss": float(np.mean(np.asarray(loss_fn(onehot, probabilities)))),
              "accuracy": float(np.mean(np.argmax(probabilities, axis=-1) == labels))}
    if num_classes > 10:
        top = np.argsort(-probabilities, axis=-1, kind="stable")[:, :5]
        result["top5"] = float(np.mean((top == labels[:, None]).any(axis=-1)))
    return result, (labels, probabilities, wrong)


def scores(model, ds, num_classes, *, loss, flip=False, threshold=None):
    """`scored`'s scores alone."""
    return scored(model, ds, num_classes, loss=loss, flip=flip, mistakes=0,
                  threshold=threshold)[0]


def evaluate(model_path, dataset, *, split="test", data_dir=None, batch_size=256, flip=False,
             report=False, mistakes=16, labels=None):
    """Scores a saved ``.keras`` model on a dataset split, with a per-class report if asked.

    A model kres trained normalises its own pixels
    (`kres.layers.InputPreprocessing`), wherever its file was moved. For
    another model (a run of kres before 0.2, a model built by hand), the
    normalisation is the ``model.json`` beside it, else the dataset's
    statistics. Beside a run's model, the run directory also gives an image
    folder's split (``splits.json``), the validation size and whether bad
    images were skipped (``config.json``), and the CSV file of its labels.

    A multi-label model (a run trained on a CSV file giving several labels
    per image) is scored with its own threshold: mean average precision,
    F1 and exact label sets instead of accuracy.

    Args:
        model_path: a ``.keras`` file, or a run directory (its ``best.keras``).
        dataset: a dataset name or image folder.
        split: ``"test"``, ``"val"`` or ``"train"``.
        data_dir: the dataset's tfds data directory.
        batch_size: evaluation batch size.
        flip: average each image's and its mirror image's predictions
            (`kres.flip_averaged`; a recipe's ``test_flip``).
        report: also return ``report``: per-class precision, recall, F1 and
            support, their averages, the confusion matrix, the most confused
            pairs and the `mistakes` most confident mistakes with their images
            (and files, for an image folder's validation and test splits;
            `kres.training.report.report`). `kres.training.report.write_report`
            writes it as JSON and two PNGs.
        mistakes: with `report`, how many mistakes to keep.
        labels: an image folder's CSV file of labels (`kres.data.label_file`);
            default: the run's, for the folder it trained on. Its labels must
            be among the model's classes.

    Returns:
        A dict with ``loss``, ``accuracy`` (and ``top5`` for many classes;
        ``report`` with `report`); for a multi-label model ``loss``, ``map``,
        ``f1``, ``macro_f1`` and ``subset_accuracy``
        (`kres.training.evaluation.scored`).

    Raises:
        ValueError: for a missing model file, an unknown dataset or split, or
            a model whose classes or input do not fit the dataset; a CSV file
            with labels outside the model's classes; a multi-label model on
            single-label data, or the other way round.

    Example:

    It needs a trained run and the whole test split, so this example is not
    run as a test::

        kres.evaluate("runs/demo/best.keras", "fashion_mnist")
        # e.g. {'accuracy': 0.899, 'loss': 0.28}
    """
    checks.choice("split", split, ("train", "val", "test"))
    checks.positive_int("batch_size", batch_size)
    checks.boolean("flip", flip)
    checks.boolean("report", report)
    checks.integer("mistakes", mistakes, minimum=0)
    model_path = checks.model_file("model_path", model_path)
    run = os.path.dirname(os.path.abspath(model_path))
    saved = rundir.read_json(os.path.join(run, "config.json"))
    same = saved.get("dataset") is not None and os.path.abspath(saved["dataset"]) == \
        os.path.abspath(dataset)
    model = load_model(model_path)
    _, height, width, channels = model.input_shape
    folder = {"labels": labels}
    if os.path.isdir(dataset):
        splits_path = os.path.join(run, "splits.json")
        own = saved.get("labels")
        if labels is None and same:
            labels = own
        # The run's split is for its own folder labelled as it was.
        same = same and (labels == own or (labels is not None and own is not None
                                           and os.path.abspath(labels) == os.path.abspath(own)))
        layer = preprocessing_layer(model)
        folder = dict(channels=channels, seed=saved.get("seed") or 0,
                      skip_bad_images=bool(same and saved.get("skip_bad_images")),
                      splits=ksplits.read_splits(splits_path)
                      if same and os.path.isfile(splits_path) else None, labels=labels,
                      class_names=layer.class_names if labels and layer is not None else None)
    data = load_data(dataset, data_dir=data_dir,
                     val_size=saved.get("val_size") if same else None, **folder)
    if preprocessing_layer(model) is None:
        described = rundir.read_json(os.path.join(run, "model.json")).get("preprocessing")
        prep = Preprocessing.from_json(described) if described else None
        if prep is None or (prep.height, prep.width, prep.channels) != (height, width, channels):
            prep = data.spec.preprocessing((height, width, channels))  # none, or another model's
        model = with_preprocessing(model, prep)
    classes = model.output_shape[-1]
    if classes != data.spec.num_classes:
        raise ValueError(
            f"The model predicts {classes} classes, the dataset has {data.spec.num_classes}. "
            f"Received: dataset={dataset!r}"
        )
    threshold = label_threshold(model)
    if threshold is not None and not data.multi_label:
        raise ValueError(f"The model is multi-label (sigmoid outputs, threshold {threshold:g}); "
                         f"{dataset!r} gives one label per image: evaluate it on multi-label "
                         f"data (an image folder with labels=). Received: dataset={dataset!r}")
    if threshold is None and data.multi_label:
        raise ValueError(f"The model gives one class per image; the labels of {labels} give "
                         f"several: evaluate a multi-label model. Received: labels={labels!r}")
    # The model's own evaluation resize (its centre crop, or a plain resize), as served.
    ds = pipeline(getattr(data, split), data.spec, training=False, batch_size=batch_size,
                  image_size=height, channels=channels, num_classes=classes, cache=False,
                  preprocessing=preprocessing_layer(model).preprocessing(height, width,
                                                                         channels))
    loss = "categorical_crossentropy" if threshold is None else SummedBinaryCrossentropy()
    result, predicted = scored(model, ds, classes, loss=loss, flip=flip,
                               mistakes=mistakes if report else 0, threshold=threshold)
    if report:
        names = [path for path, _ in data.splits[split]] \
            if data.splits is not None and split != "train" else None
        result["report"] = reports.from_predictions(*predicted, data.class_names, names=names,
                                                    threshold=threshold)
    return result

