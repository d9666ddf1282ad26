"""The ``kres`` command line.

    kres models [PATTERN ...]      name, parameters and multiply-accumulates
    kres summary NAME              Keras summary of one model
    kres train --model M --dataset D [--recipe R --epochs N ...]
    kres train --resume RUN_DIR    continue an interrupted run
    kres evaluate MODEL.keras --dataset D
    kres tune --space S --dataset D [--tuner T --max-trials N --budget-mmacs M ...]
    kres tune --resume DIR
    kres export --model MODEL.keras --name NAME [--version N]
    kres predict --saved-model saved_models/NAME IMAGE ...
"""

import argparse
import ast
import json
import os
import sys


def _parse_override(text):
    """``key=value`` with a Python literal value (``depths=(5,5,5)``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE. Received: {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def _parser():
    parser = argparse.ArgumentParser(
        prog="kres", description="Classic image-classification networks for Keras 3.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command")

    models = commands.add_parser(
        "models", help="list the models with their parameters and multiply-accumulates")
    models.add_argument("patterns", nargs="*", default=["*"],
                        help="shell-style name filters, e.g. 'resnext*' (default: all)")
    models.add_argument("--names-only", action="store_true",
                        help="print names only, without building the models")

    summary = commands.add_parser("summary", help="print the Keras summary of one model")
    summary.add_argument("name", help="a registry name, e.g. cifar_resnet20")
    summary.add_argument("--classes", type=int, default=None, help="number of classes")
    summary.add_argument("--input-size", type=int, default=None,
                         help="input height and width (default: the model's)")
    summary.add_argument("--channels", type=int, default=3, help="input channels")
    summary.add_argument("--set", dest="overrides", action="append", default=[],
                         type=_parse_override, metavar="FIELD=VALUE",
                         help="override a spec field, e.g. --set depths=(5,5,5)")
    train = commands.add_parser("train", help="train a model on a dataset (model.fit)")
    train.add_argument("--model", help="registry name, e.g. cifar_resnet20")
    train.add_argument("--dataset", help="tfds name (fashion_mnist, cifar10, ...) or a folder "
                                         "root/<split>/<class>/*.jpg")
    train.add_argument("--recipe", default=None, help="he2015-cifar (default), xie2016-cifar, "
                                                      "wrn-cifar, imagenet-step, imagenet-cosine")
    train.add_argument("--epochs", type=int, help="override the recipe's epochs")
    train.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    train.add_argument("--lr", type=float, help="override the recipe's learning rate")
    train.add_argument("--weight-decay", type=float, help="override the recipe's weight decay")
    train.add_argument("--patience", type=int, help="early-stopping patience in epochs")
    train.add_argument("--set-recipe", dest="recipe_overrides", action="append", default=[],
                       type=_parse_override, metavar="FIELD=VALUE",
                       help="override any recipe field, e.g. --set-recipe label_smoothing=0.1")
    train.add_argument("--set", dest="model_overrides", action="append", default=[],
                       type=_parse_override, metavar="FIELD=VALUE",
                       help="override a model spec field, e.g. --set drop_path_rate=0.1")
    train.add_argument("--augment", choices=("crop_flip", "crop", "imagenet", "none"),
                       help="training augmentation (default: the dataset's)")
    _add_data_flags(train)
    train.add_argument("--precision", default="auto",
                       help="auto (mixed_float16 on GPU), float32, mixed_float16, mixed_bfloat16")
    train.add_argument("--xla", dest="jit_compile", action="store_const", const=True,
                       default="auto", help="compile with XLA")
    train.add_argument("--no-xla", dest="jit_compile", action="store_const", const=False,
                       help="never compile with XLA")
    train.add_argument("--strategy", default="auto",
                       help="auto, default, mirrored (all GPUs), multi-worker")
    train.add_argument("--out", help="run directory (default runs/<model>-<dataset>-<time>)")
    train.add_argument("--resume", metavar="RUN_DIR",
                       help="continue the unfinished run in RUN_DIR with its saved config")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    evaluate = commands.add_parser("evaluate", help="score a saved .keras model on a dataset")
    evaluate.add_argument("model_path", help="a .keras file, e.g. runs/.../best.keras")
    evaluate.add_argument("--dataset", required=True, help="dataset name or image folder")
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"))
    evaluate.add_argument("--data-dir", help="the dataset's tfds data directory")
    tune = commands.add_parser("tune", help="keras-tuner search over depth and cardinality")
    tune.add_argument("--space", help="cifar-resnet, resnext-cifar, resnext-imagenet, wrn-cifar")
    tune.add_argument("--dataset", help="dataset name or image folder")
    tune.add_argument("--tuner", default="random", help="random, hyperband, bayesian, grid")
    tune.add_argument("--recipe", default="he2015-cifar", help="training recipe of every trial")
    tune.add_argument("--set-recipe", dest="recipe_overrides", action="append", default=[],
                      type=_parse_override, metavar="FIELD=VALUE", help="recipe field to change")
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

    export = commands.add_parser("export", help="export a .keras model for TF Serving")
    export.add_argument("--model", required=True, help="a .keras file, e.g. runs/.../best.keras")
    export.add_argument("--name", required=True, help="the served model's name")
    export.add_argument("--version", type=int, help="version number (default: the next one)")
    export.add_argument("--out", default="saved_models", help="root folder (default saved_models)")
    export.add_argument("--top-k", type=int, default=None,
                        help="classes returned per image (default 5, or all if fewer)")
    export.add_argument("--verify", dest="verify", action="store_true", default=True,
                        help="load the new version through TF's C API and compare it with "
                             "the model before publishing it (the default)")
    export.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip that check")

    predict = commands.add_parser("predict", help="classify images with an exported model")
    predict.add_argument("images", nargs="*", help="image files (JPEG, PNG, BMP, GIF)")
    predict.add_argument("--saved-model", required=True, help="saved_models/<name>")
    predict.add_argument("--version", type=int, help="version (default: the highest)")
    predict.add_argument("--from-dataset", metavar="DATASET",
                         help="also send the first --count test images of DATASET, as PNG")
    predict.add_argument("--count", type=int, default=8, help="images for --from-dataset")
    predict.add_argument("--data-dir", help="the dataset's tfds data directory")
    return parser


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


def _tune(kres, args):
    from kres import tune

    if args.chief and args.worker:
        raise ValueError("A process is either the chief or a worker. Received: --chief and "
                         f"--worker {args.worker}")
    if args.chief:
        os.environ.update(KERASTUNER_TUNER_ID="chief", KERASTUNER_ORACLE_IP="0.0.0.0",
                          KERASTUNER_ORACLE_PORT=str(args.port))
    elif args.worker:
        host, _, port = (args.oracle or "").rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"A worker needs --oracle HOST:PORT. Received: --oracle {args.oracle}")
        os.environ.update(KERASTUNER_TUNER_ID=args.worker, KERASTUNER_ORACLE_IP=host,
                          KERASTUNER_ORACLE_PORT=port)
    if args.resume:
        config, out = _saved(tune.SearchConfig, args.resume, "search.json"), args.resume
    else:
        if not args.space or not args.dataset:
            raise ValueError("kres tune needs --space and --dataset (or --resume DIR).")
        config = tune.SearchConfig(
            space=args.space, dataset=args.dataset, tuner=args.tuner, recipe=args.recipe,
            recipe_overrides=dict(args.recipe_overrides), max_epochs=args.max_epochs,
            max_trials=args.max_trials, depths=args.depths, cardinalities=args.cardinalities,
            widths_per_group=args.widths_per_group, widen_factors=args.widen_factors,
            tune_training=args.tune_training, batch_sizes=args.batch_sizes,
            budget_mmacs=args.budget_mmacs, budget_mparams=args.budget_mparams,
            equal_complexity=args.equal_complexity, subset=args.subset,
            val_size=args.val_size, image_size=args.image_size, channels=args.channels,
            seed=args.seed, data_dir=args.data_dir)
        out = args.out or tune.default_out_dir(config)
    print(f"kres tune: {config.space} on {config.dataset} with {config.tuner}; "
          f"search directory {out}", flush=True)
    rows = tune.search(config, out, verbose="auto")
    if rows:
        best = rows[0]
        point = ", ".join(f"{k} {best[k]}" for k in ("depths", "cardinality",
                                                      "width_per_group", "widen_factor")
                          if best.get(k) is not None)
        print(f"best trial {best['trial_id']} ({point}): val accuracy "
              f"{best['best_val_accuracy']:.4f}; report {os.path.join(out, 'trials.md')}, "
              f"model {os.path.join(out, 'best.keras')}")


def _export(kres, args):
    from kres.export import export_run

    path = export_run(args.model, os.path.join(args.out, args.name), args.version,
                      top_k=args.top_k, verify=args.verify)
    print(f"kres export: wrote {path}{' (verified through the C API)' if args.verify else ''}; "
          f"TF Serving config {os.path.join(args.out, 'models.config')}")


def _predict(kres, args):
    from kres.export import predict

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

        from kres import data

        d = data.load(args.from_dataset, data_dir=args.data_dir)
        for i, (image, label) in enumerate(d.test.take(args.count)):
            images.append(tf.io.encode_png(image).numpy())
            names.append(f"{args.from_dataset} test image {i}")
            truth.append(d.class_names[int(label)])
    if not images:
        raise ValueError("Give image files or --from-dataset. Received: no images")
    outputs = predict(args.saved_model, images, version=args.version)
    right = 0
    for name, labels, scores, true in zip(names, outputs["labels"], outputs["scores"], truth):
        top = ", ".join(f"{label.decode()} {score:.3f}" for label, score in
                        zip(labels[:3], scores[:3]))
        note = "" if true is None else f" (true: {true})"
        right += true is not None and labels[0].decode() == true
        print(f"{name}{note}: {top}")
    if any(t is not None for t in truth):
        known = sum(t is not None for t in truth)
        print(f"{right} of {known} dataset images right through the export")


def _saved(config_class, directory, filename):
    """The config saved in a run or search directory, for --resume."""
    path = os.path.join(directory, filename)
    if not os.path.isfile(path):
        raise ValueError(f"No {filename} in the directory to resume. Received: --resume "
                         f"{directory}")
    with open(path) as f:
        return config_class(**json.load(f))


def _train_config(args):
    """The TrainConfig of `kres train`'s flags (or of the run to resume)."""
    from kres.train import TrainConfig

    if args.resume:
        return _saved(TrainConfig, args.resume, "config.json"), args.resume
    if not args.model or not args.dataset:
        raise ValueError("kres train needs --model and --dataset (or --resume RUN_DIR).")
    recipe = dict(args.recipe_overrides)
    for flag, field in (("epochs", "epochs"), ("batch_size", "batch_size"),
                        ("lr", "learning_rate"), ("weight_decay", "weight_decay"),
                        ("patience", "patience"), ("augment", "augment")):
        if getattr(args, flag) is not None:
            recipe[field] = getattr(args, flag)
    config = TrainConfig(
        model=args.model, dataset=args.dataset, recipe=args.recipe or "he2015-cifar",
        recipe_overrides=recipe, model_overrides=dict(args.model_overrides),
        image_size=args.image_size, channels=args.channels, subset=args.subset,
        val_size=args.val_size, seed=args.seed, precision=args.precision,
        jit_compile=args.jit_compile, strategy=args.strategy, data_dir=args.data_dir)
    return config, args.out


