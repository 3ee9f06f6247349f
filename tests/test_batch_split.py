"""`benchmarks/batch_split.py` runs end to end on a tiny network (numpy target) and prints what it measures."""
import re
import subprocess
import sys

import numpy as np
import pytest

from cli_helpers import PROJECT, cli_env, load_benchmark

SCRIPT = str(PROJECT / "benchmarks" / "batch_split.py")
VARIANTS = ["(a) one process, batch 64", "one process, batch 32", "(b) 2 workers × 32, exchange",
            "(c) 2 workers × 32, no exchange", "(c) by CPU time (each worker a free core)"]


@pytest.mark.slow   # a benchmark's end-to-end run (seconds to tens of seconds); the fast tier keeps its parts
def test_quick_run_prints_every_variant_and_the_ratios():
    done = subprocess.run([sys.executable, SCRIPT, "--quick", "--target", "numpy"], capture_output=True, text=True,
                          env=cli_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for method in ("finetune", "hlop"):
        rates = {}
        for line in lines:
            for variant in VARIANTS:
                if line.startswith(f"{method} ") and line[len(method):].strip().startswith(variant):
                    rate, ratio = line.split()[-2:]
                    rates[variant] = (float(rate), float(ratio))
        assert list(rates) == VARIANTS, done.stdout
        assert all(rate > 0 and ratio > 0 for rate, ratio in rates.values())
        assert rates[VARIANTS[0]][1] == 1.0
        assert abs(rates[VARIANTS[2]][1] - rates[VARIANTS[2]][0] / rates[VARIANTS[0]][0]) < 0.01
        summary = next(line for line in lines if line.startswith(f"{method}: (b)/(a) = "))
        found = re.fullmatch(rf"{method}: \(b\)/\(a\) = ([\d.]+), \(c\)/\(a\) = ([\d.]+), fixed-cost bound .* "
                             r"= ([\d.]+); ≥ 1\.7×: (reached|not reached); barrier wait per worker \[([\d., ]+)\] s "
                             r"per epoch; workers' weights equal after every \(b\) epoch: (yes|NO)", summary)
        assert found, summary
        assert all(float(found.group(k)) > 0 for k in (1, 2, 3))
        assert len(found.group(5).split(",")) == 2
        # the exchange makes both workers compute the update of the whole batch: their weights stay equal
        assert found.group(6) == "yes"
        load = next(line for line in lines if line.startswith(f"{method}: CPU time / wall time"))
        assert all(float(v) > 0 for v in re.findall(r"\d+\.\d+", load))


def test_bad_workers_exit_2_with_one_line():
    done = subprocess.run([sys.executable, SCRIPT, "--quick", "--target", "numpy", "--workers", "3"],
                          capture_output=True, text=True, env=cli_env(), timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert "--workers 3: expected a divisor of network.batch_size = 64" in done.stderr


def test_worker_shares_cover_every_sample_once_in_batch_order():
    """Worker w presents rows w·B/W … (w+1)·B/W − 1 of every batch: together exactly the samples, and its
    k-th local batch is the k-th batch of one process (what the exchange at batch k relies on)."""
    bench = load_benchmark("batch_split")
    n, batch, workers = 150, 64, 2
    shares = [bench.worker_share(n, batch, workers, rank) for rank in range(workers)]
    assert np.array_equal(np.sort(np.concatenate(shares)), np.arange(n))
    part = batch // workers
    for rank, share in enumerate(shares):
        for local, sample in enumerate(share):
            assert sample // batch == local // part and sample % batch == rank * part + local % part
    assert len(shares[0]) == 64 + 22 and len(shares[1]) == 64   # the last batch's 22 samples all in worker 0
