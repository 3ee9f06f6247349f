"""Read a run file and analyse its spikes with neo and elephant (needs pip install 'hlopsim[export]').

    python examples/analyse_with_elephant.py RUN.h5

Prints the accuracy matrix, then, for the test presentations of the last stage, each population's
mean firing rate and the coefficient of variation of the inter-spike intervals (elephant).
"""
import sys

import numpy as np
import quantities as pq
from elephant.statistics import cv, isi, mean_firing_rate

import hlopsim as hs

path = sys.argv[1] if len(sys.argv) > 1 else "alif.h5"
with hs.open_run(path) as run:
    print(f"{run.method} on {run.protocol}: R =\n{run.accuracy_matrix().round(1)}")
    last_stage = int(run.segments()["stage"].max())
    block = hs.to_neo_block(run, phases="test")
    segment = [s for s in block.segments if s.annotations["stage"] == last_stage][0]
    for population in run.populations:
        trains = [st for st in segment.spiketrains if st.annotations["population"] == population]
        rates = [float(mean_firing_rate(st).rescale(pq.Hz)) for st in trains]
        cvs = [cv(isi(st)) for st in trains if len(st) > 2]
        print(f"{population:9s} {len(trains):4d} neurons  mean rate {np.mean(rates):6.1f} Hz  "
              f"median ISI CV {np.nanmedian(cvs) if cvs else float('nan'):.2f}")
