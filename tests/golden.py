"""The size every registered model is checked against, and where each number comes from.

Conventions (torchvision's, timm's and the papers'): trainable parameters only,
no convolution bias before batch norm; multiply-accumulates (MACs) of the
convolutions and fully connected layers at the default input size
(224x224, 227x227 for alexnet_original, 32x32 on CIFAR) and classes (1000 or
10). Nothing here was counted from kres.

- `PUBLISHED`: figures a source publishes, ``(params, GMACs as published,
  source)``; parameters compare exactly, GMACs to their printed precision.
- `DERIVED`: networks whose exact figures no source prints, written down
  from their paper in `tests.closed_form` (parameters and MACs exact); the
  rounded figure the paper prints, where it prints one, is in `PAPER_ROUNDED`.
- `KERAS_APPLICATIONS`: the keras.applications layouts, whose reference is the
  keras.applications model itself (counted in `tests/test_equivalence.py`).
"""

from tests import closed_form as cf

TORCHVISION = "torchvision's model docs (num_params, GFLOPS), as in shared/REFERENCE.md"
TIMM = "timm's model cards (SE-ResNet(Xt) with r=16), as in shared/REFERENCE.md"
REFERENCE_CIFAR = "shared/REFERENCE.md, CIFAR tables"

PUBLISHED = {
    "resnet18": (11_689_512, 1.814, TORCHVISION),
    "resnet34": (21_797_672, 3.664, TORCHVISION),
    "resnet50": (25_557_032, 4.089, TORCHVISION),
    "resnet101": (44_549_160, 7.801, TORCHVISION),
    "resnet152": (60_192_808, 11.514, TORCHVISION),
    "resnext50_32x4d": (25_028_904, 4.230, TORCHVISION),
    "resnext101_32x4d": (44_177_704, 7.970, "timm's resnext101_32x4d, as in shared/REFERENCE.md"),
    "resnext101_32x8d": (88_791_336, 16.414, TORCHVISION),
    "resnext101_64x4d": (83_455_272, 15.460, TORCHVISION),
    "wide_resnet50_2": (68_883_240, 11.398, TORCHVISION),
    "wide_resnet101_2": (126_886_696, 22.753, TORCHVISION),
    "se_resnet50": (28_088_024, 4.092, TIMM),
    "se_resnet101": (49_326_872, 7.806, TIMM),
    "se_resnext50_32x4d": (27_559_896, 4.233, TIMM),
    "se_resnext101_32x4d": (48_955_416, 7.975, TIMM),
    # torchvision's VGG docs: VGG11_Weights ... VGG19_BN_Weights.
    "vgg11": (132_863_336, 7.61, "torchvision's VGG11_Weights (num_params, GFLOPS)"),
    "vgg11_bn": (132_868_840, 7.61, "torchvision's VGG11_BN_Weights (num_params, GFLOPS)"),
    "vgg13": (133_047_848, 11.31, "torchvision's VGG13_Weights (num_params, GFLOPS)"),
    "vgg13_bn": (133_053_736, 11.31, "torchvision's VGG13_BN_Weights (num_params, GFLOPS)"),
    "vgg16": (138_357_544, 15.470, TORCHVISION),
    "vgg16_bn": (138_365_992, 15.47, "torchvision's VGG16_BN_Weights (num_params, GFLOPS)"),
    "vgg19": (143_667_240, 19.632, TORCHVISION),
    "vgg19_bn": (143_678_248, 19.63, "torchvision's VGG19_BN_Weights (num_params, GFLOPS)"),
    "densenet121": (7_978_856, 2.834, TORCHVISION),
    "densenet169": (14_149_480, 3.360, TORCHVISION),
    "densenet201": (20_013_928, 4.291, TORCHVISION),
    "alexnet": (61_100_840, 0.714, TORCHVISION),
    "googlenet_bn": (6_624_904, 1.498, TORCHVISION),
    # CIFAR-10: option A shortcuts for the ResNets; the plain twins have the same size.
    **{f"cifar_{kind}{d}": (params, mmacs / 1000, REFERENCE_CIFAR)
       for d, params, mmacs in ((20, 269_722, 40.6), (32, 464_154, 68.9), (44, 658_586, 97.2),
                                (56, 853_018, 125.5), (110, 1_727_962, 252.9),
                                (1202, 19_421_274, 2829))
       for kind in ("resnet", "plain") if not (kind == "plain" and d == 1202)},
    "resnext29_8x64d": (34_426_698, 5.39, REFERENCE_CIFAR),
    "resnext29_16x64d": (68_155_210, 10.69, REFERENCE_CIFAR),
    "resnext29_32x4d": (4_775_754, 0.774, REFERENCE_CIFAR),
    "wrn28_10": (36_479_194, 5.24, REFERENCE_CIFAR),
    "wrn40_4": (8_949_210, 1.30, REFERENCE_CIFAR),
    "wrn16_8": (10_961_370, 1.55, REFERENCE_CIFAR),
}

