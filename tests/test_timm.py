"""Safetensors files read, timm/torchvision ResNet weights loaded (the ResNet family's
mapping, kres.models.families.resnet_timm, through kres.weights.torch_state_dict).

The state dicts here are made from a description of the PyTorch layout
(`TorchArch`), never from the kres model, and written by a small safetensors
writer of this file, so the reader and the name mapping are both checked
against something independent of them. A NumPy forward pass of the PyTorch
network (NCHW, PyTorch's weight layouts) is the reference for the outputs;
when PyTorch is importable, a real `torch.nn` network is one too.
"""

import json
import math
import struct
from dataclasses import dataclass

import keras
import numpy as np
import pytest
from keras import layers

import kres
from kres.models.families.resnet_timm import load_timm_weights
from kres.weights.safetensors_file import read_safetensors

INPUT = 64
CLASSES = 5
BN_EPS = 1e-5

# ---------------------------------------------------------------------------
# A reference safetensors writer (struct + json), independent of kres's reader.

_CODES = {"float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64",
          "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}


def write_safetensors(path, tensors, metadata=None):
    """Writes `tensors` (name -> array, or name -> (dtype code, raw bytes, shape))."""
    header, chunks, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, value in tensors.items():
        if isinstance(value, tuple):
            code, raw, shape = value
        else:
            array = np.asarray(value)
            code = _CODES[array.dtype.name]
            raw, shape = array.astype(array.dtype.newbyteorder("<")).tobytes(), array.shape
        header[name] = {"dtype": code, "shape": list(shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # real files pad the header to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))
    return path


# ---------------------------------------------------------------------------
# The PyTorch layout of timm's ResNet, described independently of kres.


@dataclass(frozen=True)
class TorchArch:
    block: str  # "basic" or "bottleneck"
    depths: tuple = (1, 1, 1, 1)
    cardinality: int = 1
    base_width: int = 64
    se: bool = False
    classes: int = CLASSES
    widths: tuple = (64, 128, 256, 512)

    @property
    def expansion(self):
        return 4 if self.block == "bottleneck" else 1

    def blocks(self):
        """(prefix, in_channels, planes, stride) of every block, as timm builds them."""
        inplanes = 64
        for i, (planes, depth) in enumerate(zip(self.widths, self.depths)):
            for b in range(depth):
                yield f"layer{i + 1}.{b}", inplanes, planes, (2 if i > 0 and b == 0 else 1)
                inplanes = planes * self.expansion

    @property
    def features(self):
        return self.widths[-1] * self.expansion


# The kres models under test and their PyTorch descriptions.
ARCHS = {
    "resnet18": TorchArch("basic"),
    "resnext50_32x4d": TorchArch("bottleneck", cardinality=32, base_width=4),
    "se_resnext50_32x4d": TorchArch("bottleneck", cardinality=32, base_width=4, se=True),
    "wide_resnet50_2": TorchArch("bottleneck", base_width=128),
}


def make_divisible(value, divisor=8):
    """timm's channel rounding for the squeeze-excite reduction."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def torch_layout(arch):
    """name -> shape of every tensor of the state dict, in timm's order."""
    shapes = {}

    def conv(name, out, inp, k):
        shapes[f"{name}.weight"] = (out, inp, k, k)

    def bn(name, channels):
        for part in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{part}"] = (channels,)
        shapes[f"{name}.num_batches_tracked"] = ()

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    for prefix, inplanes, planes, stride in arch.blocks():
        out = planes * arch.expansion
        if arch.block == "basic":
            conv(f"{prefix}.conv1", planes, inplanes, 3)
            bn(f"{prefix}.bn1", planes)
            conv(f"{prefix}.conv2", planes, planes, 3)
            bn(f"{prefix}.bn2", planes)
        else:
            width = int(planes * arch.base_width / 64) * arch.cardinality
            conv(f"{prefix}.conv1", width, inplanes, 1)
            bn(f"{prefix}.bn1", width)
            conv(f"{prefix}.conv2", width, width // arch.cardinality, 3)
            bn(f"{prefix}.bn2", width)
            conv(f"{prefix}.conv3", out, width, 1)
            bn(f"{prefix}.bn3", out)
        if arch.se:
            reduced = make_divisible(out / 16)
            conv(f"{prefix}.se.fc1", reduced, out, 1)
            shapes[f"{prefix}.se.fc1.bias"] = (reduced,)
            conv(f"{prefix}.se.fc2", out, reduced, 1)
            shapes[f"{prefix}.se.fc2.bias"] = (out,)
        if stride != 1 or inplanes != out:
            conv(f"{prefix}.downsample.0", out, inplanes, 1)
            bn(f"{prefix}.downsample.1", out)
    shapes["fc.weight"] = (arch.classes, arch.features)
    shapes["fc.bias"] = (arch.classes,)
    return shapes


def random_state(arch, seed=0):
    """A random state dict of `arch` with plausible BN statistics."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in torch_layout(arch).items():
        leaf = name.rsplit(".", 1)[1]
        if leaf == "num_batches_tracked":
            value = np.array(1234, dtype=np.int64)
        elif leaf == "running_var":
            value = rng.uniform(0.5, 1.5, shape)
        elif leaf == "weight" and len(shape) == 1:  # BN scale
            value = rng.uniform(0.5, 1.5, shape)
        elif name == "fc.weight":  # small enough that the softmax does not saturate
            value = rng.normal(0, 0.15 / math.sqrt(shape[1]), shape)
        elif leaf in ("bias", "running_mean"):
            value = rng.normal(0, 0.1, shape)
        else:  # He-normal convolution / linear weights
            value = rng.normal(0, math.sqrt(2 / math.prod(shape[1:])), shape)
        state[name] = value if leaf == "num_batches_tracked" else value.astype(np.float32)
    return state


# ---------------------------------------------------------------------------
# A NumPy forward pass of the PyTorch network (NCHW, eval mode).


def np_conv(x, w, stride=1, groups=1, bias=None):
    """PyTorch's Conv2d: x (N, C, H, W), w (O, C / groups, k, k), padding k // 2."""
    k = w.shape[-1]
    pad = k // 2
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))
    windows = windows[:, :, ::stride, ::stride]  # (N, C, Ho, Wo, k, k)
    cin, cout = w.shape[1], w.shape[0] // groups
    out = np.concatenate([
        np.tensordot(windows[:, g * cin:(g + 1) * cin], w[g * cout:(g + 1) * cout],
                     axes=([1, 4, 5], [1, 2, 3]))
        for g in range(groups)], axis=-1)  # (N, Ho, Wo, O)
    out = out.transpose(0, 3, 1, 2)
    return out if bias is None else out + bias[None, :, None, None]


def np_bn(x, state, name):
    def p(part):
        return state[f"{name}.{part}"][None, :, None, None]

    return (x - p("running_mean")) / np.sqrt(p("running_var") + BN_EPS) * p("weight") + p("bias")


def relu(x):
    return np.maximum(x, 0)


def np_forward(arch, state, images_nhwc):
    """Logits and pooled features of the PyTorch network, in float64."""
    s = {k: v.astype(np.float64) for k, v in state.items()}
    x = images_nhwc.astype(np.float64).transpose(0, 3, 1, 2)
    x = relu(np_bn(np_conv(x, s["conv1.weight"], stride=2), s, "bn1"))
    x = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    x = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))[:, :, ::2, ::2]
    x = x.max(axis=(4, 5))
    for prefix, _, _, stride in arch.blocks():
        def w(name, prefix=prefix):
            return s[f"{prefix}.{name}.weight"]

        if arch.block == "basic":
            out = relu(np_bn(np_conv(x, w("conv1"), stride), s, f"{prefix}.bn1"))
            out = np_bn(np_conv(out, w("conv2")), s, f"{prefix}.bn2")
        else:
            out = relu(np_bn(np_conv(x, w("conv1")), s, f"{prefix}.bn1"))
            out = relu(np_bn(np_conv(out, w("conv2"), stride, groups=arch.cardinality), s,
                             f"{prefix}.bn2"))
            out = np_bn(np_conv(out, w("conv3")), s, f"{prefix}.bn3")
        if arch.se:
            z = out.mean(axis=(2, 3), keepdims=True)
            z = relu(np_conv(z, w("se.fc1"), bias=s[f"{prefix}.se.fc1.bias"]))
            z = np_conv(z, w("se.fc2"), bias=s[f"{prefix}.se.fc2.bias"])
            out = out / (1 + np.exp(-z))
        shortcut = x
        if f"{prefix}.downsample.0.weight" in s:
            shortcut = np_bn(np_conv(x, w("downsample.0"), stride), s, f"{prefix}.downsample.1")
        x = relu(out + shortcut)
    features = x.mean(axis=(2, 3))
    return features @ s["fc.weight"].T + s["fc.bias"], features


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def images(seed=1):
    """Two different images: the second has more contrast and another mean."""
    x = np.random.default_rng(seed).normal(0, 1, (2, INPUT, INPUT, 3))
    x[1] = 1.5 * x[1] + 0.5
    return x.astype(np.float32)


