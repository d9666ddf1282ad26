"""bfloat16 on the CPU: what ``precision="auto"`` picks for a machine, a bfloat16 step
against float32, and a model trained in bfloat16 saved, loaded and served in float32."""

import json
import os
import shutil
import subprocess
from contextlib import nullcontext

import keras
import numpy as np
import pytest
import tensorflow as tf

import kres
from kres import data as datasets
from kres import layers
from kres.models.inference import in_float32
from kres.training import devices

# Feature sets as /proc/cpuinfo spells them.
SAPPHIRE_RAPIDS = frozenset({"avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"})
ZEN4 = frozenset({"avx2", "fma", "avx512f", "avx512_bf16"})
AVX512_ONLY = frozenset({"avx2", "fma", "avx512f", "avx512_vnni"})
AVX2_ONLY = frozenset({"avx2", "fma"})


@pytest.mark.parametrize("gpus, flags, policy, words", [
    (0, SAPPHIRE_RAPIDS, "mixed_bfloat16", "AMX"),
    (0, ZEN4, "mixed_bfloat16", "AVX512-BF16"),
    (0, AVX512_ONLY, "float32", "neither"),
    (0, AVX2_ONLY, "float32", "neither"),
    (0, frozenset(), "float32", "neither"),
    (1, AVX2_ONLY, "mixed_float16", "GPU"),
    (2, SAPPHIRE_RAPIDS, "mixed_float16", "2 GPUs"),
])
def test_auto_precision_follows_the_machine(gpus, flags, policy, words):
    chosen, reason = devices.choose_precision(gpus, flags)
    assert chosen == policy and words in reason


def test_an_explicit_precision_always_wins(monkeypatch):
    assert not tf.config.list_physical_devices("GPU")  # the CPU rules below
    for flags, auto in ((SAPPHIRE_RAPIDS, "mixed_bfloat16"), (AVX2_ONLY, "float32")):
        monkeypatch.setattr(devices, "cpu_flags", lambda flags=flags: flags)
        assert devices.resolve_precision("auto")[0] == auto
        for precision in ("float32", "mixed_float16", "mixed_bfloat16"):
            assert devices.resolve_precision(precision) == (precision, "asked for")
    with pytest.raises(ValueError, match="precision.*Received: precision='bf16'"):
        devices.resolve_precision("bf16")


# Two processors of an x86 /proc/cpuinfo (abridged), and an ARM one's, which has none.
CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile
bugs\t\t: sysret_ss_attrs
flags_like\t: not_a_flag

