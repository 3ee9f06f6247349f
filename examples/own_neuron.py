"""Your own neuron model: an adaptive LIF written as Brian2 equations, trained with HLOP on split digits.

    python examples/own_neuron.py [--tiny]

The supervised rule measures this model's own f–I curve when the network is built and assigns credit
through it, so any model that can carry a rate code learns (one that cannot is refused with a reason).
"""
import sys

import hlopsim as hs

tiny = "--tiny" in sys.argv  # a quick check (the tests run this)

neuron = hs.NeuronModel(
    "alif",
    equations="""dv/dt = -v / tau_m : volt (unless refractory)
                 da/dt = -a / tau_a : volt""",
    threshold="v > v_th + a", reset="v -= v_th; a += d_a", refractory="2 ms",
    parameters={"tau_m": "100 ms", "tau_a": "100 ms", "v_th": "20 mV", "d_a": "0.5 mV"},
    spike_cost="20 mV", initial={"v": "0 mV", "a": "0 mV"})
digits = hs.load_digits()
tasks = hs.split_tasks(digits, classes=[(0, 1), (2, 3), (4, 5)], heads="per-task")
net = hs.NetworkSpec(hidden=[16 if tiny else 128], neuron=neuron)
result = hs.run_tasks(tasks, net, hs.HLOP(first_task=[8, 8], per_task=[4, 4]), epochs=1 if tiny else 3,
                      seed=0, out="alif.h5", overwrite=True, target="numpy" if tiny else None)
print(result.accuracy.round(1))
print(result.summary)
