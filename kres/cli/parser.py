"""The ``kres`` command line.

    kres models [PATTERN ...]      name, parameters and multiply-accumulates
    kres summary NAME              Keras summary of one model
    kres train --model M --dataset D [--recipe R --epochs N ...]
    kres train --resume RUN_DIR    continue an interrupted run
    kres lr-find --model M --dataset D [--recipe R --optimizer O ...] [--out DIR]
    kres evaluate RUN_OR_MODEL --dataset D [--report]
    kres explain RUN_OR_MODEL IMAGE ... --out DIR [--stage C<k>] [--class C] [--method M]
    kres tune --space S --dataset D [--tuner T --max-trials N --budget-mmacs M
              --time-budget MIN --executions-per-trial N ...]
    kres tune --resume DIR
    kres export --model RUN_OR_MODEL --name NAME [--version N] [--explain [C<k>]]
    kres predict --saved-model saved_models/NAME IMAGE ...

TensorFlow is imported only by the commands that need it (``kres --help`` and
``kres models`` never load it), and its start-up logging is hidden unless
``--verbose`` (or ``KRES_VERBOSE=1``) asks for it; if TensorFlow fails to
load, what it printed is shown with the error.
"""

import argparse
import ast
import logging
import os
import sys

from kres.backends import check_backend, has_tensorflow, keras_backend, missing_tensorflow
from kres.cli import commands
from kres.native_output import native_stderr_hidden


def _parse_override(text):
    """``key=value`` with a Python literal value (``depths=(5,5,5)``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE. Received: {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def _output_flags():
    """The flags every command takes: how much it prints."""
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("--quiet", action="store_true",
                       help="no progress bars, only the command's result")
    flags.add_argument("--verbose", action="store_true",
                       default=os.environ.get("KRES_VERBOSE", "") not in ("", "0"),
                       help="also show TensorFlow's start-up logging (or KRES_VERBOSE=1)")
    return flags


def _parser():
    parser = argparse.ArgumentParser(
        prog="kres", description="Classic image-classification networks for Keras 3.")
    # Its own dest: `kres export --version 7` names the served model's version.
    parser.add_argument("--version", dest="show_version", action="store_true",
                        help="print the version and exit")
    commands = parser.add_subparsers(dest="command")
    output = _output_flags()

    def add(name, **kwargs):
        return commands.add_parser(name, parents=[output], **kwargs)

    for add_flags in (_models_flags, _summary_flags, _train_flags, _lr_find_flags,
                      _evaluate_flags, _explain_flags, _tune_flags, _export_flags,
                      _predict_flags):
        add_flags(add)
    return parser


def _models_flags(add):
    """The flags of `kres models`."""
    models = add(
        "models", help="list the models with their parameters and multiply-accumulates")
    models.add_argument("patterns", nargs="*", default=["*"],
                        help="shell-style name filters, e.g. 'resnext*' (default: all)")
    models.add_argument("--names-only", action="store_true", help="print names only")


def _summary_flags(add):
    """The flags of `kres summary`."""
    summary = add("summary", help="print the Keras summary of one model")
    summary.add_argument("name", help="a registry name, e.g. cifar_resnet20")
    summary.add_argument("--classes", type=int, default=None, help="number of classes")
    summary.add_argument("--input-size", type=int, default=None,
                         help="input height and width (default: the model's)")
    summary.add_argument("--channels", type=int, default=3, help="input channels")
    summary.add_argument("--set", dest="overrides", action="append", default=[],
                         type=_parse_override, metavar="FIELD=VALUE",
                         help="override a spec field, e.g. --set depths=(5,5,5)")


def _train_flags(add):
    """The flags of `kres train`."""
    train = add("train", help="train a model on a dataset (model.fit)")
    _add_run_flags(train)
    train.add_argument("--epochs", type=int, help="override the recipe's epochs")
    train.add_argument("--lr", "--learning-rate", dest="lr", type=_rate_or_auto,
                       help="override the recipe's learning rate; auto: run the range test "
                            "(kres lr-find) in the run directory first and train with its rate")
    train.add_argument("--patience", type=int, help="early-stopping patience in epochs")
    train.add_argument("--cluster-timeout", type=float, metavar="SECONDS",
                       help="multi-worker: how long to wait for the other workers (300)")
    train.add_argument("--worker-restarts", type=int, default=3, metavar="N",
                       help="multi-worker: when another worker is lost, restart this one to "
                            "wait for it and resume, up to N times in a row (3)")
    train.add_argument("--out", help="run directory (default runs/<model>-<dataset>-<time>)")
    train.add_argument("--resume", metavar="RUN_DIR",
                       help="continue the unfinished run in RUN_DIR with its saved config")


def _lr_find_flags(add):
    """The flags of `kres lr-find`: `kres train`'s that shape the run, and the ramp."""
    finder = add("lr-find", help="the learning-rate range test: loss against rate (a PNG) "
                                 "and a suggested rate for a model, dataset and recipe")
    _add_run_flags(finder)
    finder.add_argument("--start", type=float, default=1e-6, help="first rate (1e-6)")
    finder.add_argument("--end", type=float, default=10.0, help="last rate (10)")
    finder.add_argument("--steps", type=int, default=300,
                        help="batches from --start to --end (300; it stops at divergence)")
    finder.add_argument("--out", help="folder for lr_find.png and lr_find.json (default "
                                      "runs/lr-find-<model>-<dataset>-<time>)")


