"""How far a lateral circuit's weight rows are from what Oja's subspace rule settles to (numpy only).

Oja's rule drives the rows ``H`` of a task's subspace neurons to an orthonormal basis of the
principal subspace of that task's activity (docs/design.md). Rows that end a task far from
orthonormal mean the rule had not settled — in practice, a Hebbian rate close to the circuit's
stability bound, where the rows oscillate without blowing up (a blow-up is caught by
`sim.lateral_base.SharedSubspaceWeights.check_stable`). Importable without Brian2 or Numba, so that
`sim.runfile` can judge the rows stored in a run file.
"""
from __future__ import annotations

import numpy as np

# Rows further than this from orthonormal (per row, see `row_deviation`) are reported as unsettled.
# Settled circuits on permuted-digits end far below it, and a hidden-layer circuit that oscillated and then
# lost its task far above it (docs/results.md, "Two guards").
UNSETTLED_ROW_DEVIATION = 0.2


def row_deviation(rows: np.ndarray) -> float:
    """``‖R Rᵀ − I‖_F / √k`` for ``k`` rows ``R`` (0 for none): the deviation from orthonormal per row.

    Dividing by ``√k`` makes circuits of different sizes comparable: ``k`` rows each off by the same
    small amount give the same value.
    """
    rows = np.asarray(rows, dtype=np.float64)
    k = len(rows)
    if k == 0:
        return 0.0
    return float(np.linalg.norm(rows @ rows.T - np.eye(k)) / np.sqrt(k))
