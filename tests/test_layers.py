"""kres's custom layers against the built-in computation they replace."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kres.layers import GroupedConv2D, LocalResponseNormalization, ZeroPadChannels


@pytest.mark.parametrize("groups, strides, padding", [
    (2, 1, "same"), (4, 2, "valid"), (8, 2, "same"), (32, 1, "valid"), (32, 2, "same"),
])
def test_grouped_conv_equals_native(groups, strides, padding):
    channels = 64
    x = tf.random.normal((2, 9, 9, channels), seed=1)
    native = keras.layers.Conv2D(64, 3, strides=strides, padding=padding, groups=groups)
    ours = GroupedConv2D.from_config(native.get_config())
    native.build(x.shape)
    ours.build(x.shape)
    assert ours.kernel.shape == native.kernel.shape == (3, 3, channels // groups, 64)
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