def build(name, **kwargs):
    kwargs = {"depths": (1, 1, 1, 1), "input_shape": (INPUT, INPUT, 3), "classes": CLASSES,
              **kwargs}
    return kres.build_model(name, **kwargs)


def snapshot(model):
    return [w.numpy().copy() for w in model.weights]


def assert_unchanged(model, before):
    after = snapshot(model)
    assert len(after) == len(before)
    assert all(np.array_equal(a, b) for a, b in zip(after, before))


def assert_matches(got_logits, expected_logits):
    """Logits agree relatively, probabilities absolutely, and vary between images."""
    scale = max(1.0, float(np.abs(expected_logits).max()))
    assert np.abs(got_logits - expected_logits).max() / scale < 1e-4
    got, expected = softmax(got_logits.astype(np.float64)), softmax(expected_logits)
    assert np.abs(got - expected).max() < 1e-4
    # Not a trivial agreement: the predictions differ between images and classes.
    assert np.abs(expected - expected.mean(axis=0)).max() > 1e-2
    assert expected.max() < 0.999


# ---------------------------------------------------------------------------
# Outputs.


@pytest.mark.parametrize("name", list(ARCHS))
def test_outputs_match_numpy_reference(tmp_path, name):
    arch = ARCHS[name]
    state = random_state(arch)
    path = write_safetensors(tmp_path / f"{name}.safetensors", state, metadata={"format": "pt"})
    model = build(name, classifier_activation=None)
    assert load_timm_weights(model, path) is model

    x = images()
    expected, _ = np_forward(arch, state, x)
    assert_matches(model.predict(x, verbose=0), expected)


