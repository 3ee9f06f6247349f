"""Any neuron model learns through its own measured transfer function (or is refused with a reason):
the built-in LIF, an adaptive LIF and an Izhikevich neuron each learn a 3-task split of the digits
(2 classes per task, one head per task) with HLOP through the one experiment loop."""
import numpy as np
import pytest

import hlopsim as hs

MODELS = {"lif": lambda: hs.lif(tau_m="100 ms", v_threshold="20 mV"), "adaptive_lif": hs.adaptive_lif,
          "izhikevich": hs.izhikevich}


@pytest.fixture(scope="module")
def split_tasks():
    return hs.split_tasks(hs.load_digits(), classes=[(0, 1), (2, 3), (4, 5)], heads="per-task")


@pytest.mark.parametrize("model", sorted(MODELS))
def test_each_model_learns_split_digits_with_hlop(model, split_tasks):
    net = hs.NetworkSpec(hidden=[32], neuron=MODELS[model](), batch_size=32)
    method = hs.HLOP(first_task=[8, 8], per_task=[4, 4], consolidation_epochs=2)
    result = hs.run_tasks(split_tasks, net, method, epochs=2, seed=0, target="numpy")
    last_row = result.accuracy[-1]
    assert np.mean(last_row) >= 90.0, (model, result.accuracy)


def test_a_model_that_never_fires_is_refused_before_training(split_tasks):
    silent = hs.NeuronModel("silent", equations="dv/dt = -v / (10*ms) : volt", threshold="v > 1*volt",
                            reset="v = 0*volt", parameters={}, spike_cost="20 mV")
    with pytest.raises(ValueError, match="silent") as err:
        hs.run_tasks(split_tasks, hs.NetworkSpec(hidden=[8], neuron=silent, batch_size=16), "finetune",
                     epochs=1, target="numpy")
    assert "\n" not in str(err.value)


def test_a_model_brian2_cannot_integrate_is_one_line(split_tasks):
    bad = hs.NeuronModel("exif", equations="dv/dt = (-v + d * exp((v - vt) / d)) / tau : volt",
                         threshold="v > 30*mV", reset="v = 0*mV", method="exact",
                         parameters={"d": "2 mV", "vt": "15 mV", "tau": "20 ms"}, spike_cost="10 mV")
    with pytest.raises(ValueError, match="'exif': Brian2 cannot simulate it") as err:
        hs.run_tasks(split_tasks, hs.NetworkSpec(hidden=[8], neuron=bad, batch_size=16), "finetune", epochs=1,
                     target="numpy")
    assert "\n" not in str(err.value)
    works = hs.NeuronModel("exif", equations="dv/dt = (-v + d * exp((v - vt) / d)) / tau : volt",
                           threshold="v > 30*mV", reset="v = 0*mV",
                           parameters={"d": "2 mV", "vt": "15 mV", "tau": "20 ms"}, spike_cost="10 mV")
    assert works.method == ("exact", "euler", "heun")   # Brian2 picks euler for it
