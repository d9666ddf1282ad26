"""The one set of argument checks of kres.

Every check takes the field's name and the value received and raises a
`ValueError` that names both (``"epochs must be a positive integer.
Received: epochs=0"``), the house style of Keras's own messages. Config
dataclasses call them from ``__post_init__``, so a bad value fails when the
config is made, before any work starts. Booleans are never accepted as
numbers (``True`` is an ``int`` to Python, not to a user).

Nothing here imports Keras or TensorFlow.
"""

import difflib
import math
import numbers
import os


def did_you_mean(value, choices, cutoff=0.5):
    """`` Did you mean 'a', 'b'?`` for the choices closest to `value`, or ``""``."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=3, cutoff=cutoff)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def fail(field, value, requirement):
    """Raises ``ValueError("{field} {requirement}. Received: {field}={value!r}")``."""
    raise ValueError(f"{field} {requirement}. Received: {field}={value!r}")


def model_file(field, value):
    """The model file `value` names: a file as given, or a run directory's ``best.keras``.

    Raises:
        ValueError: naming `field` and `value` when it is neither (a run
            directory without its best model is said to be one).
    """
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if os.path.isfile(path):
            return path
        best = os.path.join(path, "best.keras")
        if os.path.isfile(best):
            return best
        if os.path.isfile(os.path.join(path, "config.json")):
            raise ValueError(f"The run directory at {field} holds no best.keras yet (an "
                             f"unfinished run: resume it first). Received: {field}={value!r}")
    raise ValueError(f"No model file or run directory at {field}. Received: {field}={value!r}")


def is_int(value):
    """Whether `value` is an integer (and not a bool)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value):
    """Whether `value` is a finite real number (and not a bool)."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


def boolean(field, value):
    """`value` must be True or False."""
    if not isinstance(value, bool):
        fail(field, value, "must be True or False")


def integer(field, value, minimum=None, maximum=None, optional=False):
    """`value` must be an integer in ``[minimum, maximum]`` (``None`` too if `optional`)."""
    if optional and value is None:
        return
    if not is_int(value) or (minimum is not None and value < minimum) or (
            maximum is not None and value > maximum):
        fail(field, value, "must be " + _integer_kind(minimum, maximum)
             + (" or None" if optional else ""))


def positive_int(field, value, optional=False):
    """`value` must be an integer of at least 1 (``None`` too if `optional`)."""
    integer(field, value, minimum=1, optional=optional)


def number(field, value, *, low=None, high=None, low_open=False, high_open=False,
           optional=False):
    """`value` must be a finite number within the given bounds.

    Args:
        field: the name in the message.
        value: the value received.
        low, high: the bounds (``None``: unbounded).
        low_open, high_open: exclude the bound itself.
        optional: ``None`` is allowed too.
    """
    if optional and value is None:
        return
    ok = is_number(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        fail(field, value, "must be " + _range_text(low, high, low_open, high_open)
             + (" or None" if optional else ""))


def rate(field, value):
    """`value` must be a probability in ``[0, 1)``."""
    number(field, value, low=0, high=1, high_open=True)


def choice(field, value, allowed, *, hint=True):
    """`value` must be one of `allowed` (a close match is suggested)."""
    try:
        known = value in allowed
    except TypeError:  # unhashable
        known = False
    if not known:
        close = did_you_mean(value, [a for a in allowed if a is not None]) if hint else ""
        shown = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{field} must be one of {shown}.{close} Received: {field}={value!r}")


def string(field, value, optional=False):
    """`value` must be a non-empty string (``None`` too if `optional`)."""
    if optional and value is None:
        return
    if not isinstance(value, str) or not value:
        fail(field, value, "must be a non-empty string" + (" or None" if optional else ""))


def int_tuple(field, value, minimum=1, optional=False):
    """`value` must be a non-empty tuple of integers of at least `minimum`."""
    if optional and value is None:
        return
    if (not isinstance(value, tuple) or not value
            or not all(is_int(v) and v >= minimum for v in value)):
        kind = "positive integers" if minimum == 1 else f"integers >= {minimum}"
        fail(field, value, f"must be a non-empty tuple of {kind}"
             + (" or None" if optional else ""))


def mapping(field, value):
    """`value` must be a dict with string keys."""
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        fail(field, value, "must be a dict of field names to values")


def as_tuple(value):
    """`value` with lists turned into tuples (recursively), e.g. from JSON; else as it is."""
    if isinstance(value, list | tuple):
        return tuple(as_tuple(v) for v in value)
    return value


def tuples(instance, *fields):
    """Turns lists in these fields of a frozen dataclass into tuples (JSON gives lists)."""
    for field in fields:
        value = getattr(instance, field)
        if isinstance(value, list):
            object.__setattr__(instance, field, as_tuple(value))


def _integer_kind(minimum, maximum):
    if minimum == 1 and maximum is None:
        return "a positive integer"
    if minimum == 0 and maximum is None:
        return "a non-negative integer"
    if maximum is None:
        return f"an integer >= {minimum}" if minimum is not None else "an integer"
    if minimum is None:
        return f"an integer <= {maximum}"
    return f"an integer between {minimum} and {maximum}"


def _range_text(low, high, low_open, high_open):
    if low is None and high is None:
        return "a finite number"
    if high is None:
        return f"a number {'>' if low_open else '>='} {low:g}"
    if low is None:
        return f"a number {'<' if high_open else '<='} {high:g}"
    return (f"a number in {'(' if low_open else '['}{low:g}, {high:g}"
            f"{')' if high_open else ']'}")


def tested_version(package, version, tested, override, *, relies_on, advice="",
                   display=None, environ=None):
    """Raises unless `version` of `package` is one kres was tested with, or `override`
    (an environment variable) is ``"1"``.

    For code that reaches into a dependency where it has no public hook: the
    message names the version, the tested ones, how to install one and the
    override.

    Args:
        package: the package's name on PyPI, e.g. ``"keras"``.
        version: its installed version.
        tested: the tested ``"major.minor"`` versions.
        override: the environment variable that lets another version through.
        relies_on: what depends on the version, for the message.
        advice: what to watch when trying another version, for the message.
        display: the package's name in prose (default `package`).
        environ: the environment (default ``os.environ``).

    Raises:
        RuntimeError: for an untested version without the override.

    Example:

    >>> from kres.checks import tested_version
    >>> tested_version("keras", "3.15.1", ("3.15",), "KRES_TRY", relies_on="kres relies on",
    ...                environ={})  # a tested version: nothing to say
    >>> tested_version("keras", "3.16.0", ("3.15",), "KRES_TRY", relies_on="kres relies on",
    ...                environ={})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    RuntimeError: kres relies on keras 3.15.x; this is keras 3.16.0. Install a tested ...
    >>> tested_version("keras", "3.16.0", ("3.15",), "KRES_TRY", relies_on="kres relies on",
    ...                environ={"KRES_TRY": "1"})  # the override lets it through
    """
    import os

    environ = os.environ if environ is None else environ
    if ".".join(version.split(".")[:2]) in tested or environ.get(override) == "1":
        return
    display = display or package
    raise RuntimeError(
        f"{relies_on} {display} {', '.join(v + '.x' for v in tested)}; this is {display} "
        f"{version}. Install a tested version (pip install '{package}~={tested[-1]}.0'), or "
        f"set {override}=1 to try this one{advice}. Received: {package}=={version}")
