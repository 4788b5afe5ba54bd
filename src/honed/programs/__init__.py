"""Ready programs and the tasks they run on."""

from honed.programs.classify import Classify
from honed.programs.context_fit import (
    CONTEXT_RESERVE,
    ContextWindow,
    check_examples_fit,
    check_task_fits,
    fit_problem,
    refuse_unfit_inputs,
)
from honed.programs.metrics import ExactMatch, normalize
from honed.programs.output_types import OutputType, infer_output_type
from honed.programs.pipeline import MultipleChoice, ReasonThenAnswer
from honed.programs.tasks import Task, bundled_task_names, load_bbh_task, load_task, task_from_files
from honed.programs.transform import Transform

__all__ = ["CONTEXT_RESERVE", "Classify", "ContextWindow", "ExactMatch", "MultipleChoice", "OutputType",
           "ReasonThenAnswer", "Task", "Transform", "bundled_task_names", "check_examples_fit", "check_task_fits",
           "fit_problem", "infer_output_type", "load_bbh_task", "load_task", "normalize", "refuse_unfit_inputs",
           "task_from_files"]
