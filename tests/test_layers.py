"""kres's custom layers against the built-in computation they replace."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import kres
from kres import layers
from kres.layers import (
    BatchNormalization,
    GroupedConv2D,
    LocalResponseNormalization,
    ZeroPadChannels,
)

NATIVE_BACKWARD_ON_CPU = layers.cpu_runs_grouped_backward("float32")


def keras_config(batch_norm):
    """Our batch norm's config is Keras's plus `fused_inference` and `frozen`."""
    config = batch_norm.get_config()
    assert config.pop("fused_inference") in (True, False)
    assert config.pop("frozen") in (True, False)
    return config


def traced_ops(layer, x):
    return {op.type for op in tf.function(layer).get_concrete_function(x).graph.get_operations()}


@pytest.mark.parametrize("formulation", ["native", "split"])
@pytest.mark.parametrize("groups, strides, padding, filters, dilation", [
    (2, 1, "same", 64, 1), (4, 2, "valid", 64, 1), (8, 2, "same", 128, 1),
    (32, 1, "valid", 64, 1), (32, 2, "same", 32, 1), (4, 1, "same", 64, 2),
])
def test_grouped_conv_equals_native(monkeypatch, formulation, groups, strides, padding, filters,
                                    dilation):
    if formulation == "native" and not NATIVE_BACKWARD_ON_CPU:
        pytest.skip("TensorFlow has no grouped-convolution backward on this CPU (oneDNN off)")
    monkeypatch.setenv("KRES_GROUPED_CONV", formulation)
    channels = 64
    x = tf.random.normal((2, 9, 9, channels), seed=1)
    native = keras.layers.Conv2D(filters, 3, strides=strides, padding=padding, groups=groups,
                                 dilation_rate=dilation)
    ours = GroupedConv2D.from_config(native.get_config())
    native.build(x.shape)
    ours.build(x.shape)
    assert ours.kernel.shape == native.kernel.shape == (3, 3, channels // groups, filters)
    ours.set_weights([w + np.random.default_rng(0).normal(0, 0.1, w.shape)
                      for w in native.get_weights()])
    native.set_weights(ours.get_weights())

    def run(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * tf.cos(y))
        return [y, *tape.gradient(loss, [x, *layer.trainable_weights])]

    for got, expected in zip(run(ours), run(native)):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert ("Split" in traced_ops(ours, x)) == (formulation == "split")


def test_grouped_conv_chooses_a_formulation_that_trains_here(monkeypatch):
    monkeypatch.delenv("KRES_GROUPED_CONV", raising=False)
    layer = GroupedConv2D(32, 3, groups=8, padding="same")
    x = tf.random.normal((2, 6, 6, 16), seed=3)
    # Outside XLA: TensorFlow's own op wherever its backward pass runs on this CPU.
    assert ("Split" not in traced_ops(layer, x)) == NATIVE_BACKWARD_ON_CPU
    # XLA's CPU grouped convolution is the slow one: inside jit_compile, per-group convs.
    compiled = tf.function(layer, jit_compile=True).get_concrete_function(x)
    assert "Split" in {op.type for op in compiled.graph.get_operations()}
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) ** 2)
    assert all(np.any(g) for g in tape.gradient(loss, layer.trainable_weights))


@pytest.mark.skipif(not NATIVE_BACKWARD_ON_CPU, reason="no native grouped backward on this CPU")
def test_resnext_native_and_split_agree_in_inference_and_training():
    # Whole networks: TensorFlow's graph optimiser fuses each convolution with the
    # batch norm after it in inference, so the layer-level check is not enough.
    import kres

    model = kres.build_model("resnext29_32x4d", depths=(1, 1, 1), classes=10)
    x = tf.random.normal((2, 32, 32, 3), seed=7)
    for layer in model.layers:
        if isinstance(layer, BatchNormalization):
            layer.moving_mean.assign(tf.random.normal(layer.moving_mean.shape, stddev=0.1))
            layer.moving_variance.assign(tf.random.uniform(layer.moving_variance.shape, 0.5, 2))

    start = model.get_weights()  # a training pass moves the moving statistics

    def run(formulation):
        model.set_weights(start)
        with layers.use_formulation(model, formulation):
            @tf.function
            def step(x):
                with tf.GradientTape() as tape:
                    y = model(x, training=True)
                    loss = tf.reduce_sum(y * tf.cos(y))
                return model(x, training=False), tape.gradient(loss, model.trainable_weights)

            outputs, grads = step(x)
        ops_used = {op.type for op in step.get_concrete_function(x).graph.get_operations()}
        assert ("Split" in ops_used) == (formulation == "split")
        return [outputs, *grads]

    native, split = run("native"), run("split")
    for got, expected in zip(native, split, strict=True):
        scale = float(tf.reduce_max(tf.abs(expected))) or 1.0
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4 * scale)
    with pytest.raises(ValueError, match=r"formulation='fast'"), \
            layers.use_formulation(model, "fast"):
        pass


def test_grouped_conv_without_onednn_splits_and_trains():
    # TensorFlow's own CPU kernels refuse the grouped backward pass; the option is
    # read when TensorFlow is imported, hence a fresh interpreter.
    script = textwrap.dedent("""
        import numpy as np, tensorflow as tf
        from kres import layers
        assert not layers.cpu_runs_grouped_backward("float32")
        layer = layers.GroupedConv2D(16, 3, groups=4, padding="same")
        x = tf.random.normal((2, 6, 6, 8))
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x) ** 2)
        assert all(np.any(g) for g in tape.gradient(loss, layer.trainable_weights))
        graph = tf.function(layer).get_concrete_function(x).graph
        assert "Split" in {op.type for op in graph.get_operations()}
        print("ok")
    """)
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("KRES_GROUPED_CONV", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def test_grouped_conv_formulation_order_argument_variable_probe(monkeypatch):
    x = tf.random.normal((1, 6, 6, 8), seed=4)
    probe = "split" if "Split" in traced_ops(GroupedConv2D(8, 3, groups=2), x) else "native"
    assert probe == ("native" if NATIVE_BACKWARD_ON_CPU else "split")
    monkeypatch.setenv("KRES_GROUPED_CONV", "native" if probe == "split" else "split")
    variable = os.environ["KRES_GROUPED_CONV"]
    assert ("Split" in traced_ops(GroupedConv2D(8, 3, groups=2), x)) == (variable == "split")
    for argument in ("native", "split"):  # the argument wins over the variable
        layer = GroupedConv2D(8, 3, groups=2, formulation=argument)
        assert ("Split" in traced_ops(layer, x)) == (argument == "split")
        assert GroupedConv2D.from_config(layer.get_config()).formulation == argument
    with pytest.raises(ValueError, match=r"Received: formulation='fastest'"):
        GroupedConv2D(8, 3, groups=2, formulation="fastest")


def test_grouped_conv_formulation_variable_is_checked(monkeypatch):
    monkeypatch.setenv("KRES_GROUPED_CONV", "fastest")
    with pytest.raises(ValueError, match=r"KRES_GROUPED_CONV='fastest'"):
        GroupedConv2D(8, 3, groups=2)(tf.ones((1, 4, 4, 4)))


@pytest.mark.parametrize("strides, padding", [(1, "same"), (2, "valid")])
def test_grouped_conv_gpu_formulation(monkeypatch, strides, padding):
    # There is no GPU here: the layer is told it runs on one and takes TensorFlow's
    # native grouped op, whose forward pass (not its backward) has a CPU kernel.
    x = tf.random.normal((2, 9, 9, 32), seed=2)
    layer = GroupedConv2D(64, 3, strides=strides, padding=padding, groups=8)
    on_cpu = layer(x)
    monkeypatch.setattr(layers.grouped_conv, "_placed_on_gpu", lambda tf, tensor: True)
    traced = tf.function(layer).get_concrete_function(x)
    ops_used = {op.type for op in traced.graph.get_operations()}
    assert "Conv2D" in ops_used and "Split" not in ops_used and "ConcatV2" not in ops_used
    np.testing.assert_allclose(layer(x), on_cpu, rtol=1e-4, atol=1e-4)


def test_grouped_conv_rejects_groups_that_do_not_divide_the_channels():
    with pytest.raises(ValueError, match=r"groups=3"):
        GroupedConv2D(64, 3, groups=3)
    with pytest.raises(ValueError, match=r"groups=4"):
        GroupedConv2D(64, 3, groups=4).build((1, 8, 8, 6))


@pytest.mark.parametrize("formulation", ["auto", "native", "split"])
@pytest.mark.parametrize("jit_compile", [False, True])
def test_grouped_conv_trains_mixed_precision_under_mirrored_strategy(monkeypatch, jit_compile,
                                                                     formulation):
    if formulation == "native" and not layers.cpu_runs_grouped_backward("float16"):
        pytest.skip("TensorFlow has no grouped-convolution backward on this CPU (oneDNN off)")
    if formulation == "native" and jit_compile:
        pytest.skip("XLA's own grouped convolution: what the layer avoids on a CPU")
    monkeypatch.setenv("KRES_GROUPED_CONV", formulation)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
            model = keras.Sequential([
                keras.Input((8, 8, 8)),
                GroupedConv2D(16, 3, groups=4, padding="same"),
                keras.layers.GlobalAveragePooling2D(),
                keras.layers.Dense(2, dtype="float32"),
            ])
            model.compile(optimizer="sgd", jit_compile=jit_compile,
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        assert model.layers[0].compute_dtype == "float16"
        before = model.layers[0].kernel.numpy().copy()
        x = np.random.default_rng(0).normal(size=(16, 8, 8, 8)).astype("float32")
        history = model.fit(x, np.arange(16) % 2, batch_size=8, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        assert np.abs(model.layers[0].kernel.numpy() - before).max() > 0
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("jit_compile", [False, True])
def test_grouped_conv_in_compiled_function(jit_compile):
    layer = GroupedConv2D(16, 3, groups=4, padding="same")
    x = tf.random.normal((2, 6, 6, 8))
    eager = layer(x)

    @tf.function(jit_compile=jit_compile)
    def step(x):
        with tf.GradientTape() as tape:
            y = layer(x)
            loss = tf.reduce_sum(y)
        return y, tape.gradient(loss, layer.trainable_weights[0])

    y, grad = step(x)
    np.testing.assert_allclose(y, eager, rtol=1e-5, atol=1e-5)
    assert np.all(np.isfinite(grad)) and np.any(grad)


def test_zero_pad_channels():
    x = tf.random.normal((2, 3, 3, 4))
    layer = ZeroPadChannels((2, 3))
    y = layer(x).numpy()
    assert y.shape == (2, 3, 3, 9)
    np.testing.assert_array_equal(y[..., 2:6], x)
    assert not y[..., :2].any() and not y[..., 6:].any()
    assert ZeroPadChannels.from_config(layer.get_config()).padding == (2, 3)
    with pytest.raises(ValueError, match=r"padding=\(-1, 2\)"):
        ZeroPadChannels((-1, 2))


def test_local_response_normalization_equals_tensorflow():
    x = tf.random.normal((2, 5, 5, 13), stddev=20.0, seed=3)
    layer = LocalResponseNormalization(depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75)
    expected = tf.nn.local_response_normalization(x, depth_radius=2, bias=2.0, alpha=1e-4,
                                                  beta=0.75)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5)
    assert np.max(np.abs(expected - x)) > 1.0  # the normalisation does something here
    clone = LocalResponseNormalization.from_config(layer.get_config())
    np.testing.assert_allclose(clone(x), expected, rtol=1e-5)
    with pytest.raises(ValueError, match=r"Received: depth_radius=-1"):
        LocalResponseNormalization(depth_radius=-1)


def bn_step(layer, training, jit_compile):
    """A compiled step: the layer's output and the gradients for its input and weights."""
    @tf.function(jit_compile=jit_compile)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(tf.cast(y, "float32") * tf.sin(tf.cast(y, "float32")))
        return y, tape.gradient(loss, [x, *layer.trainable_weights])
    return step


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-4), ("mixed_float16", 2e-2)])
@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("kwargs", [{}, {"center": False, "scale": False, "epsilon": 1e-3}])
def test_fused_batch_norm_equals_keras(dtype, tolerance, jit_compile, kwargs):
    keras.mixed_precision.set_global_policy(dtype)
    try:
        x = tf.random.normal((4, 5, 5, 6), mean=3.0, stddev=2.0, seed=4)
        ours = BatchNormalization(momentum=0.9, epsilon=kwargs.pop("epsilon", 1e-5), **kwargs)
        theirs = keras.layers.BatchNormalization.from_config(keras_config(ours))
        for layer in (ours, theirs):
            layer.build(x.shape)
        rng = np.random.default_rng(0)
        ours.set_weights([w + rng.normal(0, 0.3, w.shape).astype(w.dtype) * (i < 2)
                          for i, w in enumerate(ours.get_weights())])
        theirs.set_weights(ours.get_weights())

        def run(layer):
            step = bn_step(layer, training=True, jit_compile=jit_compile)
            y, grads = step(x)
            step(x)  # the moving statistics move twice
            return [y, *grads, layer.moving_mean, layer.moving_variance]

        for got, expected in zip(run(ours), run(theirs), strict=True):
            np.testing.assert_allclose(np.asarray(got, "float32"), np.asarray(expected, "float32"),
                                       rtol=tolerance, atol=tolerance)
        assert np.abs(ours.moving_mean.numpy()).max() > 0.5  # the statistics did move
        np.testing.assert_allclose(ours(x, training=False), theirs(x, training=False),
                                   rtol=tolerance, atol=tolerance)
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-4), ("mixed_float16", 2e-2)])
@pytest.mark.parametrize("jit_compile", [False, True])
def test_fused_batch_norm_inference_and_frozen_equal_keras(dtype, tolerance, jit_compile):
    # Moving statistics far from (0, 1), and a frozen layer (trainable=False), which
    # Keras runs on its moving statistics even when training=True; the gradient
    # flows to the input through the fused op as through Keras's.
    keras.mixed_precision.set_global_policy(dtype)
    try:
        x = tf.random.normal((4, 5, 5, 6), mean=3.0, stddev=2.0, seed=6)
        ours = BatchNormalization(epsilon=1e-3)
        theirs = keras.layers.BatchNormalization.from_config(keras_config(ours))
        for layer in (ours, theirs):
            layer.build(x.shape)
        rng = np.random.default_rng(1)
        weights = [rng.normal(1, 0.3, 6), rng.normal(0, 0.3, 6), rng.normal(3, 1, 6),
                   rng.uniform(2, 5, 6)]
        for layer in (ours, theirs):
            layer.set_weights([w.astype("float32") for w in weights])

        def run(layer, training):
            y, (dx, *_) = bn_step(layer, training, jit_compile)(x)
            return y, dx

        for training, trainable in ((False, True), (True, False)):
            ours.trainable = theirs.trainable = trainable
            for got, expected in zip(run(ours, training), run(theirs, training), strict=True):
                np.testing.assert_allclose(np.asarray(got, "float32"),
                                           np.asarray(expected, "float32"),
                                           rtol=tolerance, atol=tolerance)
            np.testing.assert_allclose(ours.moving_mean, weights[2], rtol=1e-6)  # untouched
        graph = tf.function(lambda x: ours(x, training=False)).get_concrete_function(x).graph
        assert "FusedBatchNormV3" in {op.type for op in graph.get_operations()}
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_a_frozen_batch_norm_stays_frozen_whatever_trainable_says():
    # Frozen: Keras's layer with trainable=False (its moving statistics in training, no
    # trainable weights), also after trainable=True, the way a model sets its layers.
    x = tf.random.normal((4, 5, 5, 6), mean=3.0, stddev=2.0, seed=9)
    ours = BatchNormalization(frozen=True)
    theirs = keras.layers.BatchNormalization.from_config(keras_config(ours))
    for layer in (ours, theirs):
        layer.build(x.shape)
        layer.set_weights([np.linspace(0.5, 1.5, 6), np.linspace(-1, 1, 6),
                           np.linspace(2, 4, 6), np.linspace(1, 3, 6)])
    theirs.trainable = False
    model = keras.Sequential([keras.Input((5, 5, 6)), ours])
    model.trainable = True  # reaches every layer through its `trainable` setter
    assert ours.trainable is False and not ours.trainable_weights
    assert not any(v.trainable for v in ours.weights)
    for training in (True, False):
        y, (dx, *_) = bn_step(ours, training, False)(x)
        y_keras, (dx_keras, *_) = bn_step(theirs, training, False)(x)
        np.testing.assert_allclose(y, y_keras, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(dx, dx_keras, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours.moving_mean, np.linspace(2, 4, 6), rtol=1e-6)
    clone = BatchNormalization.from_config(ours.get_config())
    assert clone.frozen is True and clone.trainable is False
    ours.frozen = False  # unfrozen: trainable again, as the model says
    assert ours.trainable is True and len(ours.trainable_weights) == 2
    with pytest.raises(ValueError, match=r"Received: frozen='yes'"):
        BatchNormalization(frozen="yes")


@pytest.mark.parametrize("fused_inference", [True, False])
def test_fused_batch_norm_inference_as_the_builder_says(fused_inference):
    # In inference the fused op is taken where TensorFlow folds it into the bias-free
    # convolution before it; after a biased convolution, where Keras's multiply-add
    # measured faster, the builders ask for Keras's ops. The argument decides, not
    # the graph around the layer.
    conv = keras.layers.Conv2D(6, 3, padding="same", use_bias=not fused_inference)
    ours = BatchNormalization(fused_inference=fused_inference)
    theirs = keras.layers.BatchNormalization()
    x = tf.random.normal((2, 5, 5, 6), seed=8)

    def net(bn):
        return lambda x: bn(conv(x), training=False)

    for bn in (ours, theirs):
        bn.build((None, 5, 5, 6))
        bn.set_weights([np.linspace(0.5, 1.5, 6), np.linspace(-1, 1, 6), np.linspace(0, 1, 6),
                        np.linspace(1, 3, 6)])
    traced = tf.function(net(ours)).get_concrete_function(x).graph
    assert ("FusedBatchNormV3" in {op.type for op in traced.get_operations()}) == fused_inference
    np.testing.assert_allclose(tf.function(net(ours))(x), net(theirs)(x), rtol=1e-5, atol=1e-5)
    clone = BatchNormalization.from_config(ours.get_config())
    assert clone.fused_inference is fused_inference
    with pytest.raises(ValueError, match=r"Received: fused_inference='yes'"):
        BatchNormalization(fused_inference="yes")


@pytest.mark.parametrize("name, overrides, after_bias", [
    ("resnet50", {}, set()),
    # keras.applications' v1 layout: a bias on every convolution, so no batch norm fuses.
    ("resnet50", {"stride_on": "1x1", "conv_bias": True, "bn_epsilon": 1.001e-5}, "all"),
    ("vgg11_bn", {}, "all"),
    ("googlenet_bn", {}, set()),
])
def test_builders_tell_batch_norm_what_precedes_it(name, overrides, after_bias):
    model = kres.build_model(name, input_shape=(64, 64, 3), **overrides)
    norms = [la for la in model.layers if isinstance(la, BatchNormalization)]
    unfused = {la.name for la in norms if not la.fused_inference}
    assert unfused == ({la.name for la in norms} if after_bias == "all" else after_bias)


def test_fused_batch_norm_keeps_keras_paths_it_does_not_fuse():
    # A 2D input (after a Dense layer) and a mask go through Keras's own code.
    x = tf.random.normal((8, 3), seed=5)
    ours = BatchNormalization()
    theirs = keras.layers.BatchNormalization()
    np.testing.assert_allclose(ours(x, training=True), theirs(x, training=True), rtol=1e-5)
    assert keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(ours)).__class__ is BatchNormalization
