"""Scale-out on Ray: the same ``run_training`` inside Ray Train's ``TorchTrainer`` workers.

Ray Train starts the workers on the cluster at ``address`` (or a local Ray when none is given),
sets up ``torch.distributed`` for them (gloo on CPU, nccl on GPU), and every worker runs the
ordinary training function: the trainer sees an initialized process group and trains data
parallel exactly as under torchrun. Rank 0 records progress in the job store and registers the
result, so the workers need the same ``LLMOS_HOME`` (a shared filesystem on a real cluster).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from llmos.config import Settings
from llmos.errors import InvalidRequest
from llmos.train.config import TrainConfig


def _worker_loop(spec: dict[str, Any]) -> None:
    """What each Ray worker runs (module-level so Ray can ship it by reference)."""
    import ray.train

    from llmos.train.run import run_training

    settings = Settings.from_env(home=Path(spec["home"]))
    on_step = None
    if spec.get("job"):
        from llmos.train.jobs import JobStore

        jobs = JobStore(settings)
        job_id = spec["job"]

        def on_step(log: Any, total: int) -> None:
            jobs.record_step(job_id, log.step, total, log.loss, log.lr, log.seconds, log.tokens)

    out_dir = Path(spec["out_dir"])
    summary = run_training(
        TrainConfig.build(**spec["config"]), settings, out_dir, resume=spec["resume"], on_step=on_step
    )
    if ray.train.get_context().get_world_rank() == 0:  # the driver reads it back (shared filesystem)
        (out_dir / "summary.json").write_text(json.dumps(summary, default=str))


def run_with_ray(
    config: TrainConfig,
    settings: Settings,
    out_dir: Path,
    *,
    num_workers: int = 2,
    address: str | None = None,
    resume: bool = False,
    job_id: str | None = None,
) -> dict[str, Any]:
    """Train with ``num_workers`` Ray Train workers; returns rank 0's summary (as ``run_training``)."""
    try:
        import ray
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
    except ImportError as exc:
        raise InvalidRequest(
            "--launcher ray needs Ray Train: pip install 'ray[train]'.", param="launcher"
        ) from exc
    import torch

    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:  # a local Ray: logical CPUs for the workers even on a small machine
            ray.init(
                num_cpus=max(num_workers + 1, os.cpu_count() or 1),
                include_dashboard=False,
                log_to_driver=False,
            )
    spec = {
        "config": config.model_dump(),
        "home": str(settings.home),
        "out_dir": str(out_dir),
        "resume": resume,
        "job": job_id,
    }
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config=spec,
        scaling_config=ScalingConfig(
            num_workers=num_workers, use_gpu=torch.cuda.is_available(), resources_per_worker={"CPU": 1}
        ),
        run_config=RunConfig(name=f"llmos-{out_dir.name}", storage_path=str((out_dir / "ray").resolve())),
    )
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    return json.loads((out_dir / "summary.json").read_text())
