"""The one residual block: shortcut choice, layouts, SE, drop path, zero-init."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kres
from kres.models import blocks


def _layers(model, suffix):
    return [layer for layer in model.layers if layer.name.endswith(suffix)]


def test_projection_only_where_width_changes():
    model = kres.build_model("resnet50", input_shape=(64, 64, 3))
    projections = [layer.name for layer in _layers(model, "_0_conv")]
    assert projections == [f"conv{s}_block1_0_conv" for s in (2, 3, 4, 5)]
    assert [layer.strides for layer in _layers(model, "_0_conv")] == [(1, 1)] + [(2, 2)] * 3


def test_option_a_is_parameter_free():
    model = kres.build_model("cifar_resnet20")
    assert not _layers(model, "_0_conv")
    assert [layer.name for layer in _layers(model, "_0_pad")] == [
        "conv3_block1_0_pad", "conv4_block1_0_pad"]
    assert kres.count_params(model) == kres.count_params(kres.build_model("cifar_plain20"))
    option_b = kres.build_model("cifar_resnet20", shortcut="B")
    assert kres.count_params(option_b) == 272_474  # REFERENCE.md, option B


def test_plain_network_has_no_shortcuts():
    model = kres.build_model("cifar_plain20")
    assert not [layer for layer in model.layers if isinstance(layer, keras.layers.Add)]
    resnet = kres.build_model("cifar_resnet20")
    assert len([la for la in resnet.layers if isinstance(la, keras.layers.Add)]) == 9


@pytest.mark.parametrize("name, overrides, strided", [
    ("resnet50", {}, "conv3_block1_2_conv"),                    # v1.5
    ("resnet50", {"stride_on": "1x1"}, "conv3_block1_1_conv"),  # v1
    ("resnet50v2", {}, "conv2_block3_2_conv"),                  # keras v2: last block
])
def test_stride_placement(name, overrides, strided):
    model = kres.build_model(name, input_shape=(64, 64, 3), **overrides)
    first_strided = next(la.name for la in model.layers
                         if getattr(la, "strides", (1, 1)) == (2, 2) and "_block" in la.name
                         and la.name.endswith("conv"))
    assert first_strided == strided


def test_bottleneck_widths():
    resnext = kres.build_model("resnext50_32x4d", input_shape=(64, 64, 3))
    conv = resnext.get_layer("conv2_block1_2_conv")
    assert (conv.filters, conv.groups, type(conv).__name__) == (128, 32, "GroupedConv2D")
    wide = kres.build_model("wide_resnet50_2", input_shape=(64, 64, 3))
    assert wide.get_layer("conv2_block1_2_conv").filters == 128
    assert wide.get_layer("conv2_block1_3_conv").filters == 256
    assert blocks.bottleneck_width(256, 32, 8) == 2048 // 2


def test_squeeze_excite_reduction():
    model = kres.build_model("se_resnet50", input_shape=(64, 64, 3))
    assert model.get_layer("conv2_block1_se_reduce").filters == 256 // 16
    assert model.get_layer("conv5_block3_se_expand").filters == 2048


def _single_block(preact, **kwargs):
    x = keras.Input((8, 8, 16))
    y = blocks.residual_block(x, 16, block="basic", preact=preact, name="b", **kwargs)
    return keras.Model(x, y)


@pytest.mark.parametrize("preact", [False, True])
def test_zero_init_last_starts_as_identity(preact):
    x = tf.random.uniform((2, 8, 8, 16))  # non-negative: unchanged by the final ReLU
    block = _single_block(preact, zero_init_last=True)
    np.testing.assert_allclose(block(x, training=True), x, atol=1e-6)
    normal = _single_block(preact)
    assert np.abs(normal(x, training=True) - x).max() > 1e-2


def test_drop_path_drops_whole_branches():
    kept = _single_block(True)
    dropping = _single_block(True, drop_path_rate=0.5)
    dropping.set_weights(kept.get_weights())
    x = tf.random.uniform((64, 8, 8, 16))
    branch = (kept(x, training=True) - x).numpy()
    out = (dropping(x, training=True) - x).numpy()
    dropped = np.all(np.abs(out) < 1e-6, axis=(1, 2, 3))
    np.testing.assert_allclose(out[~dropped], 2 * branch[~dropped], rtol=1e-4, atol=1e-5)
    assert 16 < dropped.sum() < 48
    np.testing.assert_allclose(dropping(x), kept(x), atol=1e-6)  # inference keeps all


def test_drop_path_rates_rise_linearly():
    model = kres.build_model("cifar_resnet20", drop_path_rate=0.2)
    rates = [layer.rate for layer in model.layers if layer.name.endswith("_drop_path")]
    np.testing.assert_allclose(rates, np.linspace(0, 0.2, 9)[1:])  # block 1 never drops
