"""The embedded local provider: `gguf/...` model strings served in process by llama.cpp.

Importing this package registers the `gguf` provider with litellm, so `dspy.LM("gguf/smollm2-135m")`
works like any other litellm model string.
"""

from honed.models.gguf import GGUFProvider, register_gguf_provider
from honed.models.identity import model_identity
from honed.models.resolve import DEFAULT_MODEL, resolve_gguf_path

__all__ = ["DEFAULT_MODEL", "GGUFProvider", "model_identity", "register_gguf_provider", "resolve_gguf_path"]
