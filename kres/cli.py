"""The ``kres`` command line.

    kres models [PATTERN ...]      name, parameters and multiply-accumulates
    kres summary NAME              Keras summary of one model
"""

import argparse
import ast
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
    return parser


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
        {"models": _models, "summary": _summary}[args.command](kres, args)
    except ValueError as error:
        print(f"kres {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
