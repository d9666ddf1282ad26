"""What each ``kres`` command does, given its parsed arguments (`kres.cli` parses them).

Each command imports what it needs when it runs: ``kres models`` reads
`kres.models.catalog` and never loads TensorFlow.
"""

import json
import os
import sys

from kres.backends import require_tensorflow
from kres.cli.serving_commands import export, predict  # noqa: F401  (kres export, kres predict)
from kres.models import catalog


def _progress(args):
    """Keras's `verbose` for a command: its progress bars unless `--quiet`."""
    return 0 if args.quiet else "auto"


def tune(args):
    from kres import tuning

    if args.chief and args.worker:
        raise ValueError("A process is either the chief or a worker. Received: --chief and "
                         f"--worker {args.worker}")
    if args.worker:
        host, _, port = (args.oracle or "").rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"A worker needs --oracle HOST:PORT. Received: --oracle {args.oracle}")
    if args.resume:
        config, out = _saved(tuning.SearchConfig, args.resume, "search.json"), args.resume
    else:
        if not args.space or not args.dataset:
            raise ValueError("kres tune needs --space and --dataset (or --resume DIR).")
        config = tuning.SearchConfig(
            space=args.space, dataset=args.dataset, tuner=args.tuner, recipe=args.recipe,
            recipe_overrides=dict(args.recipe_overrides),
            model_overrides=dict(args.model_overrides), max_epochs=args.max_epochs,
            max_trials=args.max_trials, depths=args.depths, cardinalities=args.cardinalities,
            widths_per_group=args.widths_per_group, widen_factors=args.widen_factors,
            tune_training=args.tune_training, batch_sizes=args.batch_sizes,
            budget_mmacs=args.budget_mmacs, budget_mparams=args.budget_mparams,
            time_budget=args.time_budget, executions_per_trial=args.executions_per_trial,
            equal_complexity=args.equal_complexity, subset=args.subset,
            val_size=args.val_size, image_size=args.image_size, channels=args.channels,
            seed=args.seed, data_dir=args.data_dir)
        out = args.out or _default_dir("tune", config.space, config.dataset)
    if args.parallel is not None:
        from kres.cli import parallel_tune

        if args.chief or args.worker:
            raise ValueError(f"--parallel starts its own chief and workers: drop --chief and "
                             f"--worker. Received: --parallel {args.parallel} with "
                             f"{'--chief' if args.chief else '--worker ' + args.worker}")
        parallel_tune.run(args.argv, out, parallel_tune.parse(args.parallel))
        return
    # keras-tuner reads its distribution settings from the environment.
    if args.chief:
        os.environ.update(KERASTUNER_TUNER_ID="chief", KERASTUNER_ORACLE_PORT=str(args.port),
                          # every address, unless told (kres tune --parallel: this machine's)
                          KERASTUNER_ORACLE_IP=os.environ.get("KERASTUNER_ORACLE_IP", "0.0.0.0"))
    elif args.worker:
        os.environ.update(KERASTUNER_TUNER_ID=args.worker, KERASTUNER_ORACLE_IP=host,
                          KERASTUNER_ORACLE_PORT=port)
    role = " (chief)" if args.chief else f" (worker {args.worker})" if args.worker else ""
    print(f"kres tune{role}: {config.space} on {config.dataset} with {config.tuner}; "
          f"search directory {out}", flush=True)
    rows = tuning.search(config, out, verbose=_progress(args))
    summary = os.path.join(out, "summary.json")
    if rows and os.path.isfile(summary):
        from kres.tuning.report import summary_note

        with open(summary) as f:
            print(summary_note(json.load(f)))
    if rows:
        best = rows[0]
        point = ", ".join(f"{k} {best[k]}" for k in ("depths", "cardinality",
                                                      "width_per_group", "widen_factor")
                          if best.get(k) is not None)
        print(f"best trial {best['trial_id']} ({point}): val accuracy "
              f"{best['best_val_accuracy']:.4f}; report {os.path.join(out, 'trials.md')}, "
              f"model {os.path.join(out, 'best.keras')}")


