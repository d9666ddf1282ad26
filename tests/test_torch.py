"""kres against the PyTorch implementations themselves: torchvision's and timm's modules.

PyTorch is never a dependency of kres. These tests run where torch,
torchvision and timm are installed, as in the environment `make test-torch`
builds (``.venv-torch``: torch 2.14.1, torchvision 0.29.1, timm), and are
skipped elsewhere (the default suite, CI).

- Sizes: every kres model with a torchvision or timm counterpart has its
  trainable parameters, and its multiply-accumulates as PyTorch's own FLOP
  counter counts them (``torch.utils.flop_counter``, FLOPs / 2) at the default
  input size.
- Outputs: real torchvision and timm networks with random weights (batch-norm
  statistics included), their state dicts written with the ``safetensors``
  package, loaded into kres through ``weights=`` and compared in inference
  with the PyTorch network run in float64.
"""

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
timm = pytest.importorskip("timm")
safetensors_torch = pytest.importorskip("safetensors.torch")

import kres  # noqa: E402
from kres.models import catalog  # noqa: E402

TORCHVISION = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
               "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
               "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19",
               "vgg19_bn", "densenet121", "densenet169", "densenet201", "alexnet"]
# kres name: timm name (timm has no resnext101_32x4d in torchvision).
TIMM = {"se_resnet50": "seresnet50", "se_resnet101": "seresnet101",
        "se_resnet152": "seresnet152", "se_resnext50_32x4d": "seresnext50_32x4d",
        "se_resnext101_32x4d": "seresnext101_32x4d", "resnext101_32x4d": "resnext101_32x4d"}


def _pytorch_model(name):
    if name == "googlenet_bn":
        return torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
    if name in TIMM:
        return timm.create_model(TIMM[name], pretrained=False)
    return getattr(torchvision.models, name)(weights=None)


def _sizes(net, size):
    from torch.utils.flop_counter import FlopCounterMode

    net.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 3, size, size))
    params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return params, counter.get_total_flops() // 2


@pytest.mark.parametrize("name", [*TORCHVISION, *TIMM, "googlenet_bn"])
def test_sizes_equal_the_pytorch_implementation(name):
    entry = catalog.MODELS[name]  # tests/test_models.py checks the catalog against kres
    params, macs = _sizes(_pytorch_model(name), entry.default_size)
    assert (entry.params, entry.macs) == (params, macs)


