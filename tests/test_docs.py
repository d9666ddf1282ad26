"""The numbers the README and docs state, against the files they come from.

docs/models.md's table must say what `kres.models.catalog` says (which test_models
checks against the built models) and quote tests/golden.py's published or
derived figures; the README's examples of exact figures must be the same.
Measured figures come from the results files that scripts in benchmarks/ write
(benchmarks/results/*.json, each with its date, machine, command and commit):
the README and docs must cite each file with its provenance and quote its
figures as the file has them. CI's floors are quoted from .ci/check_demo.py.
"""

import glob
import importlib.util
import json
import os
import re

import pytest

from kres.models import catalog
from tests.golden import DERIVED, KERAS_APPLICATIONS, PUBLISHED

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _number(text):
    return float(text.replace(",", "")) if text.strip() else None


def _table_rows():
    with open(os.path.join(ROOT, "docs", "models.md")) as f:
        lines = f.read().splitlines()
    start = lines.index("| model | trainable params | MMACs | checked against | its params "
                        "| its MMACs |")
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        name, params, mmacs, source, ref_params, ref_mmacs = (c.strip() for c in
                                                               line.strip("|").split("|"))
        rows[name.strip("`")] = (_number(params), _number(mmacs), source, _number(ref_params),
                                 _number(ref_mmacs))
    return rows


def test_models_table_lists_every_model_with_its_checked_figures():
    rows = _table_rows()
    assert sorted(rows) == sorted(catalog.MODELS)
    for name, (params, mmacs, source, ref_params, ref_mmacs) in rows.items():
        entry = catalog.MODELS[name]
        assert params == entry.params and mmacs == round(entry.macs / 1e6, 1), name
        if name in PUBLISHED:
            published, gmacs, where = PUBLISHED[name]
            assert ref_params == published and ref_mmacs == pytest.approx(gmacs * 1000), name
            assert source and source.split()[0] in where, name
        elif name in DERIVED:
            derived, macs, how = DERIVED[name]
            assert (ref_params, ref_mmacs, source) == (derived, round(macs / 1e6, 1), how)
        else:
            assert ref_params == KERAS_APPLICATIONS[name] and "keras.applications" in source


def test_readme_examples_of_exact_figures():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = " ".join(f.read().split())
    paragraph = text[text.index("Examples of the exact figures:"):]
    paragraph = paragraph[:paragraph.index("GoogLeNet's auxiliary")]
    quoted = re.findall(r"(\b[a-z][a-z0-9_]+):? ([\d,]{5,})(?: parameters)?(?: and ([\d.]+)"
                        r"(?: (GMACs|MMACs))?)?", paragraph)
    assert len(quoted) >= 10
    for name, params, macs, unit in quoted:
        unit = unit or "GMACs"  # "resnext50_32x4d 25,028,904 and 4.230" follows a GMACs figure
        assert int(params.replace(",", "")) == catalog.MODELS[name].params, name
        if name in PUBLISHED:
            assert int(params.replace(",", "")) == PUBLISHED[name][0]
        else:
            assert int(params.replace(",", "")) == DERIVED[name][0]
        if macs:
            scale = 1e9 if unit == "GMACs" else 1e6
            assert float(macs) == pytest.approx(catalog.MODELS[name].macs / scale, abs=0.05
                                                if unit == "MMACs" else 5e-4), name


RESULTS = os.path.join(ROOT, "benchmarks", "results")
DOCS = ["README.md", *sorted(os.path.relpath(p, ROOT)
                             for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))]


def _json(path):
    with open(path) as f:
        return json.load(f)


def _results(name):
    return _json(os.path.join(RESULTS, name))


def _text(path):
    """A doc's text, lines joined where a shell command continues them."""
    with open(os.path.join(ROOT, path)) as f:
        return f.read().replace("\\\n", " ")


def _paragraphs(path, cited):
    """The paragraphs of `path` that name `cited`, each on one line (whitespace collapsed)."""
    found = [" ".join(p.split()) for p in re.split(r"\n\s*\n", _text(path)) if cited in p]
    assert found, f"{path} does not cite {cited}"
    return found


