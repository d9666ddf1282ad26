"""What a family of networks declares about itself, in its own module.

Each module of `kres.models.families` ends with one `Family`: its named
variants, its builder, the layers that are its stage outputs (for
`kres.feature_extractor`), its published weights (`PublishedWeights`
objects of `kres.weights.keras_applications`) and the state-dict loader its
timm/torchvision weights go through. The registry collects the families it
finds in that package, so adding a family is adding a module there (and its
tests, and regenerating ``kres/models/catalog.py`` and
``kres/models/constructors.py``).
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Family:
    """One family of networks, as its module declares it.

    Attributes:
        name: the family's name (``"resnet"``).
        description: its networks, for messages.
        variants: registry name -> ``(constructor name, spec)``.
        build: ``build(spec, **constructor arguments) -> keras.Model``.
        signature: the name of a layer that every model of the family has
            and no other family's does (how a model passed in is recognised).
        stage_outputs: ``stage_outputs(spec) -> {"C<k>": layer name}``: the
            layer whose output is the network's last at stride ``2**k``,
            for every stride the network has; ``None`` for a family without
            stage outputs a feature pyramid can use.
        layout_of: ``layout_of(model) -> layout``: the fields
            `stage_outputs` reads, read back from a model the family's
            builder made (by the layer names it gives), for models passed in
            rather than named.
        no_stages: why the family has no stage outputs (with
            ``stage_outputs=None``).
        weights: registry name -> `kres.weights.keras_applications.PublishedWeights`.
        state_dict_loader: ``loader(model, path_or_state)`` for timm and
            torchvision state dicts of the family, or ``None``.
    """

    name: str
    description: str
    variants: dict
    build: object
    signature: str
    stage_outputs: object = None
    layout_of: object = None
    no_stages: str = ""
    weights: dict = dataclasses.field(default_factory=dict)
    state_dict_loader: object = None

    def __post_init__(self):
        if (self.stage_outputs is None) == (not self.no_stages):
            raise ValueError(f"Family {self.name!r} must declare stage outputs or say why it "
                             "has none (no_stages), not both")
        unknown = sorted(set(self.weights) - set(self.variants))
        if unknown:
            raise ValueError(f"Family {self.name!r} publishes weights for {unknown}, which "
                             "are not among its variants")


def last_per_level(ends):
    """``{"C<k>": layer}`` from ``(level, layer)`` pairs in the graph's order: the last
    layer at each level (stride ``2**level``) wins."""
    table = dict(ends)
    return {f"C{level}": table[level] for level in sorted(table)}


def blocks_per_stage(names, pattern):
    """How many numbered blocks each numbered stage has, from layer names.

    Args:
        names: the model's layer names.
        pattern: a compiled pattern with two groups, the stage and the block
            number (``conv(\\d+)_block(\\d+)_out``).

    Returns:
        ``{stage: blocks}`` for the stages found.
    """
    found = {}
    for name in names:
        match = pattern.fullmatch(name)
        if match:
            stage, block = int(match.group(1)), int(match.group(2))
            found[stage] = max(found.get(stage, 0), block)
    return found
