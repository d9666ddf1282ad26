"""One module per architecture family: a frozen spec dataclass, a `SPECS`
table with one row per named variant, and one builder."""
