"""The keras.applications-style constructors, one per registered model (generated).

``python -m kres.models.registry`` writes this file from the registry; the
tests check that it matches. Importing it imports neither Keras nor TensorFlow:
each function builds its model through `kres.build_model` when called.
"""

from kres.models.constructor_template import build, document

__all__ = [
    "AlexNet", "AlexNetOriginal", "CifarPlain110", "CifarPlain20", "CifarPlain32",
    "CifarPlain44", "CifarPlain56", "CifarPreActResNet110", "CifarPreActResNet164",
    "CifarResNet110", "CifarResNet1202", "CifarResNet20", "CifarResNet32", "CifarResNet44",
    "CifarResNet56", "DenseNet121", "DenseNet169", "DenseNet201", "DenseNetBC100",
    "DenseNetBC190", "DenseNetBC250", "GoogLeNet", "GoogLeNetBN", "ResNeXt101",
    "ResNeXt101_32x8d", "ResNeXt101_64x4d", "ResNeXt29_16x64d", "ResNeXt29_32x4d",
    "ResNeXt29_8x64d", "ResNeXt50", "ResNet101", "ResNet101V2", "ResNet152", "ResNet152V2",
    "ResNet18", "ResNet34", "ResNet50", "ResNet50V2", "SEResNeXt101", "SEResNeXt50",
    "SEResNet101", "SEResNet152", "SEResNet50", "VGG11", "VGG11BN", "VGG13", "VGG13BN", "VGG16",
    "VGG16BN", "VGG19", "VGG19BN", "WRN16_4", "WRN16_8", "WRN28_10", "WRN40_4", "WideResNet101",
    "WideResNet50"
]


def AlexNet(include_top=True, weights=None, input_tensor=None, input_shape=None,
            pooling=None, classes=1000, classifier_activation="softmax",
            name="alexnet", **overrides):
    return build("alexnet", locals())


def AlexNetOriginal(include_top=True, weights=None, input_tensor=None, input_shape=None,
                    pooling=None, classes=1000, classifier_activation="softmax",
                    name="alexnet_original", **overrides):
    return build("alexnet_original", locals())


def CifarPlain110(include_top=True, weights=None, input_tensor=None, input_shape=None,
                  pooling=None, classes=10, classifier_activation="softmax",
                  name="cifar_plain110", **overrides):
    return build("cifar_plain110", locals())


def CifarPlain20(include_top=True, weights=None, input_tensor=None, input_shape=None,
                 pooling=None, classes=10, classifier_activation="softmax",
                 name="cifar_plain20", **overrides):
    return build("cifar_plain20", locals())


def CifarPlain32(include_top=True, weights=None, input_tensor=None, input_shape=None,
                 pooling=None, classes=10, classifier_activation="softmax",
                 name="cifar_plain32", **overrides):
    return build("cifar_plain32", locals())


def CifarPlain44(include_top=True, weights=None, input_tensor=None, input_shape=None,
                 pooling=None, classes=10, classifier_activation="softmax",
                 name="cifar_plain44", **overrides):
    return build("cifar_plain44", locals())


def CifarPlain56(include_top=True, weights=None, input_tensor=None, input_shape=None,
                 pooling=None, classes=10, classifier_activation="softmax",
                 name="cifar_plain56", **overrides):
    return build("cifar_plain56", locals())


def CifarPreActResNet110(include_top=True, weights=None, input_tensor=None, input_shape=None,
                         pooling=None, classes=10, classifier_activation="softmax",
                         name="cifar_preact_resnet110", **overrides):
    return build("cifar_preact_resnet110", locals())


def CifarPreActResNet164(include_top=True, weights=None, input_tensor=None, input_shape=None,
                         pooling=None, classes=10, classifier_activation="softmax",
                         name="cifar_preact_resnet164", **overrides):
    return build("cifar_preact_resnet164", locals())


def CifarResNet110(include_top=True, weights=None, input_tensor=None, input_shape=None,
                   pooling=None, classes=10, classifier_activation="softmax",
                   name="cifar_resnet110", **overrides):
    return build("cifar_resnet110", locals())


def CifarResNet1202(include_top=True, weights=None, input_tensor=None, input_shape=None,
                    pooling=None, classes=10, classifier_activation="softmax",
                    name="cifar_resnet1202", **overrides):
    return build("cifar_resnet1202", locals())


def CifarResNet20(include_top=True, weights=None, input_tensor=None, input_shape=None,
                  pooling=None, classes=10, classifier_activation="softmax",
                  name="cifar_resnet20", **overrides):
    return build("cifar_resnet20", locals())


def CifarResNet32(include_top=True, weights=None, input_tensor=None, input_shape=None,
                  pooling=None, classes=10, classifier_activation="softmax",
                  name="cifar_resnet32", **overrides):
    return build("cifar_resnet32", locals())


def CifarResNet44(include_top=True, weights=None, input_tensor=None, input_shape=None,
                  pooling=None, classes=10, classifier_activation="softmax",
                  name="cifar_resnet44", **overrides):
    return build("cifar_resnet44", locals())