def _default_dir(*parts):
    from kres.rundir import default_dir

    return default_dir(*parts)


def _saved(config_class, directory, filename):
    """The config saved in a run or search directory, for --resume."""
    path = os.path.join(directory, filename)
    if not os.path.isfile(path):
        raise ValueError(f"No {filename} in the directory to resume. Received: --resume "
                         f"{directory}")
    with open(path) as f:
        return config_class(**json.load(f))


def _saved_name(path):
    """The model name in a ``.keras`` file (kres names a model after its architecture),
    read from the file's config without building it; ``None`` if unreadable."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))["config"]["name"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def _train_config(args):
    """The TrainConfig of `kres train`'s flags (or of the run to resume)."""
    from kres.training.config import TrainConfig

    if getattr(args, "resume", None):
        return _saved(TrainConfig, args.resume, "config.json"), args.resume
    model = args.model
    if not model and args.weights and args.weights.endswith(".keras"):
        from kres.rundir import read_json  # a kres run's model names its architecture

        model = read_json(os.path.join(os.path.dirname(os.path.abspath(args.weights)),
                                       "model.json")).get("model") or _saved_name(args.weights)
    if not model or not args.dataset:
        raise ValueError(f"kres {args.command} needs --model and --dataset"
                         f"{' (or --resume RUN_DIR)' if args.command == 'train' else ''}.")
    recipe = dict(args.recipe_overrides)
    for flag, field in (("epochs", "epochs"), ("batch_size", "batch_size"),
                        ("lr", "learning_rate"), ("weight_decay", "weight_decay"),
                        ("patience", "patience"), ("optimizer", "optimizer"), ("ema", "ema")):
        if getattr(args, flag, None) is not None:
            recipe[field] = getattr(args, flag)
    recipe.update(_augment_fields(args.augment or []))
    config = TrainConfig(
        model=model, dataset=args.dataset,
        recipe=args.recipe or ("transfer" if args.weights else "he2015-cifar"),
        recipe_overrides=recipe, model_overrides=dict(args.model_overrides),
        image_size=args.image_size, channels=args.channels, subset=args.subset,
        val_size=args.val_size, seed=args.seed, precision=args.precision,
        jit_compile=args.jit_compile, strategy=args.strategy, data_dir=args.data_dir,
        weights=args.weights, skip_bad_images=args.skip_bad_images,
        class_weights=args.class_weights, teacher=args.teacher, labels=args.labels,
        threshold=args.threshold)
    _warn_optimizer_settings(config, recipe)
    return config, args.out


def _augment_fields(names):
    """The recipe fields of ``--augment`` flags: a crop-and-flip policy (`augment`)
    and an automatic augmentation after it (`auto_augment`), one of each."""
    from kres.preprocessing import AUTO_AUGMENTATIONS

    fields = {}
    for name in names:
        field = "auto_augment" if name in AUTO_AUGMENTATIONS else "augment"
        if field in fields and fields[field] != name:
            raise ValueError(f"--augment takes one of crop_flip, crop, imagenet, none and one of "
                             f"{', '.join(AUTO_AUGMENTATIONS)}. Received: --augment "
                             f"{fields[field]} --augment {name}")
        fields[field] = name
    return fields


def _warn_optimizer_settings(config, overrides):
    """Warns when the optimizer is changed and the recipe's learning rate or weight
    decay, set for another optimizer, is kept."""
    from kres.training.recipes import RECIPES

    named = RECIPES.get(config.recipe)
    chosen = overrides.get("optimizer")
    if named is None or chosen is None or chosen == named.optimizer:
        return
    kept = [f"{field} {getattr(named, field)}" for field in ("learning_rate", "weight_decay")
            if field not in overrides]
    if kept:
        print(f"kres train: warning: --optimizer {chosen} keeps the recipe {config.recipe}'s "
              f"{' and '.join(kept)}, set for {named.optimizer} (--lr, --weight-decay)",
              file=sys.stderr)


