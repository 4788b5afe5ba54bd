"""A prompt layout a small model can read, with typed outputs enforced at decode time.

DSPy's Chat/JSON adapters wrap every field in `[[ ## name ## ]]` headers and describe the output
format in prose. Measured on SmolLM2-135M (sentiment, 100 test examples, same JSON-schema constraint):
plain layout 0.83, DSPy-style headers 0.65, and 0.00 with DSPy's default adapter and no constraint.
So this adapter sends:

- system: the signature's instructions (plus field notes only where the user wrote descriptions);
- user: the input value alone when there is one input field, else `name: value` lines;
- assistant (demos): the outputs as one compact JSON object, the same shape the grammar produces;
- the outputs' JSON schema as `response_format`, which the `gguf/` provider compiles into a grammar
  and remote providers enforce where they support structured outputs.

When no schema can be enforced (a remote model without structured outputs), the system message also
spells out the JSON fields, since then the prompt is all the model has to go on.

For `gguf/` models, whose grammar honed compiles itself, a bounded schema (every string has a
`maxLength`, every list a `maxItems`) also caps `max_tokens` at the most tokens the grammar can produce
(`honed.models.grammar_bound`): never above the configured value, and never below a valid answer's
length. Remote decoders' grammars (their whitespace rules, whether they honour `maxLength`) are not
known here, so their `max_tokens` is left as configured. Demonstrations of `int`/`float` outputs are
written as JSON numbers, the shape the grammar produces, even when the gold value is text ("12").

An output type the schema or the grammar cannot express raises `honed.SchemaError` naming the field
before the request is sent (for `gguf/` models and `typed_outputs="llama.cpp"` the grammar is compiled
here, so a refused schema never reaches the provider, where litellm would wrap and retry it).
`check_program` runs the same check on every predictor of a program, so a command can refuse a
program before its first example instead of failing every example the same way.
"""

from __future__ import annotations

import contextvars
import json
from typing import Any, Literal

import dspy
import pydantic
from dspy.adapters.base import Adapter
from dspy.adapters.json_adapter import JSONAdapter
from dspy.adapters.utils import format_field_value, get_annotation_name, serialize_for_json

from honed.models.gguf import DEFAULT_MAX_TOKENS
from honed.models.grammar_bound import max_output_tokens
from honed.models.resolve import is_gguf_model
from honed.models.schema import check_grammar, output_schema

TypedOutputs = Literal["auto", "json_schema", "llama.cpp", "off"]
TYPED_OUTPUT_MODES: tuple[str, ...] = ("auto", "json_schema", "llama.cpp", "off")

_schema_enforced: contextvars.ContextVar[bool] = contextvars.ContextVar("honed_schema_enforced", default=False)


def _has_custom_desc(name: str, field: Any) -> str | None:
    desc = (field.json_schema_extra or {}).get("desc")
    return desc if desc and desc != f"${{{name}}}" else None


