"""honed: typed DSPy programs, compiled by interchangeable optimizers, with every model call cached.

Importing honed registers the embedded `gguf/` provider with litellm and never touches the network.
"""

import os

# litellm fetches a model price map over the network at import unless told to use its bundled copy;
# offline that costs ~10 s per process. This must run before anything imports litellm.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from honed.adapter import HonedAdapter  # noqa: E402
from honed.artifact import load, register_program, save  # noqa: E402
from honed.cache import HonedCache  # noqa: E402
from honed.config import configure, current_cache, make_lm, optimizer_lm  # noqa: E402
from honed.errors import (  # noqa: E402
    ArtifactError,
    ConfigError,
    DatasetError,
    HonedError,
    ModelNotFoundError,
    ModelRequestBlocked,
    SchemaError,
)
from honed.evaluate import EvalReport, evaluate  # noqa: E402
from honed.models import DEFAULT_MODEL, register_gguf_provider  # noqa: E402
from honed.modules import Behave, Procedure, Step  # noqa: E402
from honed.optimizers import BehaviorOptimizer, ReflectiveRefine  # noqa: E402
from honed.programs import (  # noqa: E402
    Classify,
    ExactMatch,
    MultipleChoice,
    ReasonThenAnswer,
    Task,
    Transform,
    load_task,
    task_from_files,
)
from honed.runs.result import CompileResult  # noqa: E402
from honed.version import __version__ as __version__  # noqa: E402

register_gguf_provider()

__all__ = [
    "ArtifactError", "Behave", "BehaviorOptimizer", "Classify", "CompileResult", "ConfigError", "DEFAULT_MODEL",
    "DatasetError", "EvalReport", "ExactMatch", "HonedAdapter", "HonedCache", "HonedError", "ModelNotFoundError",
    "ModelRequestBlocked", "MultipleChoice", "Procedure", "ReasonThenAnswer", "ReflectiveRefine", "SchemaError",
    "Step", "Task", "Transform", "configure", "current_cache", "evaluate", "load", "load_task", "make_lm",
    "optimizer_lm", "register_program", "save", "task_from_files",
]
