"""Checking a run: causal validation of its circuit's edges, and its report with figures.

:mod:`~atlas.check.validation` intervenes on the top edges of a circuit (signal removed or
boosted, against a random control) and stores the effects as ``Validation`` nodes;
:mod:`~atlas.check.report` draws the paper's figures for a run (:mod:`~atlas.check.figures`).
"""

from atlas.check.report import write_report
from atlas.check.validation import ValidationConfig, stored_validations, validate_circuit

__all__ = ["ValidationConfig", "stored_validations", "validate_circuit", "write_report"]