def CifarResNet56(include_top=True, weights=None, input_tensor=None, input_shape=None,
                  pooling=None, classes=10, classifier_activation="softmax",
                  name="cifar_resnet56", **overrides):
    return build("cifar_resnet56", locals())


def DenseNet121(include_top=True, weights=None, input_tensor=None, input_shape=None,
                pooling=None, classes=1000, classifier_activation="softmax",
                name="densenet121", **overrides):
    return build("densenet121", locals())


def DenseNet169(include_top=True, weights=None, input_tensor=None, input_shape=None,
                pooling=None, classes=1000, classifier_activation="softmax",
                name="densenet169", **overrides):
    return build("densenet169", locals())


def DenseNet201(include_top=True, weights=None, input_tensor=None, input_shape=None,
                pooling=None, classes=1000, classifier_activation="softmax",
                name="densenet201", **overrides):
    return build("densenet201", locals())


def DenseNetBC100(include_top=True, weights=None, input_tensor=None, input_shape=None,
                  pooling=None, classes=10, classifier_activation="softmax",
                  name="densenet_bc_100_12", **overrides):
    return build("densenet_bc_100_12", locals())


def DenseNetBC190(include_top=True, weights=None, input_tensor=None, input_shape=None,
                  pooling=None, classes=10, classifier_activation="softmax",
                  name="densenet_bc_190_40", **overrides):
    return build("densenet_bc_190_40", locals())


def DenseNetBC250(include_top=True, weights=None, input_tensor=None, input_shape=None,
                  pooling=None, classes=10, classifier_activation="softmax",
                  name="densenet_bc_250_24", **overrides):
    return build("densenet_bc_250_24", locals())


def GoogLeNet(include_top=True, weights=None, input_tensor=None, input_shape=None,
              pooling=None, classes=1000, classifier_activation="softmax",
              name="googlenet", **overrides):
    return build("googlenet", locals())


def GoogLeNetBN(include_top=True, weights=None, input_tensor=None, input_shape=None,
                pooling=None, classes=1000, classifier_activation="softmax",
                name="googlenet_bn", **overrides):
    return build("googlenet_bn", locals())


def ResNet101(include_top=True, weights=None, input_tensor=None, input_shape=None,
              pooling=None, classes=1000, classifier_activation="softmax",
              name="resnet101", **overrides):
    return build("resnet101", locals())


def ResNet101V2(include_top=True, weights=None, input_tensor=None, input_shape=None,
                pooling=None, classes=1000, classifier_activation="softmax",
                name="resnet101v2", **overrides):
    return build("resnet101v2", locals())


def ResNet152(include_top=True, weights=None, input_tensor=None, input_shape=None,
              pooling=None, classes=1000, classifier_activation="softmax",
              name="resnet152", **overrides):
    return build("resnet152", locals())


def ResNet152V2(include_top=True, weights=None, input_tensor=None, input_shape=None,
                pooling=None, classes=1000, classifier_activation="softmax",
                name="resnet152v2", **overrides):
    return build("resnet152v2", locals())


def ResNet18(include_top=True, weights=None, input_tensor=None, input_shape=None,
             pooling=None, classes=1000, classifier_activation="softmax",
             name="resnet18", **overrides):
    return build("resnet18", locals())


def ResNet34(include_top=True, weights=None, input_tensor=None, input_shape=None,
             pooling=None, classes=1000, classifier_activation="softmax",
             name="resnet34", **overrides):
    return build("resnet34", locals())


def ResNet50(include_top=True, weights=None, input_tensor=None, input_shape=None,
             pooling=None, classes=1000, classifier_activation="softmax",
             name="resnet50", **overrides):
    return build("resnet50", locals())


def ResNet50V2(include_top=True, weights=None, input_tensor=None, input_shape=None,
               pooling=None, classes=1000, classifier_activation="softmax",
               name="resnet50v2", **overrides):
    return build("resnet50v2", locals())


def ResNeXt101(include_top=True, weights=None, input_tensor=None, input_shape=None,
               pooling=None, classes=1000, classifier_activation="softmax",
               name="resnext101_32x4d", **overrides):
    return build("resnext101_32x4d", locals())


def ResNeXt101_32x8d(include_top=True, weights=None, input_tensor=None, input_shape=None,
                     pooling=None, classes=1000, classifier_activation="softmax",
                     name="resnext101_32x8d", **overrides):
    return build("resnext101_32x8d", locals())


def ResNeXt101_64x4d(include_top=True, weights=None, input_tensor=None, input_shape=None,
                     pooling=None, classes=1000, classifier_activation="softmax",
                     name="resnext101_64x4d", **overrides):
    return build("resnext101_64x4d", locals())


def ResNeXt29_16x64d(include_top=True, weights=None, input_tensor=None, input_shape=None,
                     pooling=None, classes=10, classifier_activation="softmax",
                     name="resnext29_16x64d", **overrides):
    return build("resnext29_16x64d", locals())


