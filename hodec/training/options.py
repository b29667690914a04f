"""Config keys defined once: a key is a dataclass field made by `option` (default, one-line description, check),
so the defaults, `--help`, the README's tables and validation all read the same definition. Also the strict YAML
reader behind FIT.yaml and SPARSIFY.yaml, which refuses what safe loading alone lets through: aliases (a
"billion laughs" bomb of a few hundred bytes expands to gigabytes when formatted), duplicate keys (silently the
last one otherwise), oversized files and runaway nesting.
"""
from __future__ import annotations

import copy
import math
import reprlib
from dataclasses import MISSING, Field, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import yaml

from ..errors import Diagnostic, HodecError, Span, did_you_mean
from ..files import read_text

MAX_CONFIG_BYTES = 1 << 20
MAX_INT = 2 ** 63 - 1  # what torch's seeds and int64 counters hold

Fail = Callable[[str], None]
Check = Callable[[Any, str, Fail], Any]  # (value, key, fail) -> the cleaned value (a placeholder after fail)


# ---------------------------------------------------------------- keys
def option(default, help: str, check: Check) -> Field:
    """A config key: its default, its one-line description and the check that cleans a given value."""
    meta = {"help": help, "check": check}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


def nested(config_class, **defaults) -> Field:
    """A field holding a whole config of another kind whose keys are read from the same mapping (SPARSIFY.yaml
    takes every FIT.yaml key); `defaults` override that kind's defaults."""
    return field(default_factory=lambda: config_class(**defaults),
                 metadata={"nested": config_class, "defaults": defaults})


def defaults(config_class) -> dict:
    """Every key of a config class (nested ones included) -> its default."""
    out = {}
    for f in fields(config_class):
        if "nested" in f.metadata:
            out.update(defaults(f.metadata["nested"]))
            out.update(copy.deepcopy(f.metadata["defaults"]))
        elif "check" in f.metadata:
            out[f.name] = copy.deepcopy(f.default) if f.default is not MISSING else f.default_factory()
    return out


def key_help(config_class) -> dict:
    """Every key -> its one-line description."""
    out = {}
    for f in fields(config_class):
        if "nested" in f.metadata:
            out.update(key_help(f.metadata["nested"]))
        elif "help" in f.metadata:
            out[f.name] = f.metadata["help"]
    return out


def config_help(config_class) -> str:
    """The keys as a YAML block: `key: default   # description`, one line each (for --help and the README)."""
    docs = key_help(config_class)
    lines = []
    for key, value in defaults(config_class).items():
        text = yaml.safe_dump(value, default_flow_style=True, width=10 ** 6, sort_keys=False).strip()
        text = text.removesuffix("...").strip()
        lines.append(f"{key}: {text}".ljust(25) + f" # {docs[key]}")
    return "\n".join(lines)


def to_dict(config) -> dict:
    """A config as plain key -> value (nested configs flattened): what checkpoints and reports store."""
    out = {}
    for f in fields(config):
        if "nested" in f.metadata:
            out.update(to_dict(getattr(config, f.name)))
        elif "check" in f.metadata:
            out[f.name] = copy.deepcopy(getattr(config, f.name))
    return out


def check_keys(config_class, raw: Mapping) -> tuple[dict, list]:
    """The constructor arguments of a config class from a raw mapping (missing keys: defaults), and the list of
    errors: unknown keys and every value its check refuses."""
    errors: list = []
    known = defaults(config_class)
    for key in raw:
        if key not in known:
            hint = did_you_mean(str(key), known) if isinstance(key, str) and len(key) < 100 else None
            errors.append(f"unknown key {show(key)}" + (f"; {hint}" if hint else f" (known: {', '.join(known)})"))
    kwargs = {}
    for f in fields(config_class):
        if "nested" in f.metadata:
            inner = f.metadata["nested"]
            sub_raw = {**f.metadata["defaults"], **{k: v for k, v in raw.items() if k in defaults(inner)}}
            sub_kwargs, sub_errors = check_keys(inner, sub_raw)
            errors.extend(sub_errors)
            kwargs[f.name] = inner(**sub_kwargs)
        elif "check" in f.metadata:
            value = raw[f.name] if f.name in raw else known[f.name]
            kwargs[f.name] = f.metadata["check"](value, f.name, errors.append)
    return kwargs, errors


def raise_errors(errors: list, what: str, filename: str):
    """The one place a config's error list becomes a HodecError."""
    if errors:
        raise HodecError(errors[0] if len(errors) == 1 else f"invalid {what} config:\n  " + "\n  ".join(errors),
                         filename)


# ---------------------------------------------------------------- checks
_SHOW = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = 60
_SHOW.maxlist = _SHOW.maxdict = _SHOW.maxtuple = 6
_SHOW.maxlevel = 3
SHOW_CHARS = 80


