"""Every registered model at a glance, without building any (generated).

``python -m kres.models.registry`` writes this file from the registry; the tests
check each row against the model it describes. Counts are at the default
input size with the default classes, as `kres.count_params` and
`kres.count_macs` give them. ``imagenet_layout``: the spec fields of the
published ImageNet weights' layout (``None``: no published weights).
"""

from collections import namedtuple

Entry = namedtuple("Entry", "constructor family default_size default_classes "
                   "params macs description imagenet_layout")

MODELS = {
    "alexnet": Entry(
        "AlexNet", "alexnet", 224, 1000, 61100840, 714188480,
        "single-tower AlexNet, convolutions 64/192/384/256/256, fully connected 4096, 224x224 input",
        None),
    "alexnet_original": Entry(
        "AlexNetOriginal", "alexnet", 227, 1000, 60965224, 724406816,
        "two-tower AlexNet with local response normalisation, convolutions 96/256/384/384/256, fully connected 4096, 227x227 input",
        None),
    "cifar_plain110": Entry(
        "CifarPlain110", "resnet", 32, 10, 1727962, 252887680,
        "basic plain network (no shortcuts), v1, stride on 3x3, depths 18-18-18, widths 16/32/64, cifar stem, shortcut none, 32x32 input",
        None),
    "cifar_plain20": Entry(
        "CifarPlain20", "resnet", 32, 10, 269722, 40551040,
        "basic plain network (no shortcuts), v1, stride on 3x3, depths 3-3-3, widths 16/32/64, cifar stem, shortcut none, 32x32 input",
        None),
    "cifar_plain32": Entry(
        "CifarPlain32", "resnet", 32, 10, 464154, 68862592,
        "basic plain network (no shortcuts), v1, stride on 3x3, depths 5-5-5, widths 16/32/64, cifar stem, shortcut none, 32x32 input",
        None),
    "cifar_plain44": Entry(
        "CifarPlain44", "resnet", 32, 10, 658586, 97174144,
        "basic plain network (no shortcuts), v1, stride on 3x3, depths 7-7-7, widths 16/32/64, cifar stem, shortcut none, 32x32 input",
        None),
    "cifar_plain56": Entry(
        "CifarPlain56", "resnet", 32, 10, 853018, 125485696,
        "basic plain network (no shortcuts), v1, stride on 3x3, depths 9-9-9, widths 16/32/64, cifar stem, shortcut none, 32x32 input",
        None),
    "cifar_preact_resnet110": Entry(
        "CifarPreActResNet110", "resnet", 32, 10, 1730522, 253149824,
        "basic ResNet, v2 pre-activation, depths 18-18-18, widths 16/32/64, cifar stem, shortcut B, 32x32 input",
        None),
    "cifar_preact_resnet164": Entry(
        "CifarPreActResNet164", "resnet", 32, 10, 1703258, 247646720,
        "bottleneck ResNet, v2 pre-activation, depths 18-18-18, widths 16/32/64, cifar stem, shortcut B, 32x32 input",
        None),
    "cifar_resnet110": Entry(
        "CifarResNet110", "resnet", 32, 10, 1727962, 252887680,
        "basic ResNet, v1, stride on 3x3, depths 18-18-18, widths 16/32/64, cifar stem, shortcut A, 32x32 input",
        None),
    "cifar_resnet1202": Entry(
        "CifarResNet1202", "resnet", 32, 10, 19421274, 2829238912,
        "basic ResNet, v1, stride on 3x3, depths 200-200-200, widths 16/32/64, cifar stem, shortcut A, 32x32 input",
        None),
    "cifar_resnet20": Entry(
        "CifarResNet20", "resnet", 32, 10, 269722, 40551040,
        "basic ResNet, v1, stride on 3x3, depths 3-3-3, widths 16/32/64, cifar stem, shortcut A, 32x32 input",
        None),
    "cifar_resnet32": Entry(
        "CifarResNet32", "resnet", 32, 10, 464154, 68862592,
        "basic ResNet, v1, stride on 3x3, depths 5-5-5, widths 16/32/64, cifar stem, shortcut A, 32x32 input",
        None),
    "cifar_resnet44": Entry(
        "CifarResNet44", "resnet", 32, 10, 658586, 97174144,
        "basic ResNet, v1, stride on 3x3, depths 7-7-7, widths 16/32/64, cifar stem, shortcut A, 32x32 input",
        None),
    "cifar_resnet56": Entry(
        "CifarResNet56", "resnet", 32, 10, 853018, 125485696,
        "basic ResNet, v1, stride on 3x3, depths 9-9-9, widths 16/32/64, cifar stem, shortcut A, 32x32 input",
        None),
    "densenet121": Entry(
        "DenseNet121", "densenet", 224, 1000, 7978856, 2834161664,
        "DenseNet-BC, k=32, layers per block 6-12-24-16, compression 0.5, imagenet stem, 224x224 input",
        {}),
    "densenet169": Entry(
        "DenseNet169", "densenet", 224, 1000, 14149480, 3359843328,
        "DenseNet-BC, k=32, layers per block 6-12-32-32, compression 0.5, imagenet stem, 224x224 input",
        {}),
    "densenet201": Entry(
        "DenseNet201", "densenet", 224, 1000, 20013928, 4291365888,
        "DenseNet-BC, k=32, layers per block 6-12-48-32, compression 0.5, imagenet stem, 224x224 input",
        {}),
    "densenet_bc_100_12": Entry(
        "DenseNetBC100", "densenet", 32, 10, 769162, 287929692,
        "DenseNet-BC, k=12, layers per block 16-16-16, compression 0.5, cifar stem, 32x32 input",
        None),
    "densenet_bc_190_40": Entry(
        "DenseNetBC190", "densenet", 32, 10, 25624430, 9301945740,
        "DenseNet-BC, k=40, layers per block 31-31-31, compression 0.5, cifar stem, 32x32 input",
        None),
    "densenet_bc_250_24": Entry(
        "DenseNetBC250", "densenet", 32, 10, 15324406, 5418785724,
        "DenseNet-BC, k=24, layers per block 41-41-41, compression 0.5, cifar stem, 32x32 input",
        None),
    "googlenet": Entry(
        "GoogLeNet", "googlenet", 224, 1000, 6998552, 1582671872,
        "GoogLeNet (Inception v1), 9 inception modules, 5x5 third branch, 224x224 input",
        None),
    "googlenet_bn": Entry(
        "GoogLeNetBN", "googlenet", 224, 1000, 6624904, 1498376192,
        "batch-normalised GoogLeNet (Inception v1), 9 inception modules, 3x3 third branch, 224x224 input",
        None),
    "resnet101": Entry(
        "ResNet101", "resnet", 224, 1000, 44549160, 7801405440,
        "bottleneck ResNet, v1, stride on 3x3, depths 3-4-23-3, widths 64/128/256/512, imagenet stem, shortcut B, 224x224 input",
        {'stride_on': '1x1', 'conv_bias': True, 'bn_epsilon': 1.001e-05}),
    "resnet101v2": Entry(
        "ResNet101V2", "resnet", 224, 1000, 44577896, 7194476544,
        "bottleneck ResNet, v2 pre-activation, depths 3-4-23-3, widths 64/128/256/512, imagenet stem, shortcut B, 224x224 input",
        {}),
    "resnet152": Entry(
        "ResNet152", "resnet", 224, 1000, 60192808, 11513626624,
        "bottleneck ResNet, v1, stride on 3x3, depths 3-8-36-3, widths 64/128/256/512, imagenet stem, shortcut B, 224x224 input",
        {'stride_on': '1x1', 'conv_bias': True, 'bn_epsilon': 1.001e-05}),
    "resnet152v2": Entry(
        "ResNet152V2", "resnet", 224, 1000, 60236904, 10906697728,
        "bottleneck ResNet, v2 pre-activation, depths 3-8-36-3, widths 64/128/256/512, imagenet stem, shortcut B, 224x224 input",
        {}),
    "resnet18": Entry(
        "ResNet18", "resnet", 224, 1000, 11689512, 1814073344,
        "basic ResNet, v1, stride on 3x3, depths 2-2-2-2, widths 64/128/256/512, imagenet stem, shortcut B, 224x224 input",
        None),
    "resnet34": Entry(
        "ResNet34", "resnet", 224, 1000, 21797672, 3663761408,
        "basic ResNet, v1, stride on 3x3, depths 3-4-6-3, widths 64/128/256/512, imagenet stem, shortcut B, 224x224 input",
        None),
    "resnet50": Entry(
        "ResNet50", "resnet", 224, 1000, 25557032, 4089184256,
        "bottleneck ResNet, v1, stride on 3x3, depths 3-4-6-3, widths 64/128/256/512, imagenet stem, shortcut B, 224x224 input",
        {'stride_on': '1x1', 'conv_bias': True, 'bn_epsilon': 1.001e-05}),
    "resnet50v2": Entry(
        "ResNet50V2", "resnet", 224, 1000, 25568360, 3482255360,
        "bottleneck ResNet, v2 pre-activation, depths 3-4-6-3, widths 64/128/256/512, imagenet stem, shortcut B, 224x224 input",
        {}),
    "resnext101_32x4d": Entry(
        "ResNeXt101", "resnet", 224, 1000, 44177704, 7969996800,
        "bottleneck ResNeXt 32x4d, v1, stride on 3x3, depths 3-4-23-3, widths 64/128/256/512, imagenet stem, shortcut B, 224x224 input",
        None),
    "resnext101_32x8d": Entry(
        "ResNeXt101_32x8d", "resnet", 224, 1000, 88791336, 16414015488,
        "bottleneck ResNeXt 32x8d, v1, stride on 3x3, depths 3-4-23-3, widths 64/128/256/512, imagenet stem, shortcut B, 224x224 input",
        None),
    "resnext101_64x4d": Entry(
        "ResNeXt101_64x4d", "resnet", 224, 1000, 83455272, 15460270080,
        "bottleneck ResNeXt 64x4d, v1, stride on 3x3, depths 3-4-23-3, widths 64/128/256/512, imagenet stem, shortcut B, 224x224 input",
        None),
    "resnext29_16x64d": Entry(
        "ResNeXt29_16x64d", "resnet", 32, 10, 68155210, 10688866304,
        "bottleneck ResNeXt 16x64d, v1, stride on 3x3, depths 3-3-3, widths 64/128/256, cifar stem, shortcut B, 32x32 input",
        None),
    "resnext29_32x4d": Entry(
        "ResNeXt29_32x4d", "resnet", 32, 10, 4775754, 774055936,
        "bottleneck ResNeXt 32x4d, v1, stride on 3x3, depths 3-3-3, widths 64/128/256, cifar stem, shortcut B, 32x32 input",
        None),
    "resnext29_8x64d": Entry(
        "ResNeXt29_8x64d", "resnet", 32, 10, 34426698, 5387266048,
        "bottleneck ResNeXt 8x64d, v1, stride on 3x3, depths 3-3-3, widths 64/128/256, cifar stem, shortcut B, 32x32 input",
        None),
    "resnext50_32x4d": Entry(
        "ResNeXt50", "resnet", 224, 1000, 25028904, 4230479872,
        "bottleneck ResNeXt 32x4d, v1, stride on 3x3, depths 3-4-6-3, widths 64/128/256/512, imagenet stem, shortcut B, 224x224 input",
        None),
    "se_resnet101": Entry(
        "SEResNet101", "resnet", 224, 1000, 49326872, 7806148608,
        "bottleneck SE-ResNet (r=16), v1, stride on 3x3, depths 3-4-23-3, widths 64/128/256/512, imagenet stem, shortcut B, 224x224 input",
        None),
    "se_resnet152": Entry(
        "SEResNet152", "resnet", 224, 1000, 66821848, 11520204800,
        "bottleneck SE-ResNet (r=16), v1, stride on 3x3, depths 3-8-36-3, widths 64/128/256/512, imagenet stem, shortcut B, 224x224 input",
        None),
    "se_resnet50": Entry(
        "SEResNet50", "resnet", 224, 1000, 28088024, 4091699200,
        "bottleneck SE-ResNet (r=16), v1, stride on 3x3, depths 3-4-6-3, widths 64/128/256/512, imagenet stem, shortcut B, 224x224 input",
        None),
    "se_resnext101_32x4d": Entry(
        "SEResNeXt101", "resnet", 224, 1000, 48955416, 7974739968,
        "bottleneck SE-ResNeXt 32x4d (r=16), v1, stride on 3x3, depths 3-4-23-3, widths 64/128/256/512, imagenet stem, shortcut B, 224x224 input",
        None),
    "se_resnext50_32x4d": Entry(
        "SEResNeXt50", "resnet", 224, 1000, 27559896, 4232994816,
        "bottleneck SE-ResNeXt 32x4d (r=16), v1, stride on 3x3, depths 3-4-6-3, widths 64/128/256/512, imagenet stem, shortcut B, 224x224 input",
        None),
    "vgg11": Entry(
        "VGG11", "vgg", 224, 1000, 132863336, 7609090048,
        "VGG-11, convolutions per stage 1-1-2-2-2, widths 64/128/256/512/512, 224x224 input",
        None),
    "vgg11_bn": Entry(
        "VGG11BN", "vgg", 224, 1000, 132868840, 7609090048,
        "VGG-11 with batch norm, convolutions per stage 1-1-2-2-2, widths 64/128/256/512/512, 224x224 input",
        None),
    "vgg13": Entry(
        "VGG13", "vgg", 224, 1000, 133047848, 11308466176,
        "VGG-13, convolutions per stage 2-2-2-2-2, widths 64/128/256/512/512, 224x224 input",
        None),
    "vgg13_bn": Entry(
        "VGG13BN", "vgg", 224, 1000, 133053736, 11308466176,
        "VGG-13 with batch norm, convolutions per stage 2-2-2-2-2, widths 64/128/256/512/512, 224x224 input",
        None),
    "vgg16": Entry(
        "VGG16", "vgg", 224, 1000, 138357544, 15470264320,
        "VGG-16, convolutions per stage 2-2-3-3-3, widths 64/128/256/512/512, 224x224 input",
        {}),
    "vgg16_bn": Entry(
        "VGG16BN", "vgg", 224, 1000, 138365992, 15470264320,
        "VGG-16 with batch norm, convolutions per stage 2-2-3-3-3, widths 64/128/256/512/512, 224x224 input",
        None),
    "vgg19": Entry(
        "VGG19", "vgg", 224, 1000, 143667240, 19632062464,
        "VGG-19, convolutions per stage 2-2-4-4-4, widths 64/128/256/512/512, 224x224 input",
        {}),
    "vgg19_bn": Entry(
        "VGG19BN", "vgg", 224, 1000, 143678248, 19632062464,
        "VGG-19 with batch norm, convolutions per stage 2-2-4-4-4, widths 64/128/256/512/512, 224x224 input",
        None),
    "wide_resnet101_2": Entry(
        "WideResNet101", "resnet", 224, 1000, 126886696, 22753050624,
        "bottleneck Wide ResNet, v1, stride on 3x3, depths 3-4-23-3, widths 64/128/256/512, imagenet stem, shortcut B, 224x224 input",
        None),
    "wide_resnet50_2": Entry(
        "WideResNet50", "resnet", 224, 1000, 68883240, 11398021120,
        "bottleneck Wide ResNet, v1, stride on 3x3, depths 3-4-6-3, widths 64/128/256/512, imagenet stem, shortcut B, 224x224 input",
        None),
    "wrn16_4": Entry(
        "WRN16_4", "resnet", 32, 10, 2748890, 392612352,
        "basic Wide ResNet, v2 pre-activation, depths 2-2-2, widths 64/128/256, cifar stem, shortcut B, 32x32 input",
        None),
    "wrn16_8": Entry(
        "WRN16_8", "resnet", 32, 10, 10961370, 1548145664,
        "basic Wide ResNet, v2 pre-activation, depths 2-2-2, widths 128/256/512, cifar stem, shortcut B, 32x32 input",
        None),
    "wrn28_10": Entry(
        "WRN28_10", "resnet", 32, 10, 36479194, 5243328768,
        "basic Wide ResNet, v2 pre-activation, depths 4-4-4, widths 160/320/640, cifar stem, shortcut B, 32x32 input",
        None),
    "wrn40_4": Entry(
        "WRN40_4", "resnet", 32, 10, 8949210, 1298582016,
        "basic Wide ResNet, v2 pre-activation, depths 6-6-6, widths 64/128/256, cifar stem, shortcut B, 32x32 input",
        None),
}
