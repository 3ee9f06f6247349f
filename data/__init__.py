"""Data sets, task sequences and spike encoders for hlopsim (plain numpy)."""

from data.digits import Dataset, load_digits
from data.encoders import SpikeTrains, poisson_encode, regular_encode
from data.synthetic import low_rank_rates, prototype_mixture_rates, top_subspace
from data.tasks import Task, apply_permutation, permuted_tasks

__all__ = [
    "Dataset",
    "load_digits",
    "Task",
    "permuted_tasks",
    "apply_permutation",
    "SpikeTrains",
    "poisson_encode",
    "regular_encode",
    "low_rank_rates",
    "prototype_mixture_rates",
    "top_subspace",
]
