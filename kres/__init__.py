"""kres: the classic image-classification networks for Keras 3, exact to their papers.

>>> import kres
>>> model = kres.ResNeXt50(classes=10, input_shape=(64, 64, 3))
>>> kres.list_models("cifar_resnet*")[:2]
['cifar_resnet110', 'cifar_resnet1202']
"""

__version__ = "0.1.0"

from kres import layers  # noqa: E402,F401  (registers the serializable kres layers)
from kres.models.googlenet import strip_auxiliary  # noqa: E402
from kres.registry import build_model, constructor, get_spec, list_models  # noqa: E402
from kres.stats import count_macs, count_params  # noqa: E402
from kres.timm import load_timm_weights  # noqa: E402
from kres.weights import decode_predictions, load_keras_weights, preprocess_input  # noqa: E402

# Public constructor name -> registry name.
CONSTRUCTORS = {
    "ResNet18": "resnet18",
    "ResNet34": "resnet34",
    "ResNet50": "resnet50",
    "ResNet101": "resnet101",
    "ResNet152": "resnet152",
    "ResNet50V2": "resnet50v2",
    "ResNet101V2": "resnet101v2",
    "ResNet152V2": "resnet152v2",
    "ResNeXt50": "resnext50_32x4d",
    "ResNeXt101": "resnext101_32x4d",
    "ResNeXt101_32x8d": "resnext101_32x8d",
    "ResNeXt101_64x4d": "resnext101_64x4d",
    "WideResNet50": "wide_resnet50_2",
    "WideResNet101": "wide_resnet101_2",
    "SEResNet50": "se_resnet50",
    "SEResNet101": "se_resnet101",
    "SEResNet152": "se_resnet152",
    "SEResNeXt50": "se_resnext50_32x4d",
    "SEResNeXt101": "se_resnext101_32x4d",
    "CifarResNet20": "cifar_resnet20",
    "CifarResNet32": "cifar_resnet32",
    "CifarResNet44": "cifar_resnet44",
    "CifarResNet56": "cifar_resnet56",
    "CifarResNet110": "cifar_resnet110",
    "CifarResNet1202": "cifar_resnet1202",
    "CifarPlain20": "cifar_plain20",
    "CifarPlain32": "cifar_plain32",
    "CifarPlain44": "cifar_plain44",
    "CifarPlain56": "cifar_plain56",
    "CifarPlain110": "cifar_plain110",
    "CifarPreActResNet110": "cifar_preact_resnet110",
    "CifarPreActResNet164": "cifar_preact_resnet164",
    "ResNeXt29_8x64d": "resnext29_8x64d",
    "ResNeXt29_16x64d": "resnext29_16x64d",
    "ResNeXt29_32x4d": "resnext29_32x4d",
    "WRN16_4": "wrn16_4",
    "WRN16_8": "wrn16_8",
    "WRN28_10": "wrn28_10",
    "WRN40_4": "wrn40_4",
    "DenseNet121": "densenet121",
    "DenseNet169": "densenet169",
    "DenseNet201": "densenet201",
    "DenseNetBC100": "densenet_bc_100_12",
    "DenseNetBC250": "densenet_bc_250_24",
    "DenseNetBC190": "densenet_bc_190_40",
    "VGG11": "vgg11",
    "VGG13": "vgg13",
    "VGG16": "vgg16",
    "VGG19": "vgg19",
    "VGG11BN": "vgg11_bn",
    "VGG13BN": "vgg13_bn",
    "VGG16BN": "vgg16_bn",
    "VGG19BN": "vgg19_bn",
    "GoogLeNet": "googlenet",
    "GoogLeNetBN": "googlenet_bn",
    "AlexNet": "alexnet",
    "AlexNetOriginal": "alexnet_original",
}
globals().update({public: constructor(key, public) for public, key in CONSTRUCTORS.items()})

__all__ = ["build_model", "count_macs", "count_params", "get_spec", "list_models",
           "load_keras_weights", "load_timm_weights", "preprocess_input", "decode_predictions",
           "strip_auxiliary", "CONSTRUCTORS", "__version__", *CONSTRUCTORS]
