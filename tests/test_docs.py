"""The numbers the README and docs/models.md state, against the tests' own sources.

docs/models.md's table must say what `kres.models.catalog` says (which test_models
checks against the built models) and quote tests/golden.py's published or
derived figures; the README's examples of exact figures must be the same.
"""

import os
import re

import pytest

from kres.models import catalog
from tests.golden import DERIVED, KERAS_APPLICATIONS, PUBLISHED

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _number(text):
    return float(text.replace(",", "")) if text.strip() else None


def _table_rows():
    with open(os.path.join(ROOT, "docs", "models.md")) as f:
        lines = f.read().splitlines()
    start = lines.index("| model | trainable params | MMACs | checked against | its params "
                        "| its MMACs |")
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        name, params, mmacs, source, ref_params, ref_mmacs = (c.strip() for c in
                                                               line.strip("|").split("|"))
        rows[name.strip("`")] = (_number(params), _number(mmacs), source, _number(ref_params),
                                 _number(ref_mmacs))
    return rows


def test_models_table_lists_every_model_with_its_checked_figures():
    rows = _table_rows()
    assert sorted(rows) == sorted(catalog.MODELS)
    for name, (params, mmacs, source, ref_params, ref_mmacs) in rows.items():
        entry = catalog.MODELS[name]
        assert params == entry.params and mmacs == round(entry.macs / 1e6, 1), name
        if name in PUBLISHED:
            published, gmacs, where = PUBLISHED[name]
            assert ref_params == published and ref_mmacs == pytest.approx(gmacs * 1000), name
            assert source and source.split()[0] in where, name
        elif name in DERIVED:
            derived, macs, how = DERIVED[name]
            assert (ref_params, ref_mmacs, source) == (derived, round(macs / 1e6, 1), how)
        else:
            assert ref_params == KERAS_APPLICATIONS[name] and "keras.applications" in source


def test_readme_examples_of_exact_figures():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = " ".join(f.read().split())
    paragraph = text[text.index("Examples of the exact figures:"):]
    paragraph = paragraph[:paragraph.index("GoogLeNet's auxiliary")]
    quoted = re.findall(r"(\b[a-z][a-z0-9_]+):? ([\d,]{5,})(?: parameters)?(?: and ([\d.]+)"
                        r"(?: (GMACs|MMACs))?)?", paragraph)
    assert len(quoted) >= 10
    for name, params, macs, unit in quoted:
        unit = unit or "GMACs"  # "resnext50_32x4d 25,028,904 and 4.230" follows a GMACs figure
        assert int(params.replace(",", "")) == catalog.MODELS[name].params, name
        if name in PUBLISHED:
            assert int(params.replace(",", "")) == PUBLISHED[name][0]
        else:
            assert int(params.replace(",", "")) == DERIVED[name][0]
        if macs:
            scale = 1e9 if unit == "GMACs" else 1e6
            assert float(macs) == pytest.approx(catalog.MODELS[name].macs / scale, abs=0.05
                                                if unit == "MMACs" else 5e-4), name
