"""Strict input: the limits every campaign file, API body and shop file is held to, in one place.

Whatever a caller sends is checked before it is stored or acted on, and a problem is one line naming the field:

- structure: at most :data:`MAX_DEPTH` levels of nesting and :data:`MAX_VALUES` values in all (shared YAML
  aliases count every time they are used, so a few hundred bytes can never expand into gigabytes);
- scalars: integers within 64 bits, floats finite, text valid Unicode (no lone surrogates, which no database
  can store) without NUL characters (PostgreSQL cannot store them);
- locales: ones that Babel (CLDR) knows;
- YAML: parsed with the safe loader, at most :data:`MAX_ALIASES` alias references and :data:`MAX_FILE_BYTES`
  bytes; files must be UTF-8 text (a UTF-8 byte-order mark is allowed) and not folders.

Pydantic models of the config (campaigns, API bodies) use :data:`STRICT`: unknown keys are errors naming the key.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from generator.core.errors import DataError, PushgenError

MAX_INT = 2**63 - 1
MIN_INT = -(2**63)
MAX_DEPTH = 16
MAX_VALUES = 100_000
MAX_ALIASES = 100
MAX_FILE_BYTES = 1_000_000
STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
"""The config of every pydantic model that describes configuration or a request: no unknown keys, no NaN/inf."""


class InputError(PushgenError, ValueError):
    """A value breaks one of the input limits; the message starts with the field's dotted path."""


def show(text: object, limit: int = 60) -> str:
    """``text`` safe to print or JSON-encode: lone surrogates escaped, cut to ``limit`` characters."""
    s = text if isinstance(text, str) else str(text)
    s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    return s if len(s) <= limit else s[:limit] + "…"


def check_text(value: str, where: str = "") -> str:
    """``value`` unchanged if it is storable text; else :class:`InputError` naming ``where``."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{where or 'value'}: not valid Unicode (a lone surrogate)") from None
    if "\x00" in value:
        raise InputError(f"{where or 'value'}: contains a NUL character")
    return value


def check_value(value: Any, where: str = "") -> Any:
    """Walk a parsed document (JSON or YAML) without recursion and raise :class:`InputError` at the first value
    outside the limits (see the module doc); returns ``value`` unchanged."""
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    seen = 0
    while stack:
        v, path, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise InputError(f"{where or 'document'}: more than {MAX_VALUES} values (aliases count each use)")
        if depth > MAX_DEPTH:
            raise InputError(f"{path or 'document'}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(v, str):
            check_text(v, path)
        elif v is None or isinstance(v, bool | date | datetime | BaseModel):  # a model checked itself
            continue
        elif isinstance(v, int):
            if not MIN_INT <= v <= MAX_INT:
                raise InputError(f"{path or 'value'}: integer out of the 64-bit range")
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise InputError(f"{path or 'value'}: must be a finite number")
        elif isinstance(v, dict):
            for k, x in v.items():
                if not isinstance(k, str):
                    raise InputError(f"{path or 'document'}: key {show(k)!r} is not text")
                check_text(k, f"{path}.{show(k)}" if path else show(k))
                stack.append((x, f"{path}.{show(k)}" if path else show(k), depth + 1))
        elif isinstance(v, list | tuple):
            stack.extend((x, f"{path}.{i}" if path else str(i), depth + 1) for i, x in enumerate(v))
        else:
            raise InputError(f"{path or 'value'}: unsupported value of type {type(v).__name__}")
    return value


def check_locale(value: str) -> str:
    """``value`` if Babel knows the locale (``en_US``, ``zh-CN``, ``fr``); else a ValueError for pydantic."""
    from babel import Locale, UnknownLocaleError
    from babel.core import parse_locale

    try:
        asked = parse_locale(value.replace("-", "_"))
        found = Locale.parse(value.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        raise ValueError(f"unknown locale {show(value)!r}") from None
    if asked[1] and found.territory != asked[1]:  # Babel would quietly turn en_ZZ into en_US
        raise ValueError(f"unknown locale {show(value)!r} (no region {show(asked[1])!r} for that language)")
    return value


def misspelt_key(key: str, known: Iterable[str], present: Iterable[str] = ()) -> str | None:
    """The known key that ``key`` most likely misspells (``push_optin`` for ``push_opt_in``), when ``key`` is
    unknown and that one is not ``present`` itself; else None."""
    known = list(known)
    if key in known:
        return None
    known = [k for k in known if k not in set(present)]
    norm = "".join(ch for ch in key.lower() if ch.isalnum())
    squashed = {"".join(ch for ch in k.lower() if ch.isalnum()): k for k in known}
    if norm in squashed:
        return squashed[norm]
    close = difflib.get_close_matches(norm, list(squashed), n=1, cutoff=0.85)
    return squashed[close[0]] if close else None


# --- files --------------------------------------------------------------------------------------------------

def read_text(path: str | Path, *, max_bytes: int = MAX_FILE_BYTES) -> str:
    """A whole UTF-8 text file (a byte-order mark is dropped); :class:`DataError` naming the file for a missing
    file, a folder, an unreadable or oversized file, or bytes that are not UTF-8."""
    path = Path(path)
    try:
        if path.is_dir():
            raise DataError(str(path), None, None, "is a folder, not a file")
        size = path.stat().st_size
        if size > max_bytes:
            raise DataError(str(path), None, None, f"file is {size} bytes; the limit is {max_bytes}")
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(str(path), None, None, "file not found") from None
    except OSError as exc:
        raise DataError(str(path), None, None, f"cannot read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(str(path), None, None, f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                                               f"{exc.start})") from None


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, counting alias references."""

    aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise InputError(f"more than {MAX_ALIASES} YAML alias references")
        return super().compose_node(parent, index)


def load_yaml_mapping(path: str | Path, what: str = "document") -> dict[str, Any]:
    """Read a YAML file that must hold one non-empty mapping, within the limits; :class:`DataError` otherwise."""
    text = read_text(path)
    try:
        loader = _BoundedLoader(text)
        try:
            raw = loader.get_single_data()
        finally:
            loader.dispose()
    except InputError as exc:
        raise DataError(str(path), None, None, str(exc)) from None
    except yaml.YAMLError as exc:
        raise DataError(str(path), None, None, "not valid YAML: " + " ".join(str(exc).split())) from None
    except RecursionError:
        raise DataError(str(path), None, None, "not valid YAML: nested too deeply") from None
    if raw is None:
        raise DataError(str(path), None, None, f"empty file: a {what} needs at least one key")
    if not isinstance(raw, dict):
        raise DataError(str(path), None, None, f"a {what} must be a mapping of keys to values, "
                                               f"not a {type(raw).__name__}")
    try:
        check_value(raw)
    except InputError as exc:
        field, _, problem = str(exc).partition(": ")
        raise DataError(str(path), None, field or None, problem or str(exc)) from None
    return raw