def _rate_or_auto(text):
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a learning rate such as 0.1, or auto. Received: {text!r}") from None


def _add_run_flags(parser):
    """The flags of `kres train` and `kres lr-find` that define a run."""
    parser.add_argument("--model", help="registry name, e.g. cifar_resnet20 (with --weights "
                                        "RUN/best.keras: that run's model by default)")
    parser.add_argument("--dataset", help="tfds name (fashion_mnist, cifar10, ...) or a folder "
                                          "root/<split>/<class>/*.jpg")
    parser.add_argument("--recipe", default=None,
                        help="he2015-cifar (the default), xie2016-cifar, wrn-cifar, "
                             "imagenet-step, imagenet-cosine, transfer (the default with "
                             "--weights)")
    parser.add_argument("--weights", help="start from pretrained weights: imagenet, or a "
                                          ".keras, .weights.h5, keras.applications .h5 or timm "
                                          ".safetensors file (a new classifier for the dataset)")
    parser.add_argument("--skip-bad-images", action="store_true",
                        help="image folders: train without the files that do not decode "
                             "(listed in the run's skipped.json) instead of refusing")
    parser.add_argument("--class-weights", action="store_true",
                        help="image folders: weigh the classes' losses by their rarity")
    parser.add_argument("--labels", metavar="FILE.csv",
                        help="image folders: the labels of a CSV file, rows path,label or "
                             "path,label1;label2 (paths relative to the folder) instead of "
                             "class folders; several labels per image train a multi-label "
                             "model (sigmoid outputs, mAP and F1)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="multi-label: an image's labels are the classes of probability "
                             "at least this (recorded in the model; default 0.5)")
    parser.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    parser.add_argument("--weight-decay", type=float,
                        help="override the recipe's weight decay")
    parser.add_argument("--optimizer", choices=("sgd", "adamw", "lamb", "lion"),
                        help="override the recipe's optimizer (set its --lr and --weight-decay "
                             "too: AdamW's are about 1e-3 and 0.05, Lion's 3-10x smaller and "
                             "larger)")
    parser.add_argument("--teacher", metavar="MODEL",
                        help="distil from a teacher: a kres run's .keras (its best.keras) "
                             "of the same classes and input (--set-recipe "
                             "distill_temperature=4 --set-recipe distill_weight=0.5)")
    parser.add_argument("--ema", action="store_const", const=True,
                        help="validate, checkpoint and export an exponential moving average "
                             "of the weights and batch-norm statistics")
    parser.add_argument("--set-recipe", dest="recipe_overrides", action="append", default=[],
                        type=_parse_override, metavar="FIELD=VALUE",
                        help="override any recipe field, e.g. --set-recipe label_smoothing=0.1")
    parser.add_argument("--set", dest="model_overrides", action="append", default=[],
                        type=_parse_override, metavar="FIELD=VALUE",
                        help="override a model spec field, e.g. --set drop_path_rate=0.1")
    parser.add_argument("--augment", action="append", metavar="NAME",
                        choices=("crop_flip", "crop", "imagenet", "none", "randaugment",
                                 "augmix"),
                        help="training augmentation: crop_flip, crop, imagenet or none "
                             "(default: the dataset's), and/or randaugment or augmix after it "
                             "(--augment randaugment --set-recipe randaugment_magnitude=7)")
    _add_data_flags(parser)
    parser.add_argument("--precision", default="auto",
                        help="auto (mixed_float16 on GPU, mixed_bfloat16 on a CPU with AMX "
                             "or AVX512-BF16, else float32), float32, mixed_float16, "
                             "mixed_bfloat16")
    parser.add_argument("--xla", dest="jit_compile", action="store_const", const=True,
                        default="auto", help="compile with XLA")
    parser.add_argument("--no-xla", dest="jit_compile", action="store_const", const=False,
                        help="never compile with XLA")
    parser.add_argument("--strategy", default="auto",
                        help="auto, default, mirrored (all GPUs), multi-worker (the machines "
                             "of TF_CONFIG or the Slurm job; docs/training.md)")


