"""Teleprompters honed adds, and the machinery they share (budget, run ledger, candidates, attribution)."""

from honed.optimizers.behavior import BehaviorOptimizer
from honed.optimizers.budget import BudgetExhausted, CallBudget
from honed.optimizers.ledger import RunDirError, RunLedger, final_record, read_ledger, read_settings
from honed.optimizers.reflective import ReflectiveRefine

__all__ = ["BehaviorOptimizer", "BudgetExhausted", "CallBudget", "ReflectiveRefine", "RunDirError", "RunLedger",
           "final_record", "read_ledger", "read_settings"]
