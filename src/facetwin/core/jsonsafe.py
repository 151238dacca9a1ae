"""Plain JSON values from anything facetwin returns: one sanitiser, one canonical form.

``json_safe`` turns dataclasses, objects with ``to_dict``, numpy values and arrays, and paths into JSON
values, and non-finite floats into ``None`` (JSON has no NaN). ``canonical_json`` is the sorted, compact
form used wherever a description is hashed (model fingerprints, cache keys).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any


def json_safe(obj: Any) -> Any:
    """``obj`` as plain JSON values (dict, list, str, int, float, bool, None)."""
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return json_safe(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: json_safe(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy arrays and scalars
        return json_safe(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, str | int | bool) or obj is None:
        return obj
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def canonical_json(obj: Any) -> str:
    """Sorted, compact JSON of ``json_safe(obj)``: equal descriptions give equal text."""
    return json.dumps(json_safe(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def dumps(obj: Any, indent: int | None = 2) -> str:
    """Pretty JSON of ``json_safe(obj)`` (what facetwin writes to files)."""
    return json.dumps(json_safe(obj), indent=indent, ensure_ascii=False)