def _evaluate_flags(add):
    """The flags of `kres evaluate`."""
    evaluate = add("evaluate", help="score a saved .keras model on a dataset")
    evaluate.add_argument("model_path", metavar="RUN_OR_MODEL",
                          help="a .keras file or a run directory (its best.keras)")
    evaluate.add_argument("--dataset", required=True, help="dataset name or image folder")
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"))
    evaluate.add_argument("--data-dir", help="the dataset's tfds data directory")
    evaluate.add_argument("--labels", metavar="FILE.csv",
                          help="image folders: a CSV file of path,label rows (default: the "
                               "run's own, for the folder it trained on)")
    evaluate.add_argument("--flip", action="store_true",
                          help="average each image's and its mirror image's predictions")
    evaluate.add_argument("--report", action="store_true",
                          help="per-class precision, recall and F1, the confusion matrix and "
                               "the most confident mistakes, written to --out")
    evaluate.add_argument("--out", help="the report's folder (default: report-<dataset>-<split> "
                                        "beside the model)")
    evaluate.add_argument("--mistakes", type=int, default=16,
                          help="how many of the most confident mistakes the report shows")


def _explain_flags(add):
    """The flags of `kres explain`."""
    explain = add("explain", help="Grad-CAM heatmaps of a model's decisions, as overlays")
    explain.add_argument("model_path", metavar="RUN_OR_MODEL",
                         help="a .keras file or a run directory (its best.keras)")
    explain.add_argument("images", nargs="+", help="image files (JPEG, PNG, BMP, GIF, WebP)")
    explain.add_argument("--out", required=True, help="the folder for the overlays")
    explain.add_argument("--stage", help="the stage weighed, C<k> (default: the deepest)")
    explain.add_argument("--method", choices=("gradcam", "gradcam++"), default="gradcam",
                         help="gradcam (the default) or gradcam++")
    explain.add_argument("--class", dest="class_name",
                         help="the class to explain, by name or number (default: the top one)")


