"""Each built-in neuron model on a 3-task split of the digits (2 classes per task, one head per task),
fine-tuning against HLOP, over several seeds: ACC and BWT as mean ± sd.

    python benchmarks/neuron_models.py [--seeds 5] [--hidden 128] [--target numpy]

The same protocol the fast test `tests/test_neuron_models_learn.py` runs at a smaller size; results go
to docs/results.md.
"""
import argparse
import time

import numpy as np

import hlopsim as hs

MODELS = {"lif": lambda: hs.lif(tau_m="100 ms", v_threshold="20 mV"), "adaptive_lif": hs.adaptive_lif,
          "izhikevich": hs.izhikevich}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--target", default="numpy", choices=["numpy", "cython"])
    args = parser.parse_args()
    tasks = hs.split_tasks(hs.load_digits(), classes=[(0, 1), (2, 3), (4, 5)], heads="per-task")
    print(f"split digits (0,1) (2,3) (4,5), per-task heads, hidden [{args.hidden}], {args.epochs} epochs, "
          f"seeds 0-{args.seeds - 1}, {args.target} target")
    print(f"{'model':13s} {'method':9s} {'ACC':>13s} {'BWT':>13s} {'min last row':>13s} {'s/run':>6s}")
    for model, make in MODELS.items():
        for method in ("finetune", "hlop"):
            acc, bwt, low, seconds = [], [], [], []
            for seed in range(args.seeds):
                chosen = hs.HLOP(first_task=[16, 32], per_task=[10, 20]) if method == "hlop" else "finetune"
                tick = time.perf_counter()
                result = hs.run_tasks(tasks, hs.NetworkSpec(hidden=[args.hidden], neuron=make()), chosen,
                                      epochs=args.epochs, seed=seed, target=args.target)
                seconds.append(time.perf_counter() - tick)
                acc.append(result.summary["ACC"])
                bwt.append(result.summary["BWT"])
                low.append(float(np.min(result.accuracy[-1])))
            print(f"{model:13s} {method:9s} {np.mean(acc):6.1f} ± {np.std(acc, ddof=1):4.1f} "
                  f"{np.mean(bwt):6.1f} ± {np.std(bwt, ddof=1):4.1f} {np.min(low):13.1f} {np.mean(seconds):6.1f}")


if __name__ == "__main__":
    main()
