"""Checks of settings shared by the models, the diffusion core and the harness."""


def is_positive_int(value):
    """Whether ``value`` is an int >= 1 (``True`` is not an int here)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def positive_int(name, value):
    """``value``, the setting ``name``, after checking that it is a positive int."""
    if not is_positive_int(value):
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def boolean(name, value):
    """``value``, the setting ``name``, after checking that it is True or False."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value