def _train(kres, args):
    from kres.train import default_run_dir, train

    config, run_dir = _train_config(args)
    run_dir = run_dir or default_run_dir(config)
    print(f"kres train: {config.model} on {config.dataset}, recipe {config.recipe}; "
          f"run directory {run_dir}", flush=True)
    results = train(config, run_dir, verbose=0 if args.quiet else "auto")
    print(f"test accuracy {results['test_accuracy']:.4f} after {results['epochs_run']} epochs "
          f"({results['train_images_per_second']:.0f} training images/s); best model "
          f"{os.path.join(run_dir, 'best.keras')}, curves {os.path.join(run_dir, 'curves.png')}")


def _evaluate(kres, args):
    from kres.train import evaluate

    scores = evaluate(args.model_path, args.dataset, split=args.split, data_dir=args.data_dir)
    order = [k for k in ("accuracy", "top5", "loss") if k in scores]
    print(" ".join(f"{k} {scores[k]:.4f}" for k in order))


def _build(kres, name, args=None):
    kwargs = {}
    if args is not None:
        spec = kres.get_spec(name)
        size = args.input_size or spec.default_size
        kwargs = {"input_shape": (size, size, args.channels), **dict(args.overrides)}
        if args.classes is not None:
            kwargs["classes"] = args.classes
    return kres.build_model(name, **kwargs)


