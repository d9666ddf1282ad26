"""Helpers for kres's error messages."""

import difflib


def did_you_mean(value, choices, cutoff=0.5):
    """`` Did you mean 'a', 'b'?`` for the choices closest to `value`, or ``""``."""
    close = difflib.get_close_matches(str(value), list(choices), n=3, cutoff=cutoff)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