def ResNeXt29_32x4d(include_top=True, weights=None, input_tensor=None, input_shape=None,
                    pooling=None, classes=10, classifier_activation="softmax",
                    name="resnext29_32x4d", **overrides):
    return build("resnext29_32x4d", locals())


def ResNeXt29_8x64d(include_top=True, weights=None, input_tensor=None, input_shape=None,
                    pooling=None, classes=10, classifier_activation="softmax",
                    name="resnext29_8x64d", **overrides):
    return build("resnext29_8x64d", locals())


def ResNeXt50(include_top=True, weights=None, input_tensor=None, input_shape=None,
              pooling=None, classes=1000, classifier_activation="softmax",
              name="resnext50_32x4d", **overrides):
    return build("resnext50_32x4d", locals())


def SEResNet101(include_top=True, weights=None, input_tensor=None, input_shape=None,
                pooling=None, classes=1000, classifier_activation="softmax",
                name="se_resnet101", **overrides):
    return build("se_resnet101", locals())


def SEResNet152(include_top=True, weights=None, input_tensor=None, input_shape=None,
                pooling=None, classes=1000, classifier_activation="softmax",
                name="se_resnet152", **overrides):
    return build("se_resnet152", locals())


def SEResNet50(include_top=True, weights=None, input_tensor=None, input_shape=None,
               pooling=None, classes=1000, classifier_activation="softmax",
               name="se_resnet50", **overrides):
    return build("se_resnet50", locals())


def SEResNeXt101(include_top=True, weights=None, input_tensor=None, input_shape=None,
                 pooling=None, classes=1000, classifier_activation="softmax",
                 name="se_resnext101_32x4d", **overrides):
    return build("se_resnext101_32x4d", locals())


def SEResNeXt50(include_top=True, weights=None, input_tensor=None, input_shape=None,
                pooling=None, classes=1000, classifier_activation="softmax",
                name="se_resnext50_32x4d", **overrides):
    return build("se_resnext50_32x4d", locals())


def VGG11(include_top=True, weights=None, input_tensor=None, input_shape=None,
          pooling=None, classes=1000, classifier_activation="softmax",
          name="vgg11", **overrides):
    return build("vgg11", locals())


def VGG11BN(include_top=True, weights=None, input_tensor=None, input_shape=None,
            pooling=None, classes=1000, classifier_activation="softmax",
            name="vgg11_bn", **overrides):
    return build("vgg11_bn", locals())


def VGG13(include_top=True, weights=None, input_tensor=None, input_shape=None,
          pooling=None, classes=1000, classifier_activation="softmax",
          name="vgg13", **overrides):
    return build("vgg13", locals())


def VGG13BN(include_top=True, weights=None, input_tensor=None, input_shape=None,
            pooling=None, classes=1000, classifier_activation="softmax",
            name="vgg13_bn", **overrides):
    return build("vgg13_bn", locals())


def VGG16(include_top=True, weights=None, input_tensor=None, input_shape=None,
          pooling=None, classes=1000, classifier_activation="softmax",
          name="vgg16", **overrides):
    return build("vgg16", locals())


def VGG16BN(include_top=True, weights=None, input_tensor=None, input_shape=None,
            pooling=None, classes=1000, classifier_activation="softmax",
            name="vgg16_bn", **overrides):
    return build("vgg16_bn", locals())


def VGG19(include_top=True, weights=None, input_tensor=None, input_shape=None,
          pooling=None, classes=1000, classifier_activation="softmax",
          name="vgg19", **overrides):
    return build("vgg19", locals())


def VGG19BN(include_top=True, weights=None, input_tensor=None, input_shape=None,
            pooling=None, classes=1000, classifier_activation="softmax",
            name="vgg19_bn", **overrides):
    return build("vgg19_bn", locals())


def WideResNet101(include_top=True, weights=None, input_tensor=None, input_shape=None,
                  pooling=None, classes=1000, classifier_activation="softmax",
                  name="wide_resnet101_2", **overrides):
    return build("wide_resnet101_2", locals())


def WideResNet50(include_top=True, weights=None, input_tensor=None, input_shape=None,
                 pooling=None, classes=1000, classifier_activation="softmax",
                 name="wide_resnet50_2", **overrides):
    return build("wide_resnet50_2", locals())


def WRN16_4(include_top=True, weights=None, input_tensor=None, input_shape=None,
            pooling=None, classes=10, classifier_activation="softmax",
            name="wrn16_4", **overrides):
    return build("wrn16_4", locals())


def WRN16_8(include_top=True, weights=None, input_tensor=None, input_shape=None,
            pooling=None, classes=10, classifier_activation="softmax",
            name="wrn16_8", **overrides):
    return build("wrn16_8", locals())


def WRN28_10(include_top=True, weights=None, input_tensor=None, input_shape=None,
             pooling=None, classes=10, classifier_activation="softmax",
             name="wrn28_10", **overrides):
    return build("wrn28_10", locals())


def WRN40_4(include_top=True, weights=None, input_tensor=None, input_shape=None,
            pooling=None, classes=10, classifier_activation="softmax",
            name="wrn40_4", **overrides):
    return build("wrn40_4", locals())


document(globals(), __all__)
