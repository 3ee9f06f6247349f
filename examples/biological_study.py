"""Trial-aligned analysis of a biologically detailed run (examples/biological_study.toml) with neo and elephant.

    hlopsim run examples/biological_study.toml --out bio.h5
    python examples/biological_study.py bio.h5 [--plot bio.png]

For the test trials of the last task after the last stage, it prints each population's firing rate, the
coefficient of variation of the inter-spike intervals within trials (elephant; no interval spans two
trials), the population PSTH, and the recorded membrane potential, conductances and adaptation of the
hidden neurons — including how much adaptation a trial inherits from the trials before it (continuous time).
"""
import argparse

import numpy as np
import quantities as pq
from elephant.statistics import cv, isi, time_histogram

import hlopsim as hs

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("run", nargs="?", default="bio.h5")
parser.add_argument("--plot", metavar="PNG", help="also draw the recorded traces of one trial")
args = parser.parse_args()

with hs.open_run(args.run) as run:
    R = run.accuracy_matrix()
    print(f"{run.method} on {run.protocol}: ACC {run.summary()['ACC']:.1f}, last row {np.round(R[-1], 1)}")
    last = int(run.segments()["stage"].max())
    # One neo Segment per test trial of the last task, times from the trial's start.
    block = hs.to_neo_block(run, phases="test", tasks=[last], per="presentation")
    trials = [s for s in block.segments if s.annotations["stage"] == last]
    print(f"{len(trials)} test trials of task {last} after stage {last}, {run.presentation_s * 1e3:.0f} ms each")
    for population in run.populations:
        trains = [st for trial in trials for st in trial.spiketrains if st.annotations["population"] == population]
        rate = sum(len(st) for st in trains) / (len(trains) * run.presentation_s)
        cvs = [cv(isi(st)) for st in trains if len(st) > 2]
        psth = time_histogram(trains, bin_size=5 * pq.ms, output="rate").rescale(pq.Hz).magnitude.ravel()
        print(f"  {population:9s} rate {rate:6.1f} Hz   median ISI CV {np.median(cvs) if cvs else np.nan:4.2f}   "
              f"PSTH (5 ms bins, Hz) {np.round(psth).astype(int).tolist()}")

    # Recorded states: the first presentations of every test run (examples/biological_study.toml [record]).
    states = {var: run.states("hidden_1", var) for var in run.state_variables().get("hidden_1", [])}
    for var, state in states.items():
        values = state["values"]             # (presentations, neurons, steps), SI units
        print(f"  hidden_1.{var:8s} [{state['unit']}] range {values.min():+.4g} … {values.max():+.4g}, "
              f"at trial start {values[:, :, 0].mean():+.4g} (mean over {len(values)} trials)")
    if "theta_a" in states:
        # A run's first batch starts from rest; later batches inherit the state of the trial before them
        # (network.reset = false): presentations batch_size … of a run show what carries over the silence.
        batch = run.config["network"]["batch_size"]
        seg = run.segments()
        state = states["theta_a"]
        later = state["values"][seg["trial"][state["segment"]] >= batch][:, :, 0]
        if len(later):
            print(f"  adaptation a trial inherits from the one before (after the silence): mean {1e3 * later.mean():.2f} mV,"
                  f" {np.mean(later > 0) * 100:.0f} % of {later.size} recorded neuron-trials start adapted")
    if args.plot and states:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(len(states), 1, sharex=True, figsize=(6, 1.8 * len(states)))
        for ax, (var, state) in zip(np.atleast_1d(axes), states.items()):
            ax.plot(state["times_s"] * 1e3, state["values"][-1].T)
            ax.set_ylabel(f"{var} ({state['unit']})")
        np.atleast_1d(axes)[-1].set_xlabel("time in trial (ms)")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
        print(f"traces of one trial -> {args.plot}")
