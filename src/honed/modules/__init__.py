"""DSPy modules honed adds: `Behave`, a predictor that follows a step-by-step procedure and reports
what it did at each step, and the `Procedure`/`Step` data model."""

from honed.modules.behave import Behave, behavior_signature
from honed.modules.procedure import Procedure, Step

__all__ = ["Behave", "Procedure", "Step", "behavior_signature"]
