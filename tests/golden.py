"""Published figures from ../shared/REFERENCE.md (torchvision/timm conventions):
trainable parameters and multiply-accumulates at the default input size."""

# name: (trainable parameters, GMACs as published, to 3 or 4 significant digits)
IMAGENET = {
    "resnet18": (11_689_512, 1.814),
    "resnet34": (21_797_672, 3.664),
    "resnet50": (25_557_032, 4.089),
    "resnet101": (44_549_160, 7.801),
    "resnet152": (60_192_808, 11.514),
    "resnext50_32x4d": (25_028_904, 4.230),
    "resnext101_32x4d": (44_177_704, 7.970),
    "resnext101_32x8d": (88_791_336, 16.414),
    "resnext101_64x4d": (83_455_272, 15.460),
    "wide_resnet50_2": (68_883_240, 11.398),
    "wide_resnet101_2": (126_886_696, 22.753),
    "se_resnet50": (28_088_024, 4.092),
    "se_resnet101": (49_326_872, 7.806),
    "se_resnext50_32x4d": (27_559_896, 4.233),
    "se_resnext101_32x4d": (48_955_416, 7.975),
    "vgg16": (138_357_544, 15.470),
    "vgg19": (143_667_240, 19.632),
    "densenet121": (7_978_856, 2.834),
    "densenet169": (14_149_480, 3.360),
    "densenet201": (20_013_928, 4.291),
    "alexnet": (61_100_840, 0.714),
    "googlenet_bn": (6_624_904, 1.498),
}
# CIFAR-10 (10 classes, 32x32); option A shortcuts for the ResNets.
CIFAR = {
    "cifar_resnet20": (269_722, 0.0406),
    "cifar_resnet32": (464_154, 0.0689),
    "cifar_resnet44": (658_586, 0.0972),
    "cifar_resnet56": (853_018, 0.1255),
    "cifar_resnet110": (1_727_962, 0.2529),
    "cifar_resnet1202": (19_421_274, 2.829),
    "resnext29_8x64d": (34_426_698, 5.39),
    "resnext29_16x64d": (68_155_210, 10.69),
    "resnext29_32x4d": (4_775_754, 0.774),
    "wrn28_10": (36_479_194, 5.24),
    "wrn40_4": (8_949_210, 1.30),
    "wrn16_8": (10_961_370, 1.55),
}
# The plain twins have exactly the parameters of option-A ResNets.
PLAIN = {f"cifar_plain{d}": CIFAR[f"cifar_resnet{d}"] for d in (20, 32, 44, 56, 110)}
PUBLISHED = {**IMAGENET, **CIFAR, **PLAIN}
# Option B (1x1 projections) adds these parameters to the CIFAR ResNets.
CIFAR_OPTION_B = {"cifar_resnet20": 272_474, "cifar_resnet56": 855_770,
                  "cifar_resnet110": 1_730_714}
