"""kres's custom layers against the built-in computation they replace."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kres import layers
from kres.layers import (
    BatchNormalization,
    GroupedConv2D,
    LocalResponseNormalization,
    ZeroPadChannels,
)


@pytest.mark.parametrize("groups, strides, padding, filters, dilation", [
    (2, 1, "same", 64, 1), (4, 2, "valid", 64, 1), (8, 2, "same", 128, 1),
    (32, 1, "valid", 64, 1), (32, 2, "same", 32, 1), (4, 1, "same", 64, 2),
])
def test_grouped_conv_equals_native(groups, strides, padding, filters, dilation):
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


@pytest.mark.parametrize("strides, padding", [(1, "same"), (2, "valid")])
def test_grouped_conv_gpu_formulation(monkeypatch, strides, padding):
    # There is no GPU here: the layer is told it runs on one and takes TensorFlow's
    # native grouped op, whose forward pass (not its backward) has a CPU kernel.
    x = tf.random.normal((2, 9, 9, 32), seed=2)
    layer = GroupedConv2D(64, 3, strides=strides, padding=padding, groups=8)
    on_cpu = layer(x)
    monkeypatch.setattr(layers, "_placed_on_gpu", lambda tf, tensor: True)
    traced = tf.function(layer).get_concrete_function(x)
    ops_used = {op.type for op in traced.graph.get_operations()}
    assert "Conv2D" in ops_used and "Split" not in ops_used and "ConcatV2" not in ops_used
    np.testing.assert_allclose(layer(x), on_cpu, rtol=1e-4, atol=1e-4)


def test_grouped_conv_rejects_groups_that_do_not_divide_the_channels():
    with pytest.raises(ValueError, match=r"groups=3"):
        GroupedConv2D(64, 3, groups=3)
    with pytest.raises(ValueError, match=r"groups=4"):
        GroupedConv2D(64, 3, groups=4).build((1, 8, 8, 6))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_grouped_conv_trains_mixed_precision_under_mirrored_strategy(jit_compile):
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


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-4), ("mixed_float16", 2e-2)])
@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("kwargs", [{}, {"center": False, "scale": False, "epsilon": 1e-3}])
def test_fused_batch_norm_equals_keras(dtype, tolerance, jit_compile, kwargs):
    keras.mixed_precision.set_global_policy(dtype)
    try:
        x = tf.random.normal((4, 5, 5, 6), mean=3.0, stddev=2.0, seed=4)
        ours = BatchNormalization(momentum=0.9, epsilon=kwargs.pop("epsilon", 1e-5), **kwargs)
        theirs = keras.layers.BatchNormalization.from_config(ours.get_config())
        for layer in (ours, theirs):
            layer.build(x.shape)
        rng = np.random.default_rng(0)
        ours.set_weights([w + rng.normal(0, 0.3, w.shape).astype(w.dtype) * (i < 2)
                          for i, w in enumerate(ours.get_weights())])
        theirs.set_weights(ours.get_weights())

        def run(layer):
            @tf.function(jit_compile=jit_compile)
            def step(x):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    y = layer(x, training=True)
                    loss = tf.reduce_sum(tf.cast(y, "float32") * tf.sin(tf.cast(y, "float32")))
                return y, tape.gradient(loss, [x, *layer.trainable_weights])
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


def test_fused_batch_norm_keeps_keras_paths_it_does_not_fuse():
    # A 2D input (after a Dense layer) and a mask go through Keras's own code.
    x = tf.random.normal((8, 3), seed=5)
    ours = BatchNormalization()
    theirs = keras.layers.BatchNormalization()
    np.testing.assert_allclose(ours(x, training=True), theirs(x, training=True), rtol=1e-5)
    assert keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(ours)).__class__ is BatchNormalization
