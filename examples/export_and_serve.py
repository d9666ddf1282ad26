"""Export a trained model for TF Serving, verify it, and show what a client sends.

Takes the ``best.keras`` of a `kres train` run (by default it trains a small
ResNet on Fashion-MNIST first), exports a new version under ``--out`` with
`kres.export` (the SavedModel is loaded back through TensorFlow's
C API, the loader TF Serving uses, and compared with the Keras model before
the version is published), then classifies test images through the export
and prints the REST and gRPC requests a TF Serving client would send for the
same images.

    python examples/export_and_serve.py --model runs/<run>/best.keras
    python examples/export_and_serve.py --smoke --out /tmp/e
"""

import argparse
import base64
import json
import os

import tensorflow as tf

import kres
from kres import training


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a .keras file from a kres train run "
                                        "(default: train a small one first)")
    parser.add_argument("--name", default="fashion_mnist_resnet")
    parser.add_argument("--out", default="saved_models")
    parser.add_argument("--count", type=int, default=4, help="test images to classify")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--smoke", action="store_true")
    return parser.parse_args(argv)


def train_small(args):
    """A ResNet-8 on Fashion-MNIST: 1 epoch on a subset (a few hundred images in smoke mode)."""
    subset = 256 if args.smoke else 10_000
    config = training.TrainConfig(
        model="cifar_resnet20", dataset="fashion_mnist", model_overrides={"depths": (1, 1, 1)},
        recipe_overrides={"epochs": 1, "batch_size": 64, "augment": "none"},
        subset=subset, val_size=128 if args.smoke else 2000, data_dir=args.data_dir)
    run_dir = os.path.join(args.out, "_training_run")
    kres.train(config, run_dir=run_dir, verbose=0 if args.smoke else "auto")
    return os.path.join(run_dir, "best.keras")


def test_images(args):
    data = kres.data.sources.load("fashion_mnist", data_dir=args.data_dir)
    examples = [(image.numpy(), int(label)) for image, label in data.test.take(args.count)]
    pngs = [tf.io.encode_png(image).numpy() for image, _ in examples]
    return pngs, [label for _, label in examples], data.class_names


def main(argv=None):
    args = parse_args(argv)
    model_path = args.model or train_small(args)
    version_dir = kres.export(model_path, os.path.join(args.out, args.name))
    print(f"exported and verified through the C API: {version_dir}")
    with open(os.path.join(version_dir, "kres.json")) as f:
        meta = json.load(f)
    print(f"preprocessing in the graph: {meta.get('preprocessing')}")

    pngs, labels, class_names = test_images(args)
    outputs = kres.serving.predict(os.path.join(args.out, args.name), pngs)
    for i, (classes, scores) in enumerate(zip(outputs["classes"], outputs["scores"])):
        print(f"test image {i}: predicted {class_names[classes[0]]} ({scores[0]:.3f}), "
              f"true {class_names[labels[i]]}")

    # What a TF Serving client sends for the same images.
    rest = {"signature_name": "serving_default",
            "instances": [{"b64": base64.b64encode(p).decode()} for p in pngs[:1]]}
    model_dir = os.path.abspath(os.path.join(args.out, args.name))
    print(f"\nREST (docker run -p 8501:8501 -v {model_dir}:/models/{args.name} "
          f"-e MODEL_NAME={args.name} tensorflow/serving):")
    print(f"  curl -d '{json.dumps(rest)[:120]}...' \\\n"
          f"    http://localhost:8501/v1/models/{args.name}:predict")
    print("\ngRPC (port 8500), with tensorflow-serving-api:")
    print(f"""  request = predict_pb2.PredictRequest()
  request.model_spec.name = "{args.name}"
  request.model_spec.signature_name = "serving_default"
  request.inputs["images"].CopyFrom(tf.make_tensor_proto(png_bytes_list))
  stub.Predict(request, 10.0).outputs["classes"]""")
    return outputs


if __name__ == "__main__":
    main()