def _models(kres, args):
    names = sorted({n for p in args.patterns for n in kres.list_models(p)})
    if not names:
        raise ValueError(f"No model matches. Received: patterns={args.patterns}")
    if args.names_only:
        print("\n".join(names))
        return
    print(f"{'model':<26}{'params':>14}{'MMACs':>12}  input  classes")
    for name in names:
        spec = kres.get_spec(name)
        model = _build(kres, name)
        print(f"{name:<26}{kres.count_params(model):>14,}{kres.count_macs(model) / 1e6:>12,.1f}"
              f"  {spec.default_size:>5}  {spec.default_classes:>7}", flush=True)
        del model
        import keras

        keras.backend.clear_session()


def _summary(kres, args):
    model = _build(kres, args.name, args)
    model.summary(line_length=110)
    print(f"{args.name}: {kres.count_params(model):,} trainable parameters, "
          f"{kres.count_macs(model) / 1e6:,.1f} million multiply-accumulates per image "
          f"at {model.input_shape[1]}x{model.input_shape[2]}")


def main(argv=None):
    """Entry point of the ``kres`` console script."""
    args = _parser().parse_args(argv)
    if args.version or args.command is None:
        import kres

        if args.version:
            print(f"kres {kres.__version__}")
        else:
            _parser().print_help()
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import kres

    try:
        commands = {"models": _models, "summary": _summary, "train": _train,
                    "evaluate": _evaluate, "export": _export, "predict": _predict,
                    "tune": _tune}
        commands[args.command](kres, args)
    except (ValueError, RuntimeError) as error:
        print(f"kres {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
