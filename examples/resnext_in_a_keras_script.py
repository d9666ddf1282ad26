"""The everyday use: a kres ResNeXt in a plain Keras script.

`kres.ResNeXt29_32x4d(...)` is an ordinary Functional `keras.Model`: this
script loads Fashion-MNIST with TensorFlow Datasets (prepared offline from
Debian's files by `kres.data.sources.ensure_prepared`; any tfds dataset works the
same), compiles and fits it with plain Keras, evaluates it, saves it to
``.keras`` and loads it back with ``safe_mode=True``. Nothing else of kres
is involved.

    python examples/resnext_in_a_keras_script.py   # 3 x 10,000 images: 11 min (2-core Intel)
    python examples/resnext_in_a_keras_script.py --smoke --out /tmp/r
"""

import argparse
import os

import keras
import tensorflow as tf
import tensorflow_datasets as tfds

import kres


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-examples", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", default="runs/resnext-keras-script")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs, args.train_examples, args.batch_size = 1, 256, 64
    return args


def main(argv=None):
    args = parse_args(argv)
    data_dir = args.data_dir or kres.data.data_dir_for("fashion_mnist")
    kres.data.ensure_prepared("fashion_mnist", data_dir)  # offline copy of tfds's fashion_mnist
    train, test = tfds.load("fashion_mnist", split=[f"train[:{args.train_examples}]", "test"],
                            data_dir=data_dir, as_supervised=True)

    def scale(image, label):
        return tf.cast(image, tf.float32) / 255.0, label

    train = train.map(scale).shuffle(10_000, seed=0).batch(args.batch_size).prefetch(2)
    test = test.map(scale).batch(256)
    if args.smoke:
        test = test.take(1)

    # A ResNeXt-29 32x4d, one block per stage in smoke mode.
    model = kres.ResNeXt29_32x4d(classes=10, input_shape=(28, 28, 1),
                                 **({"depths": (1, 1, 1)} if args.smoke else {}))
    steps = -(-args.train_examples // args.batch_size) * args.epochs
    learning_rate = keras.optimizers.schedules.CosineDecay(0.05, decay_steps=steps)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train, epochs=args.epochs, verbose=2 if args.smoke else "auto")
    loss, accuracy = model.evaluate(test, verbose=0)
    print(f"test accuracy {accuracy:.4f} (loss {loss:.4f})")

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "resnext29_32x4d.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    images, _ = next(iter(test))
    difference = float(tf.reduce_max(tf.abs(reloaded(images) - model(images))))
    print(f"saved to {path}; reloaded with safe_mode=True, max output difference {difference:.2e}")
    return accuracy, difference


if __name__ == "__main__":
    main()