def _randomize(net, seed):
    """Random weights and batch-norm statistics, so agreement is no accident."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0, 0.1, generator=generator)
                module.running_mean.normal_(0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
            elif isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0, (2 / fan_in) ** 0.5, generator=generator)
                if module.bias is not None:
                    module.bias.normal_(0, 0.1, generator=generator)
    return net.eval()


@pytest.mark.parametrize("name, make", [
    ("resnet18", lambda: torchvision.models.resnet18(num_classes=10)),
    ("resnet50", lambda: torchvision.models.resnet50(num_classes=10)),
    ("resnext50_32x4d", lambda: torchvision.models.resnext50_32x4d(num_classes=10)),
    ("wide_resnet50_2", lambda: torchvision.models.wide_resnet50_2(num_classes=10)),
    ("se_resnet50", lambda: timm.create_model("seresnet50", num_classes=10)),
    ("se_resnext50_32x4d", lambda: timm.create_model("seresnext50_32x4d", num_classes=10)),
])
def test_outputs_equal_the_pytorch_model(tmp_path, name, make):
    net = _randomize(make(), seed=3)
    path = str(tmp_path / f"{name}.safetensors")
    safetensors_torch.save_file({k: v.contiguous() for k, v in net.state_dict().items()}, path)
    model = kres.build_model(name, classes=10, input_shape=(64, 64, 3), weights=path,
                             classifier_activation=None)
    x = np.random.default_rng(4).normal(size=(4, 64, 64, 3)).astype("float32")
    images = torch.from_numpy(x.transpose(0, 3, 1, 2))
    with torch.no_grad():
        float32 = net(images).numpy()
        exact = net.double()(images.double()).numpy()  # PyTorch in float64: the reference
    got = model.predict(x, verbose=0)
    spread = float(np.abs(exact - exact.mean(axis=0)).max())
    ours, theirs = float(np.abs(got - exact).max()), float(np.abs(float32 - exact).max())
    print(f"{name}: max |logits - PyTorch float64|: kres {ours:.3g}, PyTorch float32 "
          f"{theirs:.3g} (largest logit {np.abs(exact).max():.3g}, spread across images "
          f"{spread:.3g})")
    assert spread > 1e-2  # the images get different logits: the check is not trivial
    # As close to the exact result as PyTorch's own float32 computation is (random
    # SE gates make these networks sensitive to rounding), and close in any case.
    assert ours <= 3 * theirs + 1e-5 * float(np.abs(exact).max())
    assert ours < 2e-3 * float(np.abs(exact).max())


def _torch_peer():
    """benchmarks/torch_peer.py, the PyTorch program `kres train` is timed against."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parents[1] / "benchmarks" / "torch_peer.py"
    spec = importlib.util.spec_from_file_location("torch_peer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmarks_pytorch_peer_is_kress_resnet20():
    """The peer's ResNet-20 computes the network `kres train` trains on Fashion-MNIST:
    the same parameters, and kres's random weights, copied layer by layer in order,
    give the same logits for the same pixels (normalisation, option A shortcuts with
    their zero channels on both sides, the classifier)."""
    import keras

    from kres.models.inputs import image_input
    from kres.preprocessing import Preprocessing

    peer = _torch_peer().peer_resnet20()
    model = kres.CifarResNet20(classes=10, classifier_activation=None, input_tensor=image_input(
        Preprocessing.for_dataset("fashion_mnist", (28, 28, 1))))
    layers = [layer for layer in model.layers if isinstance(
        layer, keras.layers.Conv2D | keras.layers.BatchNormalization | keras.layers.Dense)]
    modules = [m for m in peer.modules() if isinstance(
        m, torch.nn.Conv2d | torch.nn.BatchNorm2d | torch.nn.Linear)]
    assert [type(m).__name__ for m in modules] == [
        {"Conv2D": "Conv2d", "Dense": "Linear"}.get(type(layer).__name__, "BatchNorm2d")
        for layer in layers]
    assert model.count_params() == sum(p.numel() for p in peer.parameters()) + sum(
        b.numel() for n, b in peer.named_buffers() if "running" in n)
    rng = np.random.default_rng(6)
    with torch.no_grad():
        for layer, module in zip(layers, modules, strict=True):
            if isinstance(module, torch.nn.BatchNorm2d):
                values = [rng.uniform(0.5, 1.5, module.num_features), rng.normal(0, 0.1, (
                    2, module.num_features)), rng.uniform(0.5, 1.5, module.num_features)]
                values = [values[0], values[1][0], values[1][1], values[2]]
                targets = [module.weight, module.bias, module.running_mean, module.running_var]
                for variable, target, value in zip(layer.weights, targets, values, strict=True):
                    variable.assign(value.astype("float32"))
                    target.copy_(torch.from_numpy(value))
                continue
            kernel = rng.normal(0, (2 / np.prod(layer.kernel.shape[:-1])) ** 0.5,
                                layer.kernel.shape).astype("float32")
            layer.kernel.assign(kernel)
            module.weight.copy_(torch.from_numpy(
                kernel.T if kernel.ndim == 2 else kernel.transpose(3, 2, 0, 1)))
            if module.bias is not None:
                bias = rng.normal(0, 0.1, module.bias.shape).astype("float32")
                layer.bias.assign(bias)
                module.bias.copy_(torch.from_numpy(bias))
        pixels = rng.integers(0, 256, (4, 28, 28, 1)).astype("float32")
        want = peer.eval()(torch.from_numpy(pixels.transpose(0, 3, 1, 2))).numpy()
    got = model.predict(pixels, verbose=0)
    assert np.abs(want - want.mean(axis=0)).max() > 1e-2  # the images differ: not trivial
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
