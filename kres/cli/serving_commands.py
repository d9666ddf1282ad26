"""What ``kres export`` and ``kres predict`` do, given their parsed arguments.

Both need TensorFlow (the SavedModel, LiteRT and ONNX files are made by it,
and `kres predict` serves through a SavedModel) and say so before any work
where it is missing.
"""

import json
import os

from kres.backends import require_tensorflow


def export(args):
    require_tensorflow("kres export (SavedModel, LiteRT and ONNX files are made by TensorFlow)")
    from kres import checks
    from kres.serving import export
    from kres.serving.dispatch import check_explain

    args.model = checks.model_file("--model", args.model)
    check_explain(args.format, args.explain, flags=True)
    if args.format == "saved_model":
        path = export(args.model, os.path.join(args.out, args.name), args.version,
                      top_k=args.top_k, grouped_conv=args.grouped_conv, verify=args.verify,
                      dataset=args.dataset, explain=args.explain)
        with open(os.path.join(path, "kres.json")) as f:
            stage = json.load(f).get("explain_stage")
        print(f"kres export: wrote {path}"
              f"{' (verified through the C API)' if args.verify else ''}"
              f"{f', with the explain signature (Grad-CAM at {stage})' if stage else ''}; "
              f"TF Serving config {os.path.join(args.out, 'models.config')}")
        return
    suffix = "" if args.quantize == "none" else f"-{args.quantize}"
    folder = os.path.join(args.out, f"{args.name}-{args.format}{suffix}")
    images = _calibration_images(args)
    path = export(args.model, folder, format=args.format, quantize=args.quantize,
                  input_type=args.input_type, calibration_images=images,
                  grouped_conv=args.grouped_conv, verify=args.verify, dataset=args.dataset)
    with open(os.path.join(path, "kres.json")) as f:
        record = json.load(f)
    check = record.get("verification")
    runner = "the LiteRT interpreter" if args.format == "tflite" else "ONNX Runtime"
    checked = (f"; run by {runner} on {check['images']} images: largest probability "
               f"difference from the model {check['max_abs_difference']:.2g}, top-1 agreement "
               f"{check['top1_agreement']:.0%}" if check else "")
    print(f"kres export: wrote {os.path.join(path, record['file'])} ({record['bytes']:,} bytes)"
          f"{checked}; what a client does first: {os.path.join(path, 'kres.json')}")


def _calibration_images(args):
    """Representative pixels for the export: `--calibration-data`, else the run's dataset,
    at the model's input size and resized as its preprocessing says."""
    from kres import rundir as runs
    from kres.data import calibration
    from kres.models.inputs import preprocessing_layer
    from kres.models.saving import load_model
    from kres.serving.dispatch import served_model

    run = os.path.dirname(os.path.abspath(args.model))
    described = runs.read_json(os.path.join(run, "model.json"))
    source = (args.calibration_data or args.dataset or described.get("dataset")
              or runs.read_json(os.path.join(run, "config.json")).get("dataset"))
    if source is None:
        if args.quantize == "int8":
            raise ValueError("--quantize int8 needs representative images: give "
                             "--calibration-data (a dataset, folder or .npy). Received: no run "
                             f"description beside {args.model}")
        return None
    model = load_model(args.model)
    own = None if preprocessing_layer(model) else _run_preprocessing(described)
    _, prep, _ = served_model(model, own, dataset=args.dataset or source)
    count = args.calibration_samples if args.quantize == "int8" else 32
    return calibration.sample_pixels(source, prep, count, data_dir=args.data_dir)


def _run_preprocessing(described):
    from kres.preprocessing import Preprocessing

    record = described.get("preprocessing")
    return Preprocessing.from_json(record) if record else None


def predict(args):
    require_tensorflow("kres predict (it serves through a SavedModel, or TensorFlow's decoding)")
    from kres.serving import predict

    names, images, truth = [], [], []
    for path in args.images:
        if not os.path.isfile(path):
            raise ValueError(f"No image file. Received: {path!r}")
        with open(path, "rb") as f:
            images.append(f.read())
        names.append(path)
        truth.append(None)
    if args.from_dataset:
        import tensorflow as tf

        from kres.training.preparation import load_data

        d = load_data(args.from_dataset, data_dir=args.data_dir, labels=args.labels)
        for i, (image, label) in enumerate(d.test.take(args.count)):
            images.append(tf.io.encode_png(image).numpy())
            names.append(f"{args.from_dataset} test image {i}")
            truth.append(";".join(d.class_names[c] for c in range(len(d.class_names))
                                  if label[c] > 0.5) if d.multi_label
                         else d.class_names[int(label)])
    if not images:
        raise ValueError("Give image files or --from-dataset. Received: no images")
    outputs = predict(args.saved_model, images, version=args.version)
    multi = "predicted_labels" in outputs
    right = 0
    for i, (name, true) in enumerate(zip(names, truth)):
        top = ", ".join(f"{label.decode()} {score:.3f}" for label, score in
                        zip(outputs["labels"][i][:3], outputs["scores"][i][:3]))
        note = "" if true is None else f" (true: {true})"
        answer = outputs["predicted_labels"][i].decode() if multi else \
            outputs["labels"][i][0].decode()
        right += true is not None and answer == true
        print(f"{name}{note}: " + (f"labels {answer or '(none)'}; top {top}" if multi else top))
    if any(t is not None for t in truth):
        known = sum(t is not None for t in truth)
        what = "label sets exactly" if multi else "dataset images"
        print(f"{right} of {known} {what} right through the export")