def train(args):
    from kres.training.devices import resolve_precision
    from kres.training.run import train

    config, run_dir = _train_config(args)
    if config.strategy == "multi-worker" and not run_dir:
        raise ValueError("kres train --strategy multi-worker needs --out RUN_DIR, the same on "
                         "every worker. Received: --out unset")
    run_dir = run_dir or _default_dir(config.model, config.dataset)
    start = f" from {config.weights}" if config.weights else ""
    precision, reason = resolve_precision(config.precision)
    if config.precision == "auto":
        precision = f"{precision} (auto: {reason})"
    print(f"kres train: {config.model}{start} on {config.dataset}, recipe {config.recipe}, "
          f"{precision}; run directory {run_dir}", flush=True)
    results = train(config, run_dir=run_dir, verbose=_progress(args),
                    cluster_timeout=args.cluster_timeout, worker_restarts=args.worker_restarts)
    if "worker" in results:
        print(f"kres train: worker {results['worker']} done after {results['epochs_run']} "
              f"epochs; the chief wrote {run_dir}")
        return
    key = "map" if results.get("multi_label") else "accuracy"
    flip = (f" with flip averaging ({results[f'test_{key}_single_view']:.4f} single view)"
            if results.get("test_flip") else "")
    headline = (f"test mAP {results['test_map']:.4f}{flip}, F1 {results['test_f1']:.4f} at "
                f"threshold {results['threshold']:g}" if key == "map" else
                f"test accuracy {results['test_accuracy']:.4f}{flip}")
    pngs = "classes.png" if key == "map" else "confusion.png"
    print(f"{headline} after {results['epochs_run']} epochs "
          f"({results['train_images_per_second']:.0f} training images/s); best model "
          f"{os.path.join(run_dir, 'best.keras')}, curves {os.path.join(run_dir, 'curves.png')}, "
          f"per-class report {os.path.join(run_dir, 'report.json')} ({pngs}, mistakes.png)")


def lr_find(args):
    from kres.training.lr_range import JSON_FILE, PLOT_FILE, lr_find

    config, out = _train_config(args)
    out = out or _default_dir("lr-find", config.model, config.dataset)
    print(f"kres lr-find: {config.model} on {config.dataset}, recipe {config.recipe}: rates "
          f"{args.start:g} to {args.end:g} over at most {args.steps} batches", flush=True)
    found = lr_find(config, out=out, start=args.start, end=args.end, steps=args.steps,
                    verbose=_progress(args))
    print(f"kres lr-find: train with --lr {found.learning_rate:.3g}; wrote "
          f"{os.path.join(out, PLOT_FILE)}, {os.path.join(out, JSON_FILE)}")


def evaluate(args):
    from kres import checks
    from kres.training import report
    from kres.training.evaluation import evaluate

    if not args.report and (args.out is not None or args.mistakes != 16):
        raise ValueError("--out and --mistakes shape the report: add --report. Received: "
                         f"--out={args.out!r}, --mistakes={args.mistakes!r}")
    model_path = checks.model_file("model_path", args.model_path)
    out = args.out or os.path.join(
        os.path.dirname(os.path.abspath(model_path)),
        f"report-{os.path.basename(os.path.normpath(args.dataset))}-{args.split}")
    scores = evaluate(model_path, args.dataset, split=args.split, data_dir=args.data_dir,
                      flip=args.flip, report=args.report, mistakes=args.mistakes,
                      labels=args.labels)
    order = [k for k in ("accuracy", "top5", "map", "f1", "macro_f1", "subset_accuracy", "loss")
             if k in scores]
    print(" ".join(f"{k} {scores[k]:.4f}" for k in order))
    if args.report:
        print(report.summary(scores["report"], classes=20))
        paths = report.write_report(scores["report"], out, title=f"{model_path}, {args.split}")
        print(f"kres evaluate: wrote {', '.join(paths)}")


