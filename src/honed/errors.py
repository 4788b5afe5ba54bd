"""Typed errors. Each one says what went wrong and what to do next, so the CLI can print one line."""

from __future__ import annotations

from collections.abc import Iterator


def _rebuild(cls: type[BaseException], args: tuple, state: dict) -> BaseException:
    """An error as it was pickled: its message and attributes, without calling its `__init__` again."""
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class HonedError(Exception):
    """Base class for every error honed raises on purpose."""

    def __reduce__(self) -> tuple:
        # An error raised in a Ray worker (`ContextLengthExceeded` from an actor's model) reaches the driver
        # pickled. Python's default unpickling calls `cls(*self.args)`, which fails for errors whose
        # `__init__` takes other arguments than their message; this one restores them as they were.
        return _rebuild, (type(self), self.args, dict(self.__dict__))


class ConfigError(HonedError):
    """A model string, cache directory or option cannot be used as given."""


class ModelNotFoundError(ConfigError):
    """A `gguf/...` model string names no model honed can find on this machine."""


class ModelFileCorrupt(ModelNotFoundError):
    """A bundled model's bytes (a chunk, or the file assembled from chunks) are not the pinned ones.

    Such a file is never loaded; the message names the package to reinstall.
    """


class SchemaError(HonedError):
    """A signature's output type cannot be turned into a JSON schema or a decoding grammar."""

    def __init__(self, field: str, annotation: object, reason: str):
        self.field = field
        self.annotation = annotation
        super().__init__(
            f"output field `{field}` has type {annotation!r}, which typed decoding cannot express: {reason}. "
            "Use str, int, float, bool, Literal[...], a list of these, or a pydantic model."
        )


class DatasetError(HonedError):
    """A dataset row is malformed. Names the file, the 1-based line and the field."""

    def __init__(self, path: str, line: int | None, field: str | None, problem: str):
        self.path = path
        self.line = line
        self.field = field
        self.problem = problem
        where = path if line is None else f"{path}:{line}"
        what = f" field `{field}`" if field else ""
        super().__init__(f"{where}:{what} {problem}")


class ArtifactError(HonedError):
    """A compiled artifact cannot be saved, read or rebuilt. Names the file and what to do next."""

    def __init__(self, path: object, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        where = f"artifact {self.path}" if self.path else "artifact"
        super().__init__(f"{where}: {problem}")


class BudgetExhausted(HonedError):
    """A request would exceed the compile's call budget; it was not sent."""

    status_code = 400  # so litellm/DSPy treat it as a bad request: never retried

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


class RunDirError(HonedError):
    """A run directory belongs to a different compile, or its ledger is damaged beyond its last line."""


class PlantError(ConfigError):
    """The task cannot carry this plant (e.g. one-word inputs leave no trigger word for a hidden rule)."""


class ModelRequestBlocked(HonedError):
    """A real model was called while `honed.testing.block_model_requests()` was active.

    Carries HTTP status 400 so litellm and DSPy classify it as a bad request: it is never retried.
    """

    status_code = 400

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


class ProviderUnavailable(HonedError):
    """The model provider cannot be reached at all (connection refused, DNS failure, server gone).

    Unlike a failed answer, which is counted and the compile goes on, this stops a compile: the ledger
    and cache keep everything done so far, and the same command resumes once the provider is back.
    """

    def __init__(self, model: str | None, problem: str):
        self.model = model
        self.problem = problem
        super().__init__(f"model provider for {model or 'the model'} is unreachable: {problem}. Nothing is lost: "
                         "start it again and rerun the same command to resume.")


class ContextLengthExceeded(HonedError):
    """A prompt does not fit the model's context window. Carries HTTP status 400: never retried."""

    status_code = 400

    def __init__(self, model: str | None, prompt_tokens: int, context: int):
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.context = context
        super().__init__(f"the prompt is {prompt_tokens} tokens but {model or 'the model'} holds {context}; "
                         "shorten the input (or the demonstrations), or use a model with a longer context")


def cause_chain(error: BaseException) -> Iterator[BaseException]:
    """`error`, then what it was raised from (`__cause__`) or while handling (`__context__`), each once."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        yield current
        seen.add(id(current))
        current = current.__cause__ or current.__context__


def find_cause(error: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first exception of type `kind` in `error`'s cause chain (DSPy and litellm wrap errors twice)."""
    return next((link for link in cause_chain(error) if isinstance(link, kind)), None)
