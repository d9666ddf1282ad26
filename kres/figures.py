"""The PNGs kres writes (training curves, reports, range tests, searches) are
drawn with Matplotlib's Agg backend, which needs no display: `pyplot` selects it
before the first import, `save` writes and closes a figure."""


def pyplot():
    """`matplotlib.pyplot`, drawing without a display (Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path, *, dpi=100):
    """Lays out `fig`, writes it to the PNG `path` and closes it."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