class HonedAdapter(JSONAdapter):
    """Plain-layout JSON adapter. `typed_outputs` chooses how the output schema reaches the model:

    - "auto": `gguf/` models and engines that declare schema support get the schema; other remote
      models get it when litellm says they support `response_format` schemas.
    - "json_schema": always send OpenAI-style structured outputs.
    - "llama.cpp": send `{"type": "json_object", "schema": ...}`, the form `llama_cpp.server` reads.
    - "off": send no schema; rely on the prompt and lenient parsing.
    """

    def __init__(self, typed_outputs: TypedOutputs = "auto", callbacks: list | None = None) -> None:
        if typed_outputs not in TYPED_OUTPUT_MODES:
            raise ValueError(f"typed_outputs must be one of {TYPED_OUTPUT_MODES}, got {typed_outputs!r}")
        super().__init__(callbacks=callbacks, use_native_function_calling=False)
        self.typed_outputs = typed_outputs

    def _set_response_format(self, lm: Any, lm_kwargs: dict[str, Any], signature: Any) -> bool:
        """Put the output schema into `lm_kwargs`; return whether decoding will enforce it."""
        mode = self.typed_outputs
        if mode == "off":
            return False
        if mode == "auto":
            engine = getattr(lm, "engine", None)
            if is_gguf_model(lm.model) or getattr(engine, "supports_response_schema", False):
                mode = "json_schema"
            else:
                # DSPy's own choice from litellm's model metadata: a pydantic class when the model takes
                # structured outputs (enforced), {"type": "json_object"} or nothing otherwise (not enforced).
                JSONAdapter._prepare_response_format(self, lm, lm_kwargs, signature)
                return isinstance(lm_kwargs.get("response_format"), type)
        schema = output_schema(signature)
        if is_gguf_model(lm.model) or mode == "llama.cpp":
            check_grammar(signature, schema)  # llama.cpp compiles it: refuse here, naming the field
        if is_gguf_model(lm.model):
            _cap_max_tokens(lm, lm_kwargs, schema)
        if mode == "json_schema":
            lm_kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "outputs", "schema": schema, "strict": True},
            }
        else:
            lm_kwargs["response_format"] = {"type": "json_object", "schema": schema}
        return True

    def __call__(self, lm: Any, lm_kwargs: dict[str, Any], signature: Any, demos: list, inputs: dict) -> list:
        token = _schema_enforced.set(self._set_response_format(lm, lm_kwargs, signature))
        try:
            # Skip JSONAdapter/ChatAdapter __call__: the schema choice is ours, and a parse failure
            # must surface as one (no silent retry in another layout).
            return Adapter.__call__(self, lm, lm_kwargs, signature, demos, inputs)
        finally:
            _schema_enforced.reset(token)

    async def acall(self, lm: Any, lm_kwargs: dict[str, Any], signature: Any, demos: list, inputs: dict) -> list:
        token = _schema_enforced.set(self._set_response_format(lm, lm_kwargs, signature))
        try:
            return await Adapter.acall(self, lm, lm_kwargs, signature, demos, inputs)
        finally:
            _schema_enforced.reset(token)

    def format_system_message(self, signature: Any) -> str:
        parts = [signature.instructions.strip()]
        notes = [f"- {name}: {desc}" for name, field in signature.fields.items()
                 if (desc := _has_custom_desc(name, field))]
        if notes:
            parts.append("Fields:\n" + "\n".join(notes))
        if not _schema_enforced.get():
            fields = ", ".join(f'"{name}" ({get_annotation_name(field.annotation)})'
                               for name, field in signature.output_fields.items())
            parts.append(f"Answer with only a JSON object with the keys {fields}.")
        return "\n\n".join(part for part in parts if part)

    def format_user_message_content(self, signature: Any, inputs: dict[str, Any], prefix: str = "",
                                    suffix: str = "", main_request: bool = False) -> str:
        present = [(name, field) for name, field in signature.input_fields.items() if name in inputs]
        if len(signature.input_fields) == 1 and present:
            name, field = present[0]
            body = format_field_value(field_info=field, value=inputs[name])
        else:
            body = "\n".join(f"{name}: {format_field_value(field_info=field, value=inputs[name])}"
                             for name, field in present)
        return "\n\n".join(part for part in (prefix, body, suffix) if part).strip()

    def format_assistant_message_content(self, signature: Any, outputs: dict[str, Any],
                                         missing_field_message: str | None = None) -> str:
        values = {name: _as_declared_number(field.annotation, outputs.get(name, missing_field_message))
                  for name, field in signature.output_fields.items()}
        return json.dumps(serialize_for_json(values), ensure_ascii=False)


def _as_declared_number(annotation: Any, value: Any) -> Any:
    """A text gold value ("12") of an `int`/`float` field as that number; anything else unchanged."""
    if annotation not in (int, float) or not isinstance(value, str):
        return value
    try:
        return pydantic.TypeAdapter(annotation).validate_python(value.strip(), strict=False)
    except pydantic.ValidationError:
        return value


def _cap_max_tokens(lm: Any, lm_kwargs: dict[str, Any], schema: dict[str, Any]) -> None:
    """Lower `max_tokens` to the most tokens the schema's grammar can produce; never raise it."""
    bound = max_output_tokens(schema)
    if bound is None:
        return
    merged = {**(getattr(lm, "kwargs", None) or {}), **lm_kwargs}  # what DSPy's LM sends: call over defaults
    # read as the gguf/ provider reads it
    configured = merged.get("max_tokens") or merged.get("max_completion_tokens") or DEFAULT_MAX_TOKENS
    if bound < int(configured):
        lm_kwargs.pop("max_completion_tokens", None)
        lm_kwargs["max_tokens"] = bound


def check_program(program: Any, lm: Any = None, adapter: Any = None) -> None:
    """Raise `SchemaError` now if any predictor's outputs cannot be typed for `lm` (default: the configured one).

    Runs the adapter's own schema choice on a throwaway request, so it checks exactly what a call would.
    """
    lm = lm or dspy.settings.lm
    adapter = adapter or dspy.settings.adapter
    if lm is None or not isinstance(adapter, HonedAdapter) or not isinstance(getattr(lm, "model", None), str):
        return
    for _, predictor in program.named_predictors():
        adapter._set_response_format(lm, {}, predictor.signature)
