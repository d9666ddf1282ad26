"""The families of networks, one module each.

Each module declares its spec, its named variants, its builder and, at its
end, its `kres.models.family.Family` (``FAMILY``): stage outputs, published
weights, state-dict loader. `kres.models.registry` collects every module here
that has a ``FAMILY``, so a new family is a new module in this folder; a
module without one belongs to a family (``resnet_timm``: the ResNet family's
timm/torchvision names).
"""
