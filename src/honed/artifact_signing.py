"""HMAC-SHA256 signatures: proof that an artifact was written by someone holding the key.

The content hash only proves the file is intact: anyone who edits an instruction can recompute it. A
signature is an HMAC over the same canonical content, keyed by a secret the writer and the loader share,
so an edited file, or one written without the key, fails the check. It is a shared-secret scheme (not a
public-key signature): whoever can verify can also sign, so keep the key where the deployments are.

    "signature": {"algorithm": "hmac-sha256", "key_id": "<16 hex>", "value": "<64 hex>"}

`key_id` is an HMAC of a fixed label under the key: it tells "signed with another key" apart from
"changed after signing" in errors, and reveals nothing the signature itself does not. The key is never
written to the file nor put in an error message; errors name only where it came from.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from honed.artifact_json import canonical_bytes
from honed.errors import ArtifactError

KEY_ENV = "HONED_ARTIFACT_KEY"
ALGORITHM = "hmac-sha256"
MIN_KEY_BYTES = 16
_KEY_ID_LABEL = b"honed artifact key id"
_MAKE_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


@dataclass(frozen=True)
class ArtifactKey:
    """A signing key and where it came from (`key=` or `$HONED_ARTIFACT_KEY`), for error messages."""

    secret: bytes = field(repr=False)
    source: str

    @property
    def id(self) -> str:
        return hmac.new(self.secret, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]

    def sign(self, artifact: Mapping[str, Any]) -> dict[str, str]:
        value = hmac.new(self.secret, canonical_bytes(artifact), hashlib.sha256).hexdigest()
        return {"algorithm": ALGORITHM, "key_id": self.id, "value": value}


def env_key(variable: str) -> ArtifactKey | None:
    """The key held in environment variable `variable`, or None when it is unset or empty."""
    value = os.environ.get(variable)
    return ArtifactKey(value.encode("utf-8"), f"${variable}") if value else None


def resolve_key(key: str | bytes | ArtifactKey | None, path: Any) -> ArtifactKey | None:
    """The key to sign or check with: `key` when given, else `$HONED_ARTIFACT_KEY` when set, else None."""
    if key is None:
        key = env_key(KEY_ENV)
        if key is None:
            return None
    if isinstance(key, ArtifactKey):
        secret, source = key.secret, key.source
    elif isinstance(key, str | bytes):
        secret, source = (key.encode("utf-8") if isinstance(key, str) else key), "the key given"
    else:
        raise ArtifactError(path, f"key must be a str or bytes, got {type(key).__name__}")
    if len(secret) < MIN_KEY_BYTES:
        raise ArtifactError(path, f"{source} is {'empty' if not secret else 'shorter than 16 bytes'}, too weak to "
                                  f"sign with; make a random one with `{_MAKE_KEY}`")
    return ArtifactKey(secret, source)


def check_signature(data: Mapping[str, Any], key: ArtifactKey, path: Any) -> None:
    """Refuse an unsigned file, a malformed signature, or one that this key did not make over this content."""
    block = data.get("signature")
    if block is None:
        raise ArtifactError(path, f"is not signed, but a key was given ({key.source}), so it is refused: a "
                                  "signature proves the file came from a holder of the key. Save it signed with "
                                  "honed.save(program, path, key=...) (or sign a file you have checked with "
                                  "honed.artifact.sign(path, key=...))")
    if not (isinstance(block, dict) and block.get("algorithm") == ALGORITHM
            and isinstance(block.get("value"), str) and isinstance(block.get("key_id"), str)):
        raise ArtifactError(path, f"its `signature` is not an {ALGORITHM} signature honed wrote (it needs "
                                  "algorithm, key_id and value); the file was edited; get the original again")
    expected = key.sign(data)["value"]
    if hmac.compare_digest(expected.encode(), block["value"].encode("utf-8", errors="surrogatepass")):
        return
    if block["key_id"] != key.id:
        raise ArtifactError(path, f"is signed with another key (key id {block['key_id']}; {key.source} has key id "
                                  f"{key.id}): use the key it was signed with, or have it signed again with yours")
    raise ArtifactError(path, f"signature does not match its content ({key.source} made it, key id {key.id}): "
                              "the file was changed after it was signed; get the original from its source, or "
                              "sign it again once you have checked it")
