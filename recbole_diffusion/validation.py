"""Checks of configuration values shared by the models, the diffusion core and the harness.

Every check raises :class:`ConfigError`, whose message reads ``<key>: <what is allowed>, got <value>``. The run
scripts print every :class:`InputError` as one line, ``error: <message>``, and exit with status 2.
"""


class InputError(ValueError):
    """A fault of the user's input (a config value, a data file) rather than of the code: reported in one line."""


class ConfigError(InputError):
    """The value of the config key ``key`` is not allowed; ``allowed`` says what is."""

    def __init__(self, key, allowed, value):
        super().__init__(f"{key}: {allowed}, got {value!r}")
        self.key, self.allowed, self.value = key, allowed, value


def is_int(value):
    """Whether ``value`` is an int (``True`` is not an int here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value):
    """Whether ``value`` is an int or a float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_positive_int(value):
    """Whether ``value`` is an int >= 1 (``True`` is not an int here)."""
    return is_int(value) and value >= 1


def positive_int(key, value):
    """``value``, the setting ``key``, after checking that it is a positive int."""
    if not is_positive_int(value):
        raise ConfigError(key, "a positive int", value)
    return value


def history_length(config):
    """A sequential model's ``MAX_ITEM_LIST_LENGTH`` (RecBole's key), checked to be a positive int."""
    return positive_int("MAX_ITEM_LIST_LENGTH", config["MAX_ITEM_LIST_LENGTH"])


def int_in(key, value, low, high, meaning=""):
    """``value`` after checking that it is an int in ``low..high``; ``meaning`` explains the bounds."""
    if not (is_int(value) and low <= value <= high):
        raise ConfigError(key, f"an int in {low}..{high}{meaning}", value)
    return value


def boolean(key, value):
    """``value``, the setting ``key``, after checking that it is True or False."""
    if not isinstance(value, bool):
        raise ConfigError(key, "True or False", value)
    return value


def one_of(key, value, choices):
    """``value`` after checking that it is one of ``choices``."""
    if isinstance(value, (list, dict)) or value not in choices:
        raise ConfigError(key, f"one of {', '.join(map(str, choices))}", value)
    return value


def number(key, value, low=None, high=None, low_open=False, high_open=False):
    """``value`` after checking that it is a number within the given bounds (closed unless ``*_open``)."""
    above = low is None or (value > low if low_open else value >= low) if is_number(value) else False
    below = high is None or (value < high if high_open else value <= high) if is_number(value) else False
    if not (above and below):
        if low is not None and high is not None:
            allowed = f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        elif low is not None:
            allowed = f"a number {'>' if low_open else '>='} {low}"
        elif high is not None:
            allowed = f"a number {'<' if high_open else '<='} {high}"
        else:
            allowed = "a number"
        raise ConfigError(key, allowed, value)
    return value


def probability(key, value):
    """``value`` after checking that it is a probability in [0, 1) (a dropout rate, say)."""
    return number(key, value, 0, 1, high_open=True)