def _script(*path):
    """The Python file at `path` (under the repository's root), imported as a module."""
    spec = importlib.util.spec_from_file_location(
        os.path.splitext(path[-1])[0], os.path.join(ROOT, *path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _percent(fraction):
    return f"{fraction:.2%}"


def _table(path, header):
    """The rows of the Markdown table in `path` whose header row starts with `header`."""
    lines = _text(path).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_every_results_file_is_cited_with_its_date_machine_and_command():
    files = sorted(glob.glob(os.path.join(RESULTS, "*.json")))
    assert files
    texts = {path: " ".join(_text(path).split()) for path in DOCS}
    for file in files:
        record = _results(os.path.basename(file))
        for key in ("date", "machine", "command", "commit"):
            assert record.get(key), (file, key)
        cited = os.path.relpath(file, ROOT)
        paragraphs = [p for path in DOCS if cited in _text(path)
                      for p in _paragraphs(path, cited)]
        assert any(record["date"] in p and record["machine"] in p for p in paragraphs), cited
        command = " ".join(record["command"].split())
        assert any(command in text for text in texts.values()), (cited, command)


def _demo_figures(paragraph, record):
    demo, float32 = record["demo"], record["float32"]
    # The 1-minute load average as the script started and as each command ended.
    loads = [record["load_average_at_start"][0], float32["load_average_after"],
             *(step["load_average_after"] for step in demo["commands"])]
    quoted = [record["date"], record["machine"], record["command"].split()[1],
              f"load average {min(loads):.1f} to {max(loads):.1f}",
              f"{_percent(demo['test_accuracy'])} test accuracy in `{demo['precision']}`",
              f"{demo['served_right']} of {demo['served']} test images right through the "
              "export",
              f"{demo['seconds']:.0f} s for the three commands of `make demo`",
              f"float32 beside it: {_percent(float32['test_accuracy'])}, and "
              f"{record['float32_epoch_time_over_demo']:.2f} times as long per epoch"]
    return [q for q in quoted if q not in paragraph]


def test_readme_and_results_quote_the_demo_figures_file():
    record = _results("demo.json")
    for path in ("README.md", "docs/results.md"):
        paragraphs = _paragraphs(path, "benchmarks/results/demo.json")
        assert any(not _demo_figures(p, record) for p in paragraphs), (
            path, _demo_figures(paragraphs[0], record))
    rows = {row[0]: row[1:] for row in _table("docs/results.md", "| precision | test accuracy")}
    for run in (record["demo"], record["float32"]):
        accuracy, best_val, epochs, images = rows[f"`{run['precision']}`"]
        assert accuracy == _percent(run["test_accuracy"])
        assert best_val == _percent(run["best_val_accuracy"])
        assert epochs == ", ".join(f"{t:.1f}" for t in run["epoch_times"])
        assert images == f"{run['train_images_per_second']:,.0f}"


FORMATS = {"SavedModel": "saved_model-none", "LiteRT float32": "tflite-none",
           "LiteRT float16": "tflite-float16", "LiteRT dynamic": "tflite-dynamic",
           "LiteRT int8": "tflite-int8", "ONNX (ONNX Runtime)": "onnx-none"}


def _int8_figures(paragraph, record):
    formats = record["formats"]
    int8, saved = formats["tflite-int8"], formats["saved_model-none"]
    smaller = formats["tflite-none"]["bytes"] / int8["bytes"]
    # In hundredths of a point, from the accuracies as quoted.
    gap = round(saved["test_accuracy"] * 10_000) - round(int8["test_accuracy"] * 10_000)
    accurate = (f"as accurate ({_percent(int8['test_accuracy'])}, as the float32 "
                "SavedModel)" if gap == 0 else
                f"{abs(gap) / 100:.2f} points {'less' if gap > 0 else 'more'} accurate "
                f"({_percent(int8['test_accuracy'])} against the float32 SavedModel's "
                f"{_percent(saved['test_accuracy'])})")
    quoted = [record["date"], record["machine"], f"{smaller:.1f}x smaller than the float32 "
              "LiteRT file", f"{int8['x_saved_model_images_per_s']:.1f}x the SavedModel's "
              "throughput", accurate]
    return [q for q in quoted if q not in paragraph]


def test_int8_figures_are_those_of_the_current_demo_model():
    record, demo = _results("export_formats.json"), _results("demo.json")["demo"]
    # Measured on the model of demo.json, which the README gives as the demo.
    assert os.path.dirname(record["model"]["path"]) == demo["run"]
    assert record["model"]["run_test_accuracy"] == demo["test_accuracy"]
    assert record["model"]["run_precision"] == demo["precision"]
    for path in ("README.md", "docs/export.md"):
        paragraphs = _paragraphs(path, "benchmarks/results/export_formats.json")
        assert any(not _int8_figures(p, record) for p in paragraphs), (
            path, _int8_figures(paragraphs[0], record))


def test_export_table_quotes_the_export_formats_file():
    record = _results("export_formats.json")
    formats = record["formats"]
    text = " ".join(_text("docs/export.md").split())
    assert (f"load average {record['load_average_at_start'][0]:.1f} at its start and "
            f"{record['load_average_at_end'][0]:.1f} at its end") in text
    int8, saved = formats["tflite-int8"], formats["saved_model-none"]
    assert (f"({int8['x_smaller_than_saved_model']:.2f}x smaller than the SavedModel)"
            in text)
    latency = saved["ms_per_image_batch_1"] / int8["ms_per_image_batch_1"]
    assert f"({latency:.0f}x lower single-image latency)" in text
    rows = _table("docs/export.md", "| format | bytes |")
    assert sorted(row[0] for row in rows) == sorted(FORMATS)
    for label, size, smaller, ms, images, speed, accuracy in rows:
        measured = formats[FORMATS[label]]
        assert (size, smaller, ms, images, speed, accuracy) == (
            f"{measured['bytes']:,}", f"{measured['x_smaller_than_saved_model']:.2f}",
            f"{measured['ms_per_image_batch_1']:.2f}",
            f"{measured['images_per_s_batch_32']:,.0f}",
            f"{measured['x_saved_model_images_per_s']:.2f}",
            _percent(measured["test_accuracy"])), label


def test_pipeline_tables_quote_the_pipeline_file():
    record = _results("pipeline_vs_model.json")
    rows = {r["recipe"]: r for r in record["rows"]}
    speed = _table("docs/benchmarks.md", "| recipe | data | input | model | batch | pipeline")
    assert [row[0] for row in speed[:len(rows)]] == list(rows)
    for recipe, data, size, model, batch, first, cached, trained, headroom in speed[:len(rows)]:
        r = rows[recipe]
        assert (data, size, model, batch, first, cached, trained, headroom) == (
            r["dataset"], r["size"], r["model"], str(r["batch"]), f"{r['first']:.0f}",
            f"{r['cached']:.0f}", f"{r['model_rate']:.1f}",
            f"{r['cached'] / r['model_rate']:.0f}x"), recipe
    compared = _table("docs/benchmarks.md", "| recipe | Keras layers, cached |")
    assert [row[0] for row in compared] == [r for r in rows if "compared" in rows[r]]
    for recipe, *cells in compared:
        k, b = rows[recipe]["compared"]["kres"], rows[recipe]["compared"]["baseline"]
        assert cells == [f"{k['cached']:.0f}", f"{b['cached']:.0f}",
                         f"{k['cached'] / b['cached']:.2f}", f"{k['first']:.0f}",
                         f"{b['first']:.0f}", f"{k['first'] / b['first']:.2f}"], recipe


def test_readme_quotes_cis_floors_for_the_demo():
    check = _script(".ci", "check_demo.py")
    paragraph = _paragraphs("README.md", ".ci/check_demo.py")[0]
    assert f"falls below {check.FLOOR:.0%} or fewer than {check.MIN_RIGHT} of its " \
           f"{check.SENT} test images" in paragraph


def test_recipe_table_lists_every_recipe_with_its_fields():
    from kres.training.recipes import RECIPES

    rows = {row[0].split()[0].strip("`"): row
            for row in _table("docs/training.md", "| recipe | from | optimizer |")}
    assert set(rows) == set(RECIPES)
    names = {"sgd": "SGD", "adamw": "AdamW", "lamb": "LAMB", "lion": "Lion"}
    for name, recipe in RECIPES.items():
        _, _, optimizer, lr, batch, decay, _, epochs = rows[name]
        assert optimizer.startswith(names[recipe.optimizer]), name
        if recipe.optimizer == "sgd":
            assert ("Nesterov" in optimizer) == recipe.nesterov, name
        assert f"{recipe.learning_rate:g}" in lr.replace("(head), then", ""), name
        assert (int(batch), int(epochs), _number(decay.split(",")[0])) == (
            recipe.batch_size, recipe.epochs, recipe.weight_decay), name
        assert ("not on BN/bias" in decay) == (not recipe.decay_all), name


def test_input_pipeline_table_quotes_its_file():
    record = _results("input_pipelines.json")
    table = _table("docs/benchmarks.md",
                   "| augmentation | form | threads | images/s (median) | rounds |")
    assert table == [[r["augment"], r["form"], str(r["parallel"]), str(r["images_per_second"]),
                      ", ".join(str(v) for v in r["rounds"])] for r in record["results"]]


def test_backend_table_quotes_its_file():
    record = _results("backends.json")
    table = _table("docs/benchmarks.md", "| backend | precision | seed | test accuracy |")
    assert table == [[r["backend"], r["precision"], str(r["seed"]),
                      f"{r['test_accuracy'] * 100:.2f}%", f"{r['train_images_per_second']:.1f}",
                      ", ".join(f"{e:.1f}" for e in r["epoch_seconds"])]
                     for r in record["runs"]]


def test_backend_precision_table_quotes_its_file():
    record = _results("backends_precision.json")
    table = _table("docs/benchmarks.md", "| backend | precision | test accuracy |")
    assert table == [[r["backend"], r["precision"], f"{r['test_accuracy'] * 100:.2f}%",
                      f"{r['train_images_per_second']:.1f}",
                      ", ".join(f"{e:.1f}" for e in r["epoch_seconds"])]
                     for r in record["runs"]]


def test_full_scale_backend_table_quotes_the_finished_runs():
    rows = []
    for path in sorted(glob.glob(os.path.join(RESULTS, "backends-full", "*",
                                              "benchmark_row.json"))):
        with open(path) as f:
            row = json.load(f)
        with open(os.path.join(os.path.dirname(path), "results.json")) as f:
            results = json.load(f)
        rows.append([f"{row['backend']} {row['precision']} seed {row['seed']}", row["cpu"],
                     f"{row['test_accuracy'] * 100:.2f}%",
                     f"{row['train_images_per_second']:.1f}",
                     f"{results['best_val_accuracy'] * 100:.2f}%"])
    table = _table("docs/benchmarks.md", "| run | processor | test accuracy |")
    assert rows and sorted(table) == sorted(rows)
    # The record the docs cite holds the same runs as the rows kept beside it.
    kept = [_json(p) for p in sorted(glob.glob(os.path.join(RESULTS, "backends-full", "*",
                                                             "benchmark_row.json")))]
    key = lambda r: (r["backend"], r["seed"])  # noqa: E731
    assert sorted(_results("backends_full.json")["runs"], key=key) == sorted(kept, key=key)


def test_the_pytorch_peer_trains_with_fast_cpus_recipe():
    """benchmarks/torch_peer.py states the recipe it times `kres train --recipe fast-cpu`
    against; it must be that recipe (the network itself: tests/test_torch.py)."""
    import inspect

    from kres.data.augment import PadCrop
    from kres.data.catalog import get_dataset_spec
    from kres.preprocessing import DATASET_STATISTICS
    from kres.training.recipes import RECIPES

    peer = _script("benchmarks", "torch_peer.py")
    r = RECIPES["fast-cpu"]
    assert (r.optimizer, r.nesterov, r.schedule, r.decay_all, r.zero_init_last, r.test_flip,
            r.augment, r.mixup_alpha, r.cutmix_alpha, r.random_erasing, r.auto_augment,
            r.ema, r.clip_norm, r.accumulation_steps, r.scale_lr) == (
        "sgd", True, "cosine", False, True, True, None, 0, 0, 0, None, False, 0, 1, False)
    assert peer.RECIPE == dict(batch=r.batch_size, lr=r.learning_rate, momentum=r.momentum,
                               weight_decay=r.weight_decay, warmup_epochs=r.warmup_epochs,
                               label_smoothing=r.label_smoothing, pad=4)
    mean, std, _ = DATASET_STATISTICS["fashion_mnist"]
    assert ((peer.MEAN,), (peer.STD,)) == (mean, std)
    data = get_dataset_spec("fashion_mnist")
    assert (data.augment, data.val_size, peer.TRAIN + peer.VAL) == ("crop_flip", peer.VAL, 60000)
    assert inspect.signature(PadCrop).parameters["padding"].default == peer.RECIPE["pad"]


def test_onednn_steps_sums_onednns_log_per_step():
    """benchmarks/onednn_steps.py's reading of oneDNN's verbose lines (these are
    from a kres ResNet-20 step): per step, by pass and kernel and by shape."""
    steps = _script("benchmarks", "onednn_steps.py")
    head = "onednn_verbose,v1,primitive,exec,cpu,"
    weights = (head + "convolution,jit_bf16:avx512_core_bf16,backward_weights,src:bf16::blocked:"
               "acdb::f0 wei:bf16:a:blocked:ABcd16b16a::f0 bia:undef::undef::: dst:bf16::blocked:"
               "acdb::f0,,alg:convolution_direct,mb128_ic32oc64_ih16oh7kh3sh2dh0ph0_iw16ow7kw3sw2"
               "dw0pw0,2.5")
    norm = (head + "batch_normalization,bnorm_tbb_jit:avx512_core_bf16,backward,data:bf16::"
            "blocked:acdb::f0 diff:bf16::blocked:acdb::f0,,flags:CH,mb128ic64ih7iw7,0.5")
    reorder = (head + "reorder,jit:uni,undef,src:bf16::blocked:cdba::f0 dst:bf16::blocked:"
               "Adcb16a::f0,,,16x1x3x3,0.25")
    by_kernel, by_shape = steps.parse([weights, weights, norm, norm, reorder, reorder], 2)
    assert {k: [round(v, 6) for v in c] for k, c in by_kernel.items()} == {
        ("convolution, backward, weights", "jit_bf16:avx512_core_bf16"): [1, 2.5],
        ("batch normalization, backward", "bnorm_tbb_jit:avx512_core_bf16"): [1, 0.5],
        ("reorder", "jit:uni"): [1, 0.25]}
    assert by_shape[("convolution, backward, weights",
                     "mb128_ic32oc64_ih16oh7kh3sh2dh0ph0_iw16ow7kw3sw2dw0pw0")] == [1, 2.5]


def test_conv_alone_reads_one_pass_after_the_warmup():
    """benchmarks/conv_alone.py's reading of oneDNN's verbose lines: the runtime, and
    per problem the pass asked for, its first `warmup` calls dropped, the median."""
    alone = _script("benchmarks", "conv_alone.py")
    problem = "mb128_ic64oc64_ih7oh7kh3sh1dh0ph1_iw7ow7kw3sw1dw0pw1"
    memory = ("src:bf16::blocked:acdb::f0 wei:bf16:a:blocked:ABcd16b16a::f0 "
              "bia:undef::undef::: dst:bf16::blocked:acdb::f0")

    def line(prop, ms, attributes=""):
        return (f"onednn_verbose,v1,primitive,exec,cpu,convolution,jit_bf16:avx512_core_bf16,"
                f"{prop},{memory},{attributes},alg:convolution_direct,{problem},{ms}")

    lines = ["onednn_verbose,v1,info,cpu,runtime:threadpool,nthr:2",
             line("backward_weights", 9.0), line("backward_data", 5.0),
             *(line("backward_weights", ms, "attr-scratchpad:user") for ms in (2.0, 1.0, 3.0)),
             line("forward_inference", 4.0)]
    runtime, calls = alone.parse(lines, warmup=1)
    assert runtime == "threadpool"
    assert calls == {problem: {"kernel": "jit_bf16:avx512_core_bf16", "memory": memory,
                               "attributes": "", "ms": 2.0}}
    assert alone.parse(lines, warmup=0, pass_="forward")[1][problem]["ms"] == 4.0
    assert alone.parse(lines, warmup=1, pass_="data")[1][problem]["ms"] is None
    # oneDNN before 3.3 logs without "v1,primitive,": read the same once versioned.
    old = [line.replace("v1,primitive,", "").replace("v1,info,", "info,") for line in lines]
    assert old[0] == "onednn_verbose,info,cpu,runtime:threadpool,nthr:2"
    assert alone.parse([alone.versioned(line) for line in old], warmup=1) == (runtime, calls)


def test_the_primitive_tables_quote_their_files():
    """The docs' tables by pass and kernel are benchmarks/onednn_steps.py's, from its records."""
    steps = _script("benchmarks", "onednn_steps.py")
    for name, label in (("onednn_steps_bf16.json", ""), ("onednn_steps_fp32.json", ""),
                        ("onednn_steps_resnet50_bf16.json", "resnet50, ")):
        record = _results(name)
        header = (f"| pass ({label}{record['precision']}) | kernel | kres calls | kres ms | "
                  "PyTorch calls | PyTorch ms |")
        kernels = {side: {(p, k): (c, ms) for p, k, c, ms in rows}
                   for side, rows in record["kernels"].items()}
        assert _table("docs/benchmarks.md", header) == steps.kernel_rows(
            kernels, record["onednn_ms"]), name


def test_the_convolution_alone_tables_quote_their_files():
    """The docs' tables of one convolution alone are benchmarks/conv_alone.py's records,
    beside the same problems inside the two steps (benchmarks/onednn_steps.py's)."""
    alone = _script("benchmarks", "conv_alone.py")
    passes = alone.PASS_NAMES
    steps = _results("onednn_steps_bf16.json")
    in_step = {side: {(p, s): ms / calls for p, s, calls, ms in rows}
               for side, rows in steps["shapes"].items()}
    rows, one_thread = [], []
    for name in passes:
        record = _results(f"conv_alone_{name}_bf16.json")
        assert record["pass"] == name and record["threads"] == 0
        sides = record["sides"]
        for c, hw in record["shapes"]:
            problem = alone.problem(record["batch"], c, hw)
            tf_, pt = (sides[s]["ms"][problem] for s in ("TensorFlow", "PyTorch"))
            kres, torch = (in_step[s][(f"convolution, {passes[name]}", problem)]
                           for s in ("kres", "torch"))
            rows.append([passes[name], f"{c}x{hw}x{hw}", f"{tf_:.2f}", f"{pt:.2f}",
                         f"{tf_ / pt:.2f}x", *[" / ".join(
                             f"{sides[f'oneDNN {v} alone, scratchpad {m}']['ms'][problem]:.2f}"
                             for m in ("library", "user")) for v in ("3.2.0", "3.7.1", "3.13.2")],
                         f"{kres:.2f}", f"{torch:.2f}", f"{kres / torch:.2f}x"])
    assert _table("docs/benchmarks.md", "| pass | shape | TensorFlow | PyTorch |") == rows
    record = _results("conv_alone_weights_bf16_1thread.json")
    assert record["pass"] == "weights" and record["threads"] == 1
    for c, hw in record["shapes"]:
        problem = alone.problem(record["batch"], c, hw)
        tf_, pt = (record["sides"][s]["ms"][problem] for s in ("TensorFlow", "PyTorch"))
        one_thread.append([f"{c}x{hw}x{hw}", f"{tf_:.2f}", f"{pt:.2f}", f"{tf_ / pt:.2f}x"])
    assert _table("docs/benchmarks.md", "| shape (one thread) |") == one_thread


def test_the_pytorch_peer_table_quotes_its_file():
    import statistics

    record = _results("torch_peer.json")
    rows = []
    for precision, summary in record["summary"].items():
        runs = [r for r in record["runs"] if r["precision"] == precision]
        speeds = {side: [f"{r['images_per_second']:.1f}" for r in runs if r["side"] == side]
                  for side in ("kres", "pytorch")}
        training = statistics.median(r["train_only_images_per_second"] for r in runs
                                     if r["side"] == "pytorch")
        rows.append([precision, f"{summary['kres_images_per_second']:.1f}",
                     f"{summary['pytorch_images_per_second']:.1f}", f"{training:.1f}",
                     f"{summary['kres_over_pytorch']:.2f}x", ", ".join(speeds["kres"]),
                     ", ".join(speeds["pytorch"])])
    assert _table("docs/benchmarks.md", "| precision | kres images/s | PyTorch images/s |") \
        == rows
