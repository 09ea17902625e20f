"""The process a training job runs in: ``python -m llmos.train.worker JOB [--resume]``.

Under torchrun every rank runs this; the process group is set up from the environment (gloo on
CPU, nccl on GPU) and only rank 0 writes progress and the result to the store.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import traceback

import torch.distributed as dist

from llmos.config import Settings
from llmos.store.faults import CRASH_POINT_ENV
from llmos.train.config import TrainConfig
from llmos.train.jobs import JobStore
from llmos.train.run import run_training
from llmos.train.trainer import StepLog


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one llmos training job.")
    parser.add_argument("job")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch

        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    settings = Settings.from_env()
    jobs = JobStore(settings)
    job = jobs.get(args.job)
    config = TrainConfig.build(**job.config)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    def on_step(log: StepLog, total: int) -> None:
        jobs.record_step(job.id, log.step, total, log.loss, log.lr, log.seconds, log.tokens)
        print(f"step {log.step}/{total} loss {log.loss:.4f} lr {log.lr:.2e} ({log.seconds:.2f}s)", flush=True)
        if os.environ.get(CRASH_POINT_ENV) == f"train_after_step_{log.step}":  # tests: die like kill -9
            os.kill(os.getpid(), signal.SIGKILL)

    try:
        if config.launcher == "ray":
            from llmos.train.ray_launcher import run_with_ray

            out_dir = jobs.job_dir(job.id)
            summary = run_with_ray(
                config,
                settings,
                out_dir,
                num_workers=job.nproc,
                address=config.ray_address,
                resume=args.resume,
                job_id=job.id,
            )
        else:
            summary = run_training(
                config, settings, jobs.job_dir(job.id), resume=args.resume, on_step=on_step
            )
    except SystemExit:
        raise
    except BaseException as exc:
        if rank == 0:
            jobs.update(job.id, status="failed", error=f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        jobs.update(job.id, status="succeeded", result=summary)
        print(f"done: {summary.get('version', summary.get('folder'))}", flush=True)
    jobs.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
