"""DSPy modules honed adds on top of `dspy.Predict` (behavior-following predictors and their data model)."""