# Option B (1x1 projections with batch norm) for the CIFAR ResNets, REFERENCE_CIFAR.
CIFAR_OPTION_B = {20: 272_474, 32: 466_906, 44: 661_338, 56: 855_770, 110: 1_730_714,
                  1202: 19_424_026}


def _se_resnet152():
    # torchvision's ResNet-152 (published: 60,192,808) plus Hu et al.'s SE blocks
    # (r = 16, biases) on each of its 3-8-36-3 bottlenecks; timm's seresnet152 has
    # the same 66,821,848 parameters (checked against timm itself by `make test-torch`).
    params, _ = cf.squeeze_excitation_extra((3, 8, 36, 3))
    closed = cf.imagenet_bottleneck_resnet((3, 8, 36, 3), reduction=16)
    if closed[0] != 60_192_808 + params:
        raise AssertionError(f"the two derivations of se_resnet152 differ: {closed}")
    return *closed, "torchvision's ResNet-152 + SE blocks (Hu et al. 2017), closed form"


# name: (params, MACs or None, how): exact figures derived independently of kres.
DERIVED = {
    **{f"cifar_resnet{d}": (*cf.cifar_resnet((d - 2) // 6), "He et al. 2015 Sec. 4.2, closed form")
       for d in (20, 32, 44, 56, 110, 1202)},
    **{f"cifar_plain{d}": (*cf.cifar_resnet((d - 2) // 6, "none"), "the same, no shortcuts")
       for d in (20, 32, 44, 56, 110)},
    "cifar_preact_resnet110": (*cf.preact_cifar_resnet(110, bottleneck=False),
                               "He et al. 2016, basic pre-activation units, closed form"),
    "cifar_preact_resnet164": (*cf.preact_cifar_resnet(164, bottleneck=True),
                               "He et al. 2016, bottleneck pre-activation units, closed form"),
    **{f"wrn{d}_{k}": (*cf.wide_resnet(d, k), "Zagoruyko & Komodakis 2016, closed form")
       for d, k in ((16, 4), (16, 8), (28, 10), (40, 4))},
    **{f"resnext29_{c}x{w}d": (*cf.resnext29(c, w), "Xie et al. 2017 Sec. 5.3, closed form")
       for c, w in ((8, 64), (16, 64), (32, 4))},
    **{f"densenet_bc_{d}_{k}": (*cf.densenet_bc_cifar(d, k), "Huang et al. 2017, closed form")
       for d, k in ((100, 12), (250, 24), (190, 40))},
    "googlenet": (*cf.googlenet(batch_norm=False, third_kernel=5),
                  "Szegedy et al. 2014, Table 1 with biases, closed form"),
    "googlenet_bn": (*cf.googlenet(batch_norm=True, third_kernel=3),
                     "torchvision's GoogLeNet layout, closed form"),
    "alexnet": (*cf.alexnet(two_towers=False), "torchvision's AlexNet layout, closed form"),
    # 60,965,224 is also the size of Caffe's bvlc_alexnet, the two-tower network.
    "alexnet_original": (*cf.alexnet(two_towers=True),
                         "Krizhevsky et al. 2012 Fig. 2, closed form"),
    **{f"vgg{n}{bn}": (*cf.vgg(n, batch_norm=bool(bn)), "Simonyan & Zisserman Table 1, "
                       "torchvision's layout, closed form")
       for n in (11, 13, 16, 19) for bn in ("", "_bn")},
    "se_resnet152": _se_resnet152(),
}

# The rounded sizes the papers print, in millions of parameters.
PAPER_ROUNDED = {
    "densenet_bc_100_12": (0.8, "Huang et al. 2017, Table 2"),
    "densenet_bc_250_24": (15.3, "Huang et al. 2017, Table 2"),
    "densenet_bc_190_40": (25.6, "Huang et al. 2017, Table 2"),
    "cifar_preact_resnet110": (1.7, "He et al. 2016, Table 2"),
    "cifar_preact_resnet164": (1.7, "He et al. 2016, Table 2"),
}

# keras.applications layouts (resnet50v2, resnet101v2, resnet152v2): trainable
# parameters of keras.applications.ResNet50V2 etc. (Keras 3.15.1), which
# tests/test_equivalence.py counts on the keras.applications models themselves.
KERAS_APPLICATIONS = {"resnet50v2": 25_568_360, "resnet101v2": 44_577_896,
                      "resnet152v2": 60_236_904}