def explain(args):
    require_tensorflow("kres explain (its Grad-CAM and image decoding are TensorFlow's)")
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    from kres import checks
    from kres.images import decode
    from kres.models.explain import explain, overlay
    from kres.models.inputs import preprocessing_layer
    from kres.models.saving import load_model
    from kres.preprocessing import eval_resize

    missing = [path for path in args.images if not os.path.isfile(path)]
    if missing:
        raise ValueError(f"No image file. Received: {missing[0]!r}")
    model = load_model(checks.model_file("model_path", args.model_path))
    carried = preprocessing_layer(model)
    names = list(carried.class_names or []) if carried else []
    classes = model.output_shape[-1]
    class_index = None
    if args.class_name is not None:
        if args.class_name in names:
            class_index = names.index(args.class_name)
        elif args.class_name.isdigit() and int(args.class_name) < classes:
            class_index = int(args.class_name)
        else:
            raise ValueError(f"--class must be one of the model's classes (a name of "
                             f"{names[:10]}{'...' if len(names) > 10 else ''} or a number below "
                             f"{classes}). Received: --class={args.class_name!r}")
    _, height, width, channels = model.input_shape
    crop = carried is not None and carried.resize == "center_crop"
    pixels = []
    for path in args.images:
        with open(path, "rb") as f:
            try:
                image = tf.cast(decode(f.read(), channels), tf.float32)
            except tf.errors.InvalidArgumentError:
                raise ValueError(f"Not an image kres decodes (JPEG, PNG, GIF, BMP, WebP, JPEG "
                                 f"XL). Received: {path!r}") from None
        pixels.append(eval_resize(image, height, width, crop).numpy())
    found = explain(model, np.stack(pixels), class_index=class_index, stage=args.stage,
                    method=args.method)
    os.makedirs(args.out, exist_ok=True)
    scale = max(1, 256 // max(height, width))
    written = set()
    for path, image, heat, cls, score in zip(args.images, pixels, found.heatmaps,
                                             found.classes, found.scores):
        shown = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        side = np.concatenate([np.repeat(shown, 3 // shown.shape[-1], axis=-1),
                               overlay(shown, heat)], axis=1)
        stem = os.path.splitext(os.path.basename(path))[0]
        name = stem if stem not in written else f"{stem}-{len(written)}"
        written.add(name)
        target = os.path.join(args.out, name + ".png")
        Image.fromarray(side).resize((side.shape[1] * scale, side.shape[0] * scale),
                                     Image.NEAREST).save(target)
        label = names[cls] if cls < len(names) else str(cls)
        print(f"{path}: {label} {score:.3f} -> {target}")


def models(args):
    import fnmatch

    names = sorted({n for p in args.patterns for n in catalog.MODELS
                    if fnmatch.fnmatchcase(n, p)})
    if not names:
        raise ValueError(f"No model matches. Received: patterns={args.patterns}")
    if args.names_only:
        print("\n".join(names))
        return
    print(f"{'model':<26}{'params':>14}{'MMACs':>12}  input  classes")
    for name in names:
        entry = catalog.MODELS[name]
        print(f"{name:<26}{entry.params:>14,}{entry.macs / 1e6:>12,.1f}"
              f"  {entry.default_size:>5}  {entry.default_classes:>7}")


def summary(args):
    from kres.models import counting as stats
    from kres.models.registry import build_model, get_spec

    size = args.input_size or get_spec(args.name).default_size
    kwargs = {"input_shape": (size, size, args.channels), **dict(args.overrides)}
    if args.classes is not None:
        kwargs["classes"] = args.classes
    model = build_model(args.name, **kwargs)
    model.summary(line_length=110)
    print(f"{args.name}: {stats.count_params(model):,} trainable parameters, "
          f"{stats.count_macs(model) / 1e6:,.1f} million multiply-accumulates per image "
          f"at {model.input_shape[1]}x{model.input_shape[2]}")