processor\t: 1
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile
"""
ARM_CPUINFO = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull\nCPU part\t: 0xd0c\n"


def test_cpu_flags_are_the_first_flags_line(tmp_path):
    (tmp_path / "x86").write_text(CPUINFO)
    (tmp_path / "arm").write_text(ARM_CPUINFO)
    assert devices.cpu_flags(str(tmp_path / "x86")) == {
        "fpu", "sse2", "avx2", "avx512f", "avx512_bf16", "amx_tile"}
    assert devices.cpu_flags(str(tmp_path / "arm")) == frozenset()
    assert devices.cpu_flags(str(tmp_path / "none")) == frozenset()


def test_cpu_flags_are_what_lscpu_reports_here():
    lscpu = shutil.which("lscpu")
    if lscpu is None:
        pytest.skip("no lscpu on this machine")
    line = [v for v in subprocess.run([lscpu], capture_output=True, text=True,
                                      env={"LC_ALL": "C"}).stdout.splitlines()
            if v.startswith("Flags:")]
    if not line:
        pytest.skip("lscpu names no flags here")
    assert devices.cpu_flags() == frozenset(line[0].split(":", 1)[1].split())


def _step(model, x, labels):
    with tf.GradientTape() as tape:
        probabilities = model(x, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels,
                                                                           probabilities))
    return probabilities, tape.gradient(loss, model.trainable_weights)


def _relative(a, b):
    a, b = (np.asarray(v, np.float64).ravel() for v in (a, b))
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12)


def _flat(gradients):
    return np.concatenate([np.ravel(g) for g in gradients]).astype(np.float64)


def _cosine(a, b):
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))


# bfloat16 keeps 8 significant bits. The probabilities move by well under 0.02.
# The gradients of an untrained network are so sensitive to their input (ReLUs
# switching, batch statistics of 8 images) that rounding only the input to
# bfloat16 already moves the float32 gradient by 8-15%: that change, measured in
# the same test, is the yardstick. A bfloat16 step measured 1.8-1.9x it; a step
# that is wrong (a gradient lost or cast the wrong way) is off in direction.
OUTPUT_ATOL = 0.02
FLOOR_FACTOR = 3.0


@pytest.mark.parametrize("name, overrides, formulation", [
    ("cifar_resnet20", {}, None),
    ("resnext29_32x4d", {"depths": (1, 1, 1)}, "split"),
    ("resnext29_32x4d", {"depths": (1, 1, 1)}, "native"),
    ("densenet_bc_100_12", {"depths": (4, 4, 4)}, None),
])
def test_a_bfloat16_step_agrees_with_float32(name, overrides, formulation):
    if formulation == "native" and not layers.cpu_runs_grouped_backward("bfloat16"):
        pytest.skip("no native grouped-convolution backward in bfloat16 on this CPU")
    full = kres.build_model(name, **overrides)
    half = kres.build_model(name, dtype="mixed_bfloat16", **overrides)
    half.set_weights(full.get_weights())
    assert half.get_layer("conv1_conv").compute_dtype == "bfloat16"
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(8, 32, 32, 3)).astype("float32"))
    labels = tf.constant(rng.integers(0, 10, 8))

    def formulated(model):
        return layers.use_formulation(model, formulation) if formulation else nullcontext()

    with formulated(half):
        half_probabilities, half_grads = _step(half, x, labels)
    with formulated(full):
        probabilities, grads = _step(full, x, labels)
        _, rounded_input_grads = _step(full, tf.cast(tf.cast(x, tf.bfloat16), tf.float32),
                                       labels)
    assert half_probabilities.dtype == tf.float32  # the classifier stays float32
    np.testing.assert_allclose(half_probabilities, probabilities, atol=OUTPUT_ATOL)
    assert all(g.dtype == tf.float32 for g in half_grads)  # float32 variables and grads
    error = _relative(_flat(half_grads), _flat(grads))
    floor = _relative(_flat(rounded_input_grads), _flat(grads))
    assert error < FLOOR_FACTOR * floor, (error, floor)
    # Every variable's gradient is there and points the float32 gradient's way.
    directions = {w.path: _cosine(a, b) for w, a, b in zip(full.trainable_weights, half_grads,
                                                            grads)}
    worst = min(directions, key=directions.get)
    assert directions[worst] > 0.5, (worst, directions[worst])


def _bfloat16_ops(graph_def):
    ops = []
    for node in [*graph_def.node, *(n for f in graph_def.library.function for n in f.node_def)]:
        for attr in node.attr.values():
            if attr.type == tf.bfloat16.as_datatype_enum or tf.bfloat16.as_datatype_enum in \
                    attr.list.type:
                ops.append(node.name)
                break
    return ops


def test_a_model_trained_in_bfloat16_saves_loads_and_serves_in_float32(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (128, 16, 16, 1), dtype=np.uint8)
    y = (x.mean(axis=(1, 2, 3)) > 127).astype(int)
    data = datasets.from_arrays(x, y, x[:32], y[:32], num_classes=2, val_size=32)
    run = tmp_path / "run"
    results = kres.train("cifar_resnet20", "arrays", data=data, run_dir=str(run), epochs=1,
                         batch_size=32, augment="none", precision="mixed_bfloat16",
                         model_overrides={"depths": (1, 1, 1)}, verbose=0)
    assert results["precision"] == "mixed_bfloat16"
    trained = kres.load_model(str(run / "best.keras"))
    assert trained.get_layer("conv1_conv").compute_dtype == "bfloat16"
    assert all(w.dtype == "float32" for w in trained.weights)

    # The float32 network of the same weights: what the export serves.
    served = in_float32(trained)
    assert {layer.compute_dtype for layer in served.layers} == {"float32"}
    images = x[:16].astype("float32")  # pixels: the model normalises them itself
    np.testing.assert_allclose(served(images), trained(images), atol=OUTPUT_ATOL)

    path = kres.export(str(run / "best.keras"), str(tmp_path / "export"))
    loaded = tf.saved_model.load(path)
    signature = loaded.signatures["serving_pixels"]
    out = signature(pixels=tf.constant(x[:16]))["probabilities"]
    assert out.dtype == tf.float32
    np.testing.assert_allclose(out, served(images), atol=1e-5)
    graph = signature.graph.as_graph_def()
    assert _bfloat16_ops(graph) == []
    with open(os.path.join(path, "kres.json")) as f:
        assert json.load(f)["training"]["config"]["precision"] == "mixed_bfloat16"
