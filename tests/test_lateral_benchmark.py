"""`benchmarks/lateral.py` runs end to end and measures what it says (numpy target, tiny sizes)."""
import re
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from brian2 import EventMonitor, SpikeMonitor, Synapses

from cli_helpers import PROJECT, cli_env, load_benchmark

TINY = dict(active=8, silent=8, neurons=4, copies=2, rate=200.0, rate_scale=200.0, eta=1.0, seconds=0.2)


@pytest.mark.slow   # a benchmark's quick run (as the others)
def test_benchmark_prints_its_table_with_both_targets():
    args = [f"--{key.replace('_', '-')}={value}" for key, value in TINY.items()]
    done = subprocess.run([sys.executable, str(PROJECT / "benchmarks" / "lateral.py"), "--target", "numpy",
                           "--repeats", "1", *args], capture_output=True, text=True, env=cli_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0] if not line.startswith("2×") else " ".join(line.split()[:2]): line.split()
            for line in done.stdout.splitlines() if re.match(r"^(base|2× rate|2× silent|reference) ", line)}
    assert set(rows) == {"base", "2× rate", "2× silent", "reference"}
    spikes = {name: (int(row[-4]), int(row[-3])) for name, row in rows.items()}  # (input, subspace)
    assert spikes["2× silent"] == spikes["base"] and spikes["reference"][0] == spikes["base"][0]
    assert 1.6 < spikes["2× rate"][0] / spikes["base"][0] < 2.4
    assert spikes["base"][1] > 0
    assert int(rows["2× silent"][-7]) == 2 * int(rows["base"][-7]) - TINY["active"]  # inputs: 8 + 16 vs 8 + 8
    for measure in ("CPU time(2× input rate) / time(base)", "CPU time(2× silent inputs) / time(base)"):
        line = next(line for line in done.stdout.splitlines() if line.startswith(measure))
        assert line.rstrip().endswith(("PASS", "MISS"))


def test_counts_and_sizes_are_what_the_events_are_computed_from():
    """Relay spikes computed from the input arrays equal a monitor's count; the reference has the same
    neurons and synapse counts as the circuit."""
    bench = load_benchmark("lateral")
    args = SimpleNamespace(**TINY)
    base = bench.circuit_variant("base", args, args.silent, args.rate)
    relay = base.circuit.x
    monitor = SpikeMonitor(relay, record=False, name="test_relay_count")
    subspace = [EventMonitor(base.circuit.y, event, name=f"test_{event}") for event in ("on_spike", "off_spike")]
    base.net.add(monitor, *subspace)
    base.run()
    assert base.spikes[1] == monitor.num_spikes > 0
    # learning spikes are exactly the subspace spikes inside each presentation's plasticity window
    steps = np.concatenate([np.rint(np.asarray(m.t_[:]) * 1000 / bench.DT_MS).astype(int) for m in subspace])
    in_window = (steps % round(bench.PRESENTATION_MS / bench.DT_MS)) >= round((bench.PRESENTATION_MS - bench.WINDOW_MS) / bench.DT_MS)
    assert base.spikes[2] == len(steps) > 0
    assert base.spikes[3] == int(np.sum(in_window)) > 0 and base.spikes[3] < base.spikes[2]
    assert base.events == base.spikes[0] + 4 * base.spikes[1] + 2 * 16 * base.spikes[2] + 16 * base.spikes[3]

    reference = bench.reference_variant(args)
    reference.run()
    n, k, c = args.active + args.silent, args.neurons, args.copies
    # The circuit's reciprocal synapses carry both directions; the reference has one object per direction.
    sizes = {net.name: sorted(len(obj) for obj in net.objects if isinstance(obj, Synapses))
             for net in (base.net, reference.net)}
    assert sizes == {base.net.name: [c * n, c * k * n], reference.net.name: [c * n, c * k * n, c * k * n]}
    groups = {obj.name: obj.N for obj in reference.net.objects if hasattr(obj, "N") and not isinstance(obj, Synapses)}
    assert groups["ref_relay"] == relay.N == c * n and groups["ref_neurons"] == base.circuit.y.N == c * k
    assert reference.spikes[0] == base.spikes[0]
    assert reference.events == reference.spikes[0] + k * reference.spikes[1] + n * reference.spikes[2]


def test_silent_inputs_with_zero_weights_change_nothing_and_are_left_out_of_the_merges():
    """The circuit with 8 silent inputs (zero weights) learns bit for bit what the circuit without them
    learns from the same spikes; the silent inputs' weights stay exactly zero in every copy, and the
    merges leave them out (the live columns are the active inputs)."""
    bench = load_benchmark("lateral")
    args = SimpleNamespace(**TINY)
    with_silent = bench.circuit_variant("base", args, args.silent, args.rate)
    without = bench.circuit_variant("no silent", args, 0, args.rate)
    for variant in with_silent, without:
        variant.run()
    a, b = with_silent.circuit, without.circuit
    assert not np.array_equal(b.H, bench.input_rates(args)[1])  # it learned
    assert np.array_equal(a.H[:, : args.active], b.H)
    assert not a.H[:, args.active:].any()
    assert a.copies_agree()
    assert a._live_columns() == slice(0, args.active)
