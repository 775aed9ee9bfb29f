"""Training throughput per network: samples/s in steady state, data loading included.

Run:  python tests/benchmarks/training.py results/dataset/dataset.h5 [--preset tiny] [--threads 2]
Times ``--steps`` optimizer steps after ``--warmup`` on the real dataset with the preset's batch sizes.
"""

from __future__ import annotations

import argparse
import time

import torch
from img2spec.config import network_hyperparameters
from img2spec.networks import NETWORK_NAMES
from img2spec.train import training_parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="autocast to bfloat16 (GPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    networks = network_hyperparameters({"preset": args.preset})
    print(f"device {args.device}, preset {args.preset}, threads {args.threads}, bf16 {args.bf16}")
    print(f"{'network':<16}{'batch':>6}{'step [s]':>10}{'load [s]':>10}{'samples/s':>11}")
    for network in NETWORK_NAMES:
        hp = networks[network]
        data, task = training_parts(args.dataset, network, hp)
        task = task.to(args.device)
        optimizer = task.configure_optimizers()["optimizer"]
        batches = iter(data.train_dataloader())
        load_time = step_time = 0.0
        for i in range(args.warmup + args.steps):
            start = time.perf_counter()
            batch = {k: v.to(args.device) for k, v in next(batches).items()}
            loaded = time.perf_counter()
            with torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.bf16):
                loss = task.training_step(batch, i)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if args.device == "cuda":
                torch.cuda.synchronize()
            if i >= args.warmup:
                load_time += loaded - start
                step_time += time.perf_counter() - loaded
        per_step = (load_time + step_time) / args.steps
        print(
            f"{network:<16}{hp.batch_size:>6}{step_time / args.steps:>10.3f}{load_time / args.steps:>10.3f}"
            f"{hp.batch_size / per_step:>11.1f}"
        )


if __name__ == "__main__":
    main()