def test_softmax_model_and_state_dict_argument():
    arch = ARCHS["resnet18"]
    state = random_state(arch, seed=3)
    model = load_timm_weights(build("resnet18"), state)
    x = images(seed=4)
    probabilities = model.predict(x, verbose=0)
    expected = softmax(np_forward(arch, state, x)[0])
    assert np.abs(probabilities - expected).max() < 1e-4
    assert np.abs(expected - expected.mean(axis=0)).max() > 1e-2


def test_feature_extractor_skips_classifier(tmp_path):
    arch = ARCHS["resnext50_32x4d"]
    state = random_state(arch, seed=5)
    path = write_safetensors(tmp_path / "w.safetensors", state)
    model = build("resnext50_32x4d", include_top=False, pooling="avg")
    load_timm_weights(model, path)
    x = images(seed=6)
    _, expected = np_forward(arch, state, x)
    got = model.predict(x, verbose=0)
    assert np.abs(got - expected).max() / np.abs(expected).max() < 1e-4


# ---------------------------------------------------------------------------
# The reader.


def test_reads_every_dtype(tmp_path):
    # bfloat16 words: 1.0, -2.0, 0.15625 (exact), 3.140625 (0x4049), +inf.
    bf16 = np.array([0x3F80, 0xC000, 0x3E20, 0x4049, 0x7F80], dtype="<u2")
    half = np.array([[0.5, -1.25], [65504.0, 2.0 ** -24]], dtype=np.float16)
    tensors = {
        "bf16": ("BF16", bf16.tobytes(), (5,)),
        # F16 written as raw bytes: 1.0 (0x3C00), -0.5 (0xB800), 1/3 rounded (0x3555).
        "f16_raw": ("F16", np.array([0x3C00, 0xB800, 0x3555], "<u2").tobytes(), (3,)),
        "f16": half,
        "f64": np.array([np.pi, -1e300]),
        "f32": np.arange(6, dtype=np.float32).reshape(2, 3, 1),
        "i64": np.array(1234, dtype=np.int64),
        "i32": np.array([-(2 ** 31), 7], dtype=np.int32),
        "i16": np.array([-300, 300], dtype=np.int16),
        "i8": np.array([-128, 127], dtype=np.int8),
        "u8": np.array([0, 255], dtype=np.uint8),
        "bool": np.array([True, False, True]),
        "empty": np.zeros((0, 4), dtype=np.float32),
    }
    path = write_safetensors(tmp_path / "t.safetensors", tensors, metadata={"k": "v"})
    got = read_safetensors(path)
    assert set(got) == set(tensors)
    np.testing.assert_array_equal(
        got["bf16"], np.array([1.0, -2.0, 0.15625, 3.140625, np.inf], dtype=np.float32))
    assert got["bf16"].dtype == np.float32
    np.testing.assert_array_equal(got["f16_raw"], np.array([1.0, -0.5, 0.333251953125],
                                                           dtype=np.float16))
    assert got["f16_raw"].dtype == np.float16
    for name, value in tensors.items():
        if not isinstance(value, tuple):
            assert got[name].dtype == value.dtype, name
            assert got[name].shape == value.shape, name
            np.testing.assert_array_equal(got[name], value)
    got["f32"][0, 0, 0] = 9  # arrays are independent and writable


