"""Continual-learning metrics computed from an accuracy matrix.

All functions take an accuracy matrix ``R`` of shape ``(N, N)`` where ``R[i, j]`` is the test
accuracy on task ``j`` measured after training task ``i``; the metrics are in the unit of ``R``:

- `average_accuracy` (ACC): ``mean_j R[N-1, j]``;
- `backward_transfer` (BWT): ``mean_{j<N-1} (R[N-1, j] - R[j, j])``, negative when the network forgot;
- `forgetting`: ``mean_{j<N-1} (max_{j<=i<N-1} R[i, j] - R[N-1, j])``;
- `summarize`: the three as ``{"ACC", "BWT", "forgetting"}``;
- `filled_tasks`: how many leading rows of a partly filled ``R`` were measured.

Only the entries a metric uses must be finite. For a run that has not finished, pass the filled
block ``R[:k, :k]`` with ``k = filled_tasks(R)``. The formulas are defined once, in the run-file
package (whose reader summarises stored matrices without importing this layer), and re-exported
here.
"""

from hlopsim.sim.runfile._metrics import (average_accuracy, backward_transfer, filled_tasks, forgetting,
                                          summarize)

__all__ = ["average_accuracy", "backward_transfer", "forgetting", "summarize", "filled_tasks"]