def _tune_flags(add):
    """The flags of `kres tune`."""
    tune = add("tune", help="keras-tuner search over depth and cardinality")
    tune.add_argument("--space", help="cifar-resnet, resnext-cifar, resnext-imagenet, wrn-cifar")
    tune.add_argument("--dataset", help="dataset name or image folder")
    tune.add_argument("--tuner", default="random", help="random, hyperband, bayesian, grid")
    tune.add_argument("--recipe", default="he2015-cifar", help="training recipe of every trial")
    tune.add_argument("--set-recipe", dest="recipe_overrides", action="append", default=[],
                      type=_parse_override, metavar="FIELD=VALUE", help="recipe field to change")
    tune.add_argument("--set", dest="model_overrides", action="append", default=[],
                      type=_parse_override, metavar="FIELD=VALUE",
                      help="spec field every network shares, e.g. --set widths=(16,32,64)")
    tune.add_argument("--max-epochs", type=int, default=10, help="epochs per trial (at most)")
    tune.add_argument("--max-trials", type=int, default=10, help="trials (not for hyperband)")
    for flag, help_text in (("depths", "depths to search, e.g. 11,20,29"),
                            ("cardinalities", "cardinalities, e.g. 1,2,4,8"),
                            ("widths-per-group", "widths per group, e.g. 4,8,16"),
                            ("widen-factors", "Wide ResNet widen factors, e.g. 1,2,4"),
                            ("batch-sizes", "also search the batch size among these")):
        tune.add_argument(f"--{flag}", type=_int_list, help=help_text)
    tune.add_argument("--tune-training", action="store_true",
                      help="also search learning rate, weight decay, label smoothing")
    tune.add_argument("--budget-mmacs", type=float, help="skip networks above this many MMACs")
    tune.add_argument("--budget-mparams", type=float, help="skip networks above this many M params")
    tune.add_argument("--time-budget", type=float, metavar="MINUTES",
                      help="start no trial that cannot finish within this many minutes")
    tune.add_argument("--executions-per-trial", type=int, default=1, metavar="N",
                      help="seeds per configuration (score: their mean; report: their spread)")
    tune.add_argument("--equal-complexity", action="store_true",
                      help="width per group chosen so every cardinality costs about the same")
    _add_data_flags(tune)
    tune.add_argument("--out", help="search directory (default runs/tune-<space>-<data>-<time>)")
    tune.add_argument("--resume", metavar="DIR", help="continue the search in DIR")
    tune.add_argument("--chief", action="store_true",
                      help="serve the oracle of a distributed search (with --port)")
    tune.add_argument("--worker", metavar="ID", help="run trials for the chief at --oracle")
    tune.add_argument("--oracle", metavar="HOST:PORT", help="the chief's address (workers)")
    tune.add_argument("--port", type=int, default=8000, help="the chief's port (default 8000)")
    tune.add_argument("--parallel", metavar="N|gpus",
                      help="run trials side by side on this machine: a chief and N workers, "
                           "or one worker per GPU (gpus), each seeing only its GPU")


def _export_flags(add):
    """The flags of `kres export`."""
    export = add("export", help="export a .keras model for TF Serving, LiteRT or ONNX")
    export.add_argument("--model", required=True,
                        help="a .keras file or a run directory (its best.keras)")
    export.add_argument("--name", required=True, help="the served model's name")
    export.add_argument("--format", default="saved_model", choices=("saved_model", "tflite",
                                                                    "onnx"),
                        help="saved_model (TF Serving, the default), tflite (LiteRT), onnx")
    export.add_argument("--quantize", default="none",
                        choices=("none", "float16", "dynamic", "int8"),
                        help="LiteRT: none, float16 weights, dynamic (int8 weights), int8 "
                             "(full-integer, calibrated)")
    export.add_argument("--input-type", default="uint8", choices=("uint8", "float32"),
                        help="LiteRT and ONNX: the pixels' type (default uint8)")
    export.add_argument("--calibration-data", metavar="SOURCE",
                        help="images to calibrate int8 and check the file on: a dataset, a "
                             "folder of images or a .npy file (default: the run's dataset)")
    export.add_argument("--calibration-samples", type=int, default=256,
                        help="how many calibration images (default 256)")
    export.add_argument("--dataset", metavar="NAME",
                        help="for a model that does not carry its normalisation (one not "
                             "trained by kres): the dataset whose statistics it was trained "
                             "with, e.g. cifar10")
    export.add_argument("--data-dir", help="the calibration dataset's tfds data directory")
    export.add_argument("--version", type=int, help="version number (default: the next one)")
    export.add_argument("--out", default="saved_models", help="root folder (default saved_models)")
    export.add_argument("--top-k", type=int, default=None,
                        help="classes returned per image (default 5, or all if fewer)")
    export.add_argument("--grouped-conv", choices=("split", "native", "auto"), default="split",
                        help="how grouped convolutions are written: split (the default, runs "
                             "on every server), native, auto")
    export.add_argument("--verify", dest="verify", action="store_true", default=True,
                        help="load the new version through TF's C API and compare it with "
                             "the model before publishing it (the default)")
    export.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip that check")
    export.add_argument("--explain", nargs="?", const=True, default=False, metavar="STAGE",
                        help="add the explain signature (SavedModels): the classes and the top "
                             "class's Grad-CAM heatmap, at STAGE (C<k>; default the deepest)")


