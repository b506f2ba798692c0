"""Typed configs from YAML: a YAML 1.2-style loader, `--set key=value` overrides, and the checked
conversion of a mapping into a config dataclass (unknown keys get a did-you-mean, wrong types name
the field and the type wanted)."""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from ulmfit.errors import UlmfitError


class _Loader(yaml.SafeLoader):
    """YAML 1.2 scalars where 1.1 surprises: ``1e-5`` (no dot) is a number, not a string, and only
    true/false are booleans, so ``mixed_precision: no`` (or ``--set train.mixed_precision=no``)
    stays the string "no" instead of becoming False."""


_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*(?:\.[\d_]*)?|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def _yaml_load(text: str):
    return yaml.load(text, Loader=_Loader)



def _fail_key(key: str, valid: list[str], where: str) -> typing.NoReturn:
    close = difflib.get_close_matches(key.split(".")[-1], valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UlmfitError(f"unknown config key {where + key!r}{hint}; valid keys: {', '.join(valid)}")


def _coerce(value, tp, where: str):
    """Check `value` against the annotation `tp`; ints become floats where a float is wanted."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, getattr(types, "UnionType", None)):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except UlmfitError as e:
                errors.append(str(e))
        raise UlmfitError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UlmfitError(f"config key {where!r} must be a mapping, got {value!r}")
        return from_dict(tp, value, where + ".")
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if isinstance(value, str) and args and args[0] is str:
            value = [v.strip() for v in value.split(",")]
        if not isinstance(value, list):
            raise UlmfitError(f"config key {where!r} must be a list, got {value!r}")
        return [_coerce(v, args[0], where) for v in value] if args else value
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise UlmfitError(f"config key {where!r} must be a mapping, got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UlmfitError(f"config key {where!r} must be true or false, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise UlmfitError(f"config key {where!r} must be a number, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise UlmfitError(f"config key {where!r} must be an integer, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise UlmfitError(f"config key {where!r} must be a string, got {value!r}")
    return value


def from_dict(cls, d: dict | None, where: str = ""):
    """Build dataclass `cls` from a mapping, checking every key and type."""
    d = dict(d or {})
    hints = typing.get_type_hints(cls)
    fmap = {f.name: f for f in dataclasses.fields(cls)}
    names = list(fmap)
    kwargs = {}
    for k, v in d.items():
        if k not in names:
            _fail_key(k, names, where)
        factory = fmap[k].default_factory
        if isinstance(v, dict) and dataclasses.is_dataclass(hints[k]) and factory is not dataclasses.MISSING:
            # a partial section keeps this phase's defaults (e.g. finetune_lm's gradual/STLR
            # recipe, pretrain's clip=1.0) for the keys it does not set
            v = {**dataclasses.asdict(factory()), **v}
        kwargs[k] = _coerce(v, hints[k], where + k)
    obj = cls(**kwargs)
    check_ranges(obj, where)
    return obj


# a field's allowed range: (lowest, lowest allowed?, highest, highest allowed?); None = unbounded
POSITIVE = (0, False, None, False)
AT_LEAST_1 = (1, True, None, False)
NON_NEGATIVE = (0, True, None, False)
FRACTION = (0, True, 1, True)
OPEN_FRACTION = (0, False, 1, False)
PORTION = (0, False, 1, True)


def range_text(r) -> str:
    lo, lo_ok, hi, hi_ok = r
    low = f"{'at least' if lo_ok else 'above'} {lo}" if lo is not None else ""
    high = f"{'at most' if hi_ok else 'below'} {hi}" if hi is not None else ""
    return " and ".join(t for t in (low, high) if t)


def _in_range(v, r) -> bool:
    lo, lo_ok, hi, hi_ok = r
    if isinstance(v, (list, tuple)):
        return all(_in_range(x, r) for x in v)
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return True  # not a number (e.g. "auto"): its own checks apply
    return (lo is None or v > lo or (lo_ok and v == lo)) and (hi is None or v < hi or (hi_ok and v == hi))


class Choices:
    """Base of the config sections with fields that take one of a few names: ``CHOICES`` maps such a
    field to its names, checked whenever the section is made (``SECTION`` names it in the error); ``AUTO``
    maps a field that takes a number or ``auto`` to what the number is (its range is ``RANGES``')."""
    SECTION: str = ""
    CHOICES: dict = {}
    AUTO: dict = {}

    def __post_init__(self):
        for name, allowed in self.CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise UlmfitError(f"{self.SECTION}.{name} {value!r} is not one of {', '.join(allowed)}")
        for name, what in self.AUTO.items():
            value = getattr(self, name)
            if isinstance(value, str) and value != "auto":
                raise UlmfitError(f"{self.SECTION}.{name} {value!r} is not {what} or auto")


def check_ranges(obj, where: str = "") -> None:
    """Refuse a number outside its field's range (``RANGES`` of the dataclass), naming the key."""
    for name, r in getattr(type(obj), "RANGES", {}).items():
        v = getattr(obj, name)
        if v is not None and not _in_range(v, r):
            raise UlmfitError(f"config key {where + name!r} must be {range_text(r)}, got {v!r}")


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise UlmfitError(f"config file {path} does not exist")
    try:
        data = _yaml_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise UlmfitError(f"config file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise UlmfitError(f"config file {path} must hold a mapping at the top level")
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `a.b.c=value` strings (values parsed as YAML) to a nested mapping."""
    data = dict(data)
    for item in overrides or []:
        if "=" not in item:
            raise UlmfitError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = _yaml_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node[p] = dict(node[p])
            node = node[p]
        node[parts[-1]] = value
    return data


def save_yaml(cfg, path: str | Path) -> None:
    from ulmfit.core.checkpoint import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