def _corrupt(tmp_path, how):
    path = tmp_path / "bad.safetensors"
    good = write_safetensors(tmp_path / "good.safetensors",
                             {"a.weight": np.ones((4, 3), np.float32)}).read_bytes()
    header_len = struct.unpack("<Q", good[:8])[0]
    header = json.loads(good[8:8 + header_len])
    if how == "too short":
        data = good[:5]
    elif how == "truncated header":
        data = good[:8 + header_len // 2]
    elif how == "truncated data":
        data = good[:-4]
    elif how == "not json":
        data = good[:8] + b"{" * header_len + good[8 + header_len:]
    else:
        header["a.weight"] = {
            "offsets": {**header["a.weight"], "data_offsets": [0, 40]},
            "dtype": {**header["a.weight"], "dtype": "F8_E4M3"},
            "shape": {**header["a.weight"], "shape": [4, "3"]},
        }[how]
        text = json.dumps(header).encode()
        data = struct.pack("<Q", len(text)) + text + good[8 + header_len:]
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("how, message", [
    ("too short", "too short"),
    ("truncated header", "truncated"),
    ("truncated data", "outside the 44-byte data buffer"),
    ("not json", "not valid JSON"),
    ("offsets", "spans 40 bytes, but shape [4, 3] of F32 takes 48"),
    ("dtype", "unsupported dtype"),
    ("shape", "non-negative integers"),
])
def test_rejects_corrupted_files(tmp_path, how, message):
    path = _corrupt(tmp_path, how)
    with pytest.raises(ValueError, match="Received: ") as info:
        read_safetensors(path)
    text = str(info.value)
    assert message in text
    assert str(path) in text
    if how not in ("too short", "truncated header", "not json"):
        assert "'a.weight'" in text


def test_corrupted_file_leaves_model_unchanged(tmp_path):
    model = build("resnet18")
    before = snapshot(model)
    with pytest.raises(ValueError, match="truncated"):
        load_timm_weights(model, _corrupt(tmp_path, "truncated data"))
    assert_unchanged(model, before)


# ---------------------------------------------------------------------------
# Mismatches: reported in full, and nothing is assigned.


def _load_modified(tmp_path, change, name="resnet18", **kwargs):
    state = random_state(ARCHS[name])
    change(state)
    path = write_safetensors(tmp_path / "w.safetensors", state)
    model = build(name, **kwargs)
    before = snapshot(model)
    with pytest.raises(ValueError) as info:
        load_timm_weights(model, path)
    assert_unchanged(model, before)
    assert str(info.value).endswith(f"Received: path={str(path)!r}")
    assert "nothing was loaded" in str(info.value)
    return str(info.value)


def test_wrong_shape_names_tensor_and_layer(tmp_path):
    def change(state):
        state["layer4.0.conv2.weight"] = state["layer4.0.conv2.weight"][:, :256]

    text = _load_modified(tmp_path, change)
    assert ("tensor 'layer4.0.conv2.weight' has shape (512, 256, 3, 3); kres layer "
            "'conv5_block1_2_conv' expects (512, 512, 3, 3)") in text
    assert "(Keras shape (3, 3, 512, 512))" in text


def test_grouped_kernel_shape_checked(tmp_path):
    def change(state):  # a dense 3x3 where ResNeXt has 32 groups
        w = state["layer1.0.conv2.weight"]
        state["layer1.0.conv2.weight"] = np.tile(w, (1, 32, 1, 1))

    text = _load_modified(tmp_path, change, name="resnext50_32x4d")
    assert ("tensor 'layer1.0.conv2.weight' has shape (128, 128, 3, 3); kres layer "
            "'conv2_block1_2_conv' expects (128, 4, 3, 3)") in text


def test_missing_tensors_are_listed(tmp_path):
    def change(state):
        for name in [n for n in state if n.startswith("layer3.0.bn1.")]:
            del state[name]

    text = _load_modified(tmp_path, change)
    assert "4 tensors that the model needs are missing" in text
    assert "'layer3.0.bn1.weight'" in text and "'layer3.0.bn1.running_var'" in text


def test_unexpected_tensors_are_listed(tmp_path):
    def change(state):
        for i in range(7):
            state[f"extra.{i}.weight"] = np.zeros(3, np.float32)

    text = _load_modified(tmp_path, change)
    assert "7 tensors have no kres counterpart in 'resnet18'" in text
    assert "'extra.0.weight'" in text and "(2 more)" in text


def test_wrong_class_count(tmp_path):
    def change(state):
        state["fc.weight"] = np.zeros((1000, 512), np.float32)
        state["fc.bias"] = np.zeros(1000, np.float32)

    text = _load_modified(tmp_path, change)
    assert "'fc.weight' has 1000 outputs, but the model was built with classes=5" in text
    assert "1 problem;" in text  # fc.bias is not reported again


def test_mismatch_in_deep_model_lists_every_problem(tmp_path):
    def change(state):  # a resnet34-depth state dict into a (1, 1, 1, 1) model
        for name, value in random_state(TorchArch("basic", depths=(1, 2, 1, 1))).items():
            state.setdefault(name, value)
        del state["layer2.0.conv1.weight"]

    text = _load_modified(tmp_path, change)
    assert "1 tensor that the model needs is missing: 'layer2.0.conv1.weight'" in text
    assert "have no kres counterpart" in text and "'layer2.1.bn1.bias'" in text


# ---------------------------------------------------------------------------
# Models outside timm's layout are refused before the file is read.


@pytest.mark.parametrize("name, kwargs, message", [
    ("resnet50v2", {}, "pre-activation (v2) network"),
    ("cifar_resnet20", {"depths": (1, 1, 1), "input_shape": (32, 32, 3)}, "CIFAR network"),
    ("resnet50", {"conv_bias": True, "stride_on": "1x1"}, "keras.applications layout"),
    ("resnet50", {"stride_on": "1x1"}, "stride_on='1x1'"),
    ("resnet50", {"downsample": "last"}, "downsample='first'"),
    ("resnet18", {"shortcut": "none"}, "plain network"),
    ("resnet18", {"shortcut": "A"}, "option A"),
])
def test_refuses_other_layouts(tmp_path, name, kwargs, message):
    model = build(name, **kwargs)
    before = snapshot(model)
    with pytest.raises(ValueError) as info:
        load_timm_weights(model, tmp_path / "never_read.safetensors")
    text = str(info.value)
    assert message in text
    assert "ResNet v1/v1.5" in text and "ResNeXt" in text  # what is supported
    assert text.endswith(f"Received: model={model.name!r}")
    assert_unchanged(model, before)


def test_refuses_other_families():
    # A DenseNet-like graph: ResNet's stem, but a layer timm's ResNet does not have.
    image = layers.Input((INPUT, INPUT, 3))
    x = layers.Conv2D(8, 7, strides=2, padding="same", use_bias=False, name="conv1_conv")(image)
    x = layers.BatchNormalization(name="conv1_bn")(x)
    x = layers.Conv2D(8, 1, use_bias=False, name="pool2_conv")(x)
    model = keras.Model(image, x, name="densenet_like")
    with pytest.raises(ValueError, match="layer 'pool2_conv' has weights but no counterpart"):
        load_timm_weights(model, {})


def test_families_without_a_state_dict_loader_are_refused_before_building(monkeypatch):
    # Each family declares whether its timm/torchvision weights load (ResNet's do).
    from kres.models import registry

    def build(*args, **kwargs):
        raise AssertionError("a model was built")

    entry = registry.lookup("densenet121")
    monkeypatch.setitem(registry._MODELS, "densenet121", entry.__class__(
        entry.family, entry.constructor, entry.spec, build))
    with pytest.raises(ValueError, match=r"'densenet121' is a densenet network; timm/"
                                         r"torchvision state dicts .* resnet family only"):
        kres.build_model("densenet121", weights="w.safetensors")


def test_a_family_builder_leaves_state_dicts_to_the_registry(tmp_path):
    # The names are the family's to map: a builder called directly refuses the file and
    # says where it loads.
    from kres.models.families import resnet

    path = tmp_path / "w.safetensors"
    path.write_bytes(b"")
    spec = resnet.SPECS["resnet18"]
    with pytest.raises(ValueError, match=r"loads through its family's mapping: pass it to "
                                         r"kres.build_model.*Received: weights="):
        resnet.build_resnet(spec, weights=str(path), input_shape=(32, 32, 3))


def test_refuses_non_model():
    with pytest.raises(ValueError, match="Received: model='resnet50'"):
        load_timm_weights("resnet50", {})


# ---------------------------------------------------------------------------
# A real PyTorch network, when PyTorch is installed (it is no kres dependency).


def _torch_net(arch):
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class SE(nn.Module):
        def __init__(self, channels, reduced):
            super().__init__()
            self.fc1 = nn.Conv2d(channels, reduced, 1)
            self.fc2 = nn.Conv2d(reduced, channels, 1)

        def forward(self, x):
            s = torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))
            return x * torch.sigmoid(self.fc2(s))

    class Block(nn.Module):
        def __init__(self, inplanes, planes, stride):
            super().__init__()
            out = planes * arch.expansion
            if arch.block == "basic":
                convs = [(inplanes, planes, 3, stride, 1), (planes, out, 3, 1, 1)]
            else:
                width = int(planes * arch.base_width / 64) * arch.cardinality
                convs = [(inplanes, width, 1, 1, 1), (width, width, 3, stride, arch.cardinality),
                         (width, out, 1, 1, 1)]
            for i, (cin, cout, k, s, g) in enumerate(convs, 1):
                setattr(self, f"conv{i}", nn.Conv2d(cin, cout, k, s, k // 2, groups=g,
                                                    bias=False))
                setattr(self, f"bn{i}", nn.BatchNorm2d(cout))
            self.count = len(convs)
            self.se = SE(out, make_divisible(out / 16)) if arch.se else None
            self.downsample = None
            if stride != 1 or inplanes != out:
                self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False),
                                                nn.BatchNorm2d(out))

        def forward(self, x):
            out = x
            for i in range(1, self.count + 1):
                out = getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(out))
                if i < self.count:
                    out = torch.relu(out)
            if self.se is not None:
                out = self.se(out)
            return torch.relu(out + (x if self.downsample is None else self.downsample(x)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            stages = {}
            for prefix, inplanes, planes, stride in arch.blocks():
                stages.setdefault(prefix.split(".")[0], []).append(Block(inplanes, planes, stride))
            for stage, blocks in stages.items():
                setattr(self, stage, nn.Sequential(*blocks))
            self.stages = list(stages)
            self.fc = nn.Linear(arch.features, arch.classes)

        def forward(self, x):
            x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
            for stage in self.stages:
                x = getattr(self, stage)(x)
            return self.fc(x.mean((2, 3)))

    return torch, Net()


@pytest.mark.torch
@pytest.mark.parametrize("name", list(ARCHS))
def test_outputs_match_pytorch(tmp_path, name):
    arch = ARCHS[name]
    torch, net = _torch_net(arch)
    # strict loading checks the description of the layout against real PyTorch modules.
    net.load_state_dict({k: torch.from_numpy(np.asarray(v))
                         for k, v in random_state(arch, seed=8).items()})
    net.eval()
    state = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    assert {k: v.shape for k, v in state.items()} == torch_layout(arch)
    path = write_safetensors(tmp_path / "torch.safetensors", state)

    x = images(seed=7)
    with torch.no_grad():
        expected = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).double().numpy()
    model = load_timm_weights(build(name, classifier_activation=None), path)
    got = model.predict(x, verbose=0)
    print(f"{name}: max |kres - torch| logits {np.abs(got - expected).max():.3g}, "
          f"probabilities {np.abs(softmax(got) - softmax(expected)).max():.3g}")
    assert_matches(got, expected)
