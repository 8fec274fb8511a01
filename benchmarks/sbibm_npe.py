"""NPE on sbibm's two_moons and SLCP (Lueckmann et al. 2021, https://arxiv.org/abs/2101.04653):
flowforge's estimators as ``flowforge_nn`` sizes them against sbi's own, by C2ST against
sbibm's reference posterior samples (0.5: indistinguishable).

Needs ``sbibm``, which pins an older sbi; install it beside sbi 0.27 without its dependencies
(``pip install --no-deps --target DIR sbibm future autograd``, then ``PYTHONPATH=DIR``).
Single-round NPE with sbi's trainer (early stopping), one seed per estimator, the first
``--observations`` of sbibm's ten observations, ``--samples`` posterior draws each.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
import warnings

import torch


def estimators() -> dict[str, object]:
    from sbi.neural_nets import posterior_nn

    from flowforge.contrib.sbi import flowforge_nn

    return {
        "flowforge nsf": flowforge_nn("nsf"),
        "sbi nsf (nflows)": posterior_nn(model="nsf"),
        "flowforge maf": flowforge_nn("maf"),
        "sbi maf (nflows)": posterior_nn(model="maf"),
    }


def main() -> None:
    import sbibm
    from sbi.inference import NPE
    from sbibm.metrics import c2st

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="two_moons,slcp")
    parser.add_argument("--simulations", type=int, default=10000)
    parser.add_argument("--observations", type=int, default=3)
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    print(f"{args.simulations} simulations, observations 1-{args.observations}\n")
    print("| task | estimator | parameters | C2ST | train s | epochs | s / epoch |")
    print("|---|---|---|---|---|---|---|")
    for name in args.tasks.split(","):
        task = sbibm.get_task(name)
        torch.manual_seed(0)
        theta = task.get_prior()(num_samples=args.simulations)
        x = task.get_simulator()(theta)
        for label, builder in estimators().items():
            torch.manual_seed(0)
            inference = NPE(task.get_prior_dist(), density_estimator=builder)
            inference._show_progress_bars = False
            start = time.perf_counter()
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                net = inference.append_simulations(theta, x).train()
            seconds = time.perf_counter() - start
            epochs = int(inference._summary["epochs_trained"][-1])
            posterior = inference.build_posterior()
            scores = []
            for i in range(1, args.observations + 1):
                torch.manual_seed(100 + i)
                q = posterior.sample(
                    (args.samples,), x=task.get_observation(i), show_progress_bars=False
                )
                ref = task.get_reference_posterior_samples(num_observation=i)[: args.samples]
                scores.append(float(c2st(ref, q)))
            size = sum(p.numel() for p in net.parameters())
            print(
                f"| {name} | {label} | {size:,} | {sum(scores) / len(scores):.3f} "
                f"| {seconds:.0f} | {epochs} | {seconds / epochs:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