def _predict_flags(add):
    """The flags of `kres predict`."""
    predict = add("predict", help="classify images with an exported model")
    predict.add_argument("images", nargs="*", help="image files (JPEG, PNG, BMP, GIF)")
    predict.add_argument("--saved-model", "--export", dest="saved_model", required=True,
                         help="saved_models/<name>, or a LiteRT or ONNX export's folder")
    predict.add_argument("--version", type=int, help="version (default: the highest)")
    predict.add_argument("--from-dataset", metavar="DATASET",
                         help="also send the first --count test images of DATASET, as PNG")
    predict.add_argument("--count", type=int, default=8, help="images for --from-dataset")
    predict.add_argument("--data-dir", help="the dataset's tfds data directory")
    predict.add_argument("--labels", metavar="FILE.csv",
                         help="--from-dataset FOLDER: its CSV file of path,label rows")


def _add_data_flags(parser):
    """The data and input flags that `kres train` and `kres tune` share."""
    parser.add_argument("--subset", type=int, help="train on the first N examples")
    parser.add_argument("--val-size", type=int, help="examples held out for validation")
    parser.add_argument("--image-size", type=int, help="input height and width")
    parser.add_argument("--channels", type=int, choices=(1, 3), help="input channels")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--data-dir", help="the dataset's tfds data directory")


def _int_list(text):
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers such as 1,2,4. Received: {text!r}") from None


def _load_backend(verbose):
    """Checks the Keras backend, imports it and Keras, and initialises the devices,
    quietly unless `verbose`.

    TensorFlow is imported where it is installed (its tf.data pipelines feed
    any backend); on JAX without it, nothing of TensorFlow is needed. Quiet
    also means the Python-side warnings of absl's logger (TensorFlow
    Datasets' notes on its folders) are not shown; errors still are.
    """
    backend = check_backend()
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        logging.getLogger("absl").setLevel(logging.ERROR)
    with native_stderr_hidden(not verbose):
        if backend == "tensorflow" or has_tensorflow():
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")
        import keras  # noqa: F401

        import kres.layers  # noqa: F401  (registers kres's layers)


COMMANDS = {name: getattr(commands, name.replace("-", "_")) for name in
            ("models", "summary", "train", "lr-find", "evaluate", "explain", "export",
             "predict", "tune")}
# The commands that need no Keras backend.
WITHOUT_BACKEND = {"models"}


def main(argv=None):
    """Entry point of the ``kres`` console script."""
    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the processes it starts
    if args.show_version or args.command is None:
        if args.show_version:
            from kres.version import __version__

            print(f"kres {__version__}")
        else:
            _parser().print_help()
        return 0
    try:
        if args.command not in WITHOUT_BACKEND:
            _load_backend(args.verbose)
        COMMANDS[args.command](args)
    except (ValueError, RuntimeError) as error:
        print(f"kres {args.command}: error: {error}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as error:
        if not missing_tensorflow(error):
            raise
        print(f"kres {args.command}: error: this needs {error.name.split('.')[0]}, which is "
              f"not installed here (Keras backend {keras_backend()!r}): pip install "
              f"{error.name.split('.')[0].replace('_', '-')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C, or `timeout -s INT`: a line, not a traceback
        resume = (" (kres train --resume RUN_DIR, the run directory printed above, continues "
                  "from its last finished epoch)") if args.command == "train" else ""
        print(f"\nkres {args.command}: interrupted{resume}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `kres models | head`: the reader has all it wants
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115  (Python flushes stderr at exit)
        return 0
    return 0
