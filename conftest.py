"""pytest's set-up for the whole checkout: the docstring examples of kres run as tests.

pyproject's pytest options collect ``tests`` and ``kres`` with
``--doctest-modules``, so every ``>>>`` example in kres's docstrings is a test
of `make test`. The examples import what they use, as a user pasting them
would; nothing is put in their namespace here.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

# A script the multi-worker tests run, not a module to import (it reads its job
# from sys.argv): --doctest-modules would import it.
collect_ignore = ["tests/multiworker_worker.py"]

# A generated constructor's example builds its network at the defaults: from a
# quarter of a second to fifteen (ResNet-1202) each, over a minute for all of
# them, whatever the input size. `make test` runs the example of each family's
# cheapest network; the others run with the tests marked slow (make test-all).
# Also with the slow tests: examples that export a SavedModel twice over.
SLOW_EXAMPLES = {"kres.serving.dispatch.predict"}


def _constructors_run_by_default():
    from kres.models import catalog

    cheapest = {}
    for entry in catalog.MODELS.values():
        if entry.family not in cheapest or entry.macs < cheapest[entry.family].macs:
            cheapest[entry.family] = entry
    return {entry.constructor for entry in cheapest.values()}


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items):
    by_default = _constructors_run_by_default()
    for item in items:
        if type(item).__name__ != "DoctestItem":
            continue
        module, _, name = item.name.rpartition(".")
        if item.name in SLOW_EXAMPLES or (module == "kres.models.constructors"
                                          and name not in by_default):
            item.add_marker(pytest.mark.slow)
