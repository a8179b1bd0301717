"""Throughput of rs.evaluate in 1 vs 2 processes (torchrun, gloo, one thread each).

Usage::

    .venv/bin/python benchmarks/evaluate_distributed.py [--samples 128] [--batch-size 16]

The parent trains the demo network for two epochs on the digits, then launches
``torchrun --standalone --nproc_per_node=P`` with ``OMP_NUM_THREADS=1`` for P = 1 and 2.
Each worker times ``rs.evaluate`` between two barriers (startup excluded) on the first
``--samples`` test digits (adaptive protocol: FGSM, PGD-20, PGD-20/triangle(1); eps 8/255)
and rank 0 prints samples per second. The two lines are printed side by side with the
speed-up. The goal is at least 1.7x on two free cores; other load on the machine lowers it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import robust_spikes as rs
from robust_spikes.app.demo import build_net


def worker(weights: str, samples: int, batch_size: int) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo")
    model = rs.SpikingClassifier(build_net(), 4)
    model.net.load_state_dict(torch.load(weights, weights_only=True))
    test = rs.data.digits("test")
    x, y = test.images[:samples], test.labels[:samples]
    dist.barrier()
    start = time.perf_counter()
    rs.evaluate(
        model,
        (x, y),
        eps=[8 / 255],
        attacks=["FGSM", "PGD-20", "PGD-20/triangle(1)"],
        convergence_steps=None,
        sanity_eps=0,
        batch_size=batch_size,
        progress=False,
    )
    dist.barrier()
    seconds = time.perf_counter() - start
    if dist.get_rank() == 0:
        print(f"RESULT {dist.get_world_size()} {seconds:.3f} {samples / seconds:.2f}", flush=True)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--worker", metavar="WEIGHTS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.samples, args.batch_size)
        return
    torch.manual_seed(0)
    model = rs.SpikingClassifier(build_net(), 4)
    rs.training.fit(
        model,
        rs.data.digits("train"),
        epochs=2,
        progress=False,
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
    )
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "net.pt")
        torch.save(model.net.state_dict(), weights)
        for procs in (1, 2):
            done = subprocess.run(
                [
                    torchrun,
                    "--standalone",
                    f"--nproc_per_node={procs}",
                    __file__,
                    "--worker",
                    weights,
                    "--samples",
                    str(args.samples),
                    "--batch-size",
                    str(args.batch_size),
                ],
                env=dict(os.environ, OMP_NUM_THREADS="1"),
                capture_output=True,
                text=True,
                check=True,
            )
            line = next(ln for ln in done.stdout.splitlines() if ln.startswith("RESULT"))
            _, _, seconds, rate = line.split()
            results[procs] = (float(seconds), float(rate))
    print(
        f"rs.evaluate on {args.samples} digits, chunks of {args.batch_size}, 1 thread per process"
    )
    print("| processes | seconds | samples/s | speed-up |")
    print("|---:|---:|---:|---:|")
    for procs, (seconds, rate) in results.items():
        print(f"| {procs} | {seconds:.2f} | {rate:.2f} | {rate / results[1][1]:.2f}x |")


if __name__ == "__main__":
    main()
