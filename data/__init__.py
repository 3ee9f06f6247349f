"""Data sets, task sequences and spike encoders for hlopsim (plain numpy)."""

from hlopsim.data._validate import DataError
from hlopsim.data.datasets import load_dataset
from hlopsim.data.digits import Dataset, load_digits
from hlopsim.data.encoders import (SpikeTrains, latency_encode, poisson_encode, random_phase_encode,
                                   refractory_poisson_encode, regular_encode)
from hlopsim.data.files import load_idx, load_npz, read_idx
from hlopsim.data.mnist5k import load_mnist_5k
from hlopsim.data.synthetic import low_rank_rates, prototype_mixture_rates, top_subspace
from hlopsim.data.tasks import Task, apply_permutation, make_task, permuted_tasks, split_tasks

__all__ = [
    "DataError",
    "Dataset",
    "load_digits",
    "load_mnist_5k",
    "load_idx",
    "load_npz",
    "read_idx",
    "load_dataset",
    "Task",
    "make_task",
    "permuted_tasks",
    "split_tasks",
    "apply_permutation",
    "SpikeTrains",
    "poisson_encode",
    "regular_encode",
    "random_phase_encode",
    "refractory_poisson_encode",
    "latency_encode",
    "low_rank_rates",
    "prototype_mixture_rates",
    "top_subspace",
]
