"""Tuning: keras-tuner searches over depth and cardinality, and their report.

- `kres.tuning.run`: `SearchConfig`, `search`, `tune`, `TUNERS`;
- `kres.tuning.spaces`: the search spaces and the keras-tuner hypermodel;
- `kres.tuning.oracles`: the search's plan and its oracles and tuners;
- `kres.tuning.report`: the table, plot and best model of a search.
"""

from kres.lazy_names import public_names

_NAMES = {"SearchConfig": "kres.tuning.run", "search": "kres.tuning.run",
          "tune": "kres.tuning.run", "TUNERS": "kres.tuning.run"}
__getattr__, __dir__, __all__ = public_names(__name__, _NAMES)
