"""Typed signatures: task helpers built on `dspy.Signature`.

The optimizers' own meta-signatures (reflect on errors, draft behavior steps, ...) live beside
these as the optimizers arrive; every signature here has typed outputs, so it parses on small models.
"""

from honed.signatures.tasks import (
    REASONING_MAX_CHARS,
    bounded_text,
    classification_signature,
    output_annotation,
    reasoning_signature,
    transformation_signature,
)

__all__ = ["REASONING_MAX_CHARS", "bounded_text", "classification_signature", "output_annotation",
           "reasoning_signature", "transformation_signature"]