def show(value) -> str:
    """A value as an error message quotes it: bounded in length and depth however large the value is."""
    text = _SHOW.repr(value)
    return text if len(text) <= SHOW_CHARS else text[:SHOW_CHARS - 3] + "..."


def as_number(value) -> Optional[float]:
    """A float from an int, float or numeric string ('1e-7'); None if it is not one (booleans are not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        return None


def choice(options: tuple) -> Check:
    def check(value, key, fail):
        if isinstance(value, str) and value in options:
            return value
        hint = did_you_mean(value, options) if isinstance(value, str) and len(value) < 100 else None
        fail(f"{key}: {show(value)} is not one of {', '.join(options)}" + (f"; {hint}" if hint else ""))
        return options[0]
    return check


def number(positive: bool = False, minimum: Optional[float] = None, maximum: Optional[float] = None) -> Check:
    def check(value, key, fail):
        x = as_number(value)
        if x is None or not math.isfinite(x):
            fail(f"{key}: expected a finite number, got {show(value)}")
            return 1.0
        if positive and not x > 0:
            fail(f"{key}: must be > 0, got {show(value)}")
        if minimum is not None and x < minimum:
            fail(f"{key}: must be >= {minimum:g}, got {show(value)}")
        if maximum is not None and x > maximum:
            fail(f"{key}: must be at most {maximum:g}, got {show(value)}")
        return x
    return check


def integer(minimum: int, maximum: int = MAX_INT) -> Check:
    def check(value, key, fail):
        x = _as_integer(value)
        if x is None:
            fail(f"{key}: expected an integer, got {show(value)}")
            return minimum
        if not minimum <= x <= maximum:
            fail(f"{key}: must be >= {minimum}, got {show(value)}" if x < minimum else
                 f"{key}: must be at most {maximum}, got {show(value)}")
            return minimum
        return x
    return check


def _as_integer(value) -> Optional[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit() and len(value) < 100:
        return int(value)
    x = as_number(value)
    return int(x) if x is not None and math.isfinite(x) and x == int(x) else None


def flag(value, key, fail):
    if not isinstance(value, bool):
        fail(f"{key}: expected true or false, got {show(value)}")
    return value


def text(value, key, fail):
    if not isinstance(value, str) or not value.strip():
        fail(f"{key}: expected a non-empty string, got {show(value)}")
    return value


def optional(inner: Check) -> Check:
    """None (the key's 'derive it' default), or a value the inner check accepts."""
    return lambda value, key, fail: None if value is None else inner(value, key, fail)


def per_column(value, key, fail):
    """A number >= 0 (every column), or a map column name -> number."""
    if isinstance(value, Mapping):
        return {str(name): number(minimum=0.0)(v, f"{key}.{show(name)}", fail) for name, v in value.items()}
    return number(minimum=0.0)(value, key, fail)


# ---------------------------------------------------------------- YAML
def read_yaml_mapping(path: Path, what: str) -> dict:
    """A YAML file holding one mapping (empty file: {}); located errors for bad YAML, aliases, duplicate keys."""
    text = read_text(path, max_bytes=MAX_CONFIG_BYTES)
    loader = _StrictLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        raise _located(f"not valid YAML ({err.problem or err.context})", mark, path, text) from None
    except _YamlRefused as err:
        raise _located(err.message, err.mark, path, text) from None
    except (yaml.YAMLError, ValueError) as err:  # ValueError: an integer of more digits than Python converts
        raise HodecError(f"not valid YAML ({first_line(err)})", str(path)) from None
    except RecursionError:
        raise HodecError("the YAML is nested too deeply", str(path)) from None
    finally:
        loader.dispose()
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise HodecError(f"a {what} config is a YAML mapping of keys to values (e.g. 'method: vanilla')", str(path))
    return data


def first_line(err: Exception) -> str:
    """An exception's message cut to its first line and 200 characters, or its type's name."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def _located(message: str, mark, path: Path, text: str) -> HodecError:
    if mark is None:
        return HodecError(message, str(path))
    span = Span(mark.line + 1, mark.column + 1, mark.line + 1, mark.column + 2)
    return HodecError([Diagnostic(message, span)], str(path), text)


class _YamlRefused(Exception):
    def __init__(self, message: str, mark):
        super().__init__(message)
        self.message, self.mark = message, mark


class _StrictLoader(yaml.SafeLoader):
    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _YamlRefused(f"YAML aliases (*{event.anchor}) are not accepted in a config: write the value out",
                               event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:  # an unhashable key: SafeLoader's own error says so
                continue
            if first is not key_node.start_mark:
                raise _YamlRefused(f"duplicate key {show(key)} (first given on line {first.line + 1})",
                                   key_node.start_mark)
        return super().construct_mapping(node, deep)
