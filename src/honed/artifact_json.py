"""Plain JSON values and the one canonical text that artifacts hash and sign.

Every part of an artifact (demos, init_args, predictor config, field metadata) must be plain JSON, and
the content hash and the HMAC signature must be computed over byte-identical text on every machine.
Both rules live here so that the writer, the reader and the signer cannot drift apart.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from typing import Any

import dspy
import pydantic

from honed.errors import ArtifactError

# Keys that are not part of what the hash and the signature cover: they are computed from the rest.
UNHASHED_KEYS = ("content_hash", "signature")


def plain(value: Any, where: str, path: Any) -> Any:
    """`value` as plain JSON data (pydantic models dumped, Examples as dicts); an error names `where`."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ArtifactError(path, f"{where}: {value} cannot be stored in JSON")
        return value
    if isinstance(value, enum.Enum):
        return plain(value.value, where, path)
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dspy.Example):
        return plain(dict(value.items()), where, path)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ArtifactError(path, f"{where}: key {key!r} is not a string, so it cannot be stored in JSON")
            out[key] = plain(item, f"{where}.{key}", path)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(item, f"{where}[{i}]", path) for i, item in enumerate(value)]
    raise ArtifactError(path, f"{where}: a {type(value).__name__} value cannot be stored in JSON; "
                              "use str, numbers, bools, lists, dicts or pydantic models")


def canonical_bytes(artifact: Mapping[str, Any]) -> bytes:
    """Sorted-key, compact JSON of everything but the hash and the signature: what both of them cover."""
    body = {key: value for key, value in artifact.items() if key not in UNHASHED_KEYS}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    # surrogatepass: a file can hold a lone-surrogate escape; hashing it must not crash (it never matches).
    return text.encode("utf-8", errors="surrogatepass")
