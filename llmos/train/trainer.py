"""The training loop: token-weighted loss on the answers, AdamW with warmup and linear decay,
checkpoints that resume exactly, and data parallelism under torchrun (gloo on CPU, nccl on GPU).

The data order is a pure function of the step number (one seeded permutation per epoch), so a
checkpoint needs only the step, the trainable weights, the optimizer, the scheduler and the RNG
states to continue exactly where it stopped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from llmos.train.config import TrainConfig
from llmos.train.sft import IGNORE_INDEX, Example

logger = logging.getLogger(__name__)
KEEP_CHECKPOINTS = 2


@dataclass
class StepLog:
    step: int
    loss: float
    lr: float
    seconds: float
    tokens: int = 0  # input tokens of the step's global batch (prompt and answer): tokens/s


@dataclass
class TrainResult:
    steps: int
    train_loss: float
    eval_loss_before: float | None
    eval_loss_after: float | None
    seconds: float
    history: list[StepLog] = field(default_factory=list)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        model: nn.Module,
        train: list[Example],
        evaluation: list[Example],
        out_dir: Path,
        pad_id: int,
        on_step: Callable[[StepLog, int], None] | None = None,
    ):
        self.config, self.model, self.train_set, self.eval_set = config, model, train, evaluation
        self.out_dir, self.pad_id, self.on_step = Path(out_dir), pad_id, on_step
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.device = next(model.parameters()).device
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=config.weight_decay)
        self.global_batch = config.batch_size * config.grad_accum * self.world
        self.steps_per_epoch = max(1, len(train) // self.global_batch)  # full global batches only
        # As in transformers: max_steps, when given, wins over epochs.
        self.total_steps = config.max_steps or math.ceil(config.epochs * self.steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.forward: nn.Module = model
        if self.world > 1:
            self.forward = nn.parallel.DistributedDataParallel(model)
        self.step = 0
        self.history: list[StepLog] = []

    def _lr_factor(self, step: int) -> float:
        warmup = self.config.warmup_steps
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (self.total_steps - step) / max(1, self.total_steps - warmup))

    # --- data ---------------------------------------------------------------------------------
    def batch_indices(self, step: int) -> list[int]:
        """The examples of global batch ``step`` (the same on every rank)."""
        epoch, offset = divmod(step, self.steps_per_epoch)
        generator = torch.Generator().manual_seed(self.config.seed + epoch)
        order = torch.randperm(len(self.train_set), generator=generator).tolist()
        return order[offset * self.global_batch : (offset + 1) * self.global_batch]

    def _collate(self, examples: list[Example]) -> tuple[Tensor, Tensor, Tensor]:
        width = max(len(e.input_ids) for e in examples)
        ids = torch.full((len(examples), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(examples), width), dtype=torch.long)
        for row, e in enumerate(examples):
            n = len(e.input_ids)
            ids[row, :n], labels[row, :n], mask[row, :n] = (
                torch.tensor(e.input_ids),
                torch.tensor(e.labels),
                1,
            )
        return ids.to(self.device), labels.to(self.device), mask.to(self.device)

    def _loss_sum(self, module: nn.Module, examples: list[Example]) -> Tensor:
        """Summed cross-entropy over the answer tokens of ``examples``."""
        ids, labels, mask = self._collate(examples)
        logits = module(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        targets = labels[:, 1:]
        return nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            targets.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )

    def _micro_batches(self, indices: list[int]) -> Iterator[list[Example]]:
        mine = indices[self.rank :: self.world]
        for i in range(0, len(mine), self.config.batch_size):
            yield [self.train_set[j] for j in mine[i : i + self.config.batch_size]]

    # --- loop ---------------------------------------------------------------------------------
    def train_step(self) -> StepLog:
        start = time.perf_counter()
        indices = self.batch_indices(self.step)
        num_tokens = sum(self.train_set[i].num_label_tokens for i in indices)
        num_inputs = sum(len(self.train_set[i].input_ids) for i in indices)
        self.model.train()
        total = torch.zeros((), device=self.device)
        for examples in self._micro_batches(indices):
            loss_sum = self._loss_sum(self.forward, examples)
            # DDP averages gradients over ranks; scaling by the world size makes them sums, so
            # the update equals one process stepping over the whole global batch.
            (loss_sum * self.world / num_tokens).backward()
            total += loss_sum.detach()
        if self.world > 1:
            dist.all_reduce(total)
        torch.nn.utils.clip_grad_norm_(self.params, self.config.max_grad_norm)
        lr = float(self.scheduler.get_last_lr()[0])
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        log = StepLog(self.step, float(total) / num_tokens, lr, time.perf_counter() - start, num_inputs)
        self.history.append(log)
        return log

    @torch.no_grad()
    def evaluate(self) -> float | None:
        """Token-weighted mean loss on the held-out examples (None without any)."""
        if not self.eval_set:
            return None
        self.model.eval()
        total, tokens = 0.0, 0
        for i in range(0, len(self.eval_set), self.config.batch_size):
            chunk = self.eval_set[i : i + self.config.batch_size]
            total += float(self._loss_sum(self.model, chunk))
            tokens += sum(e.num_label_tokens for e in chunk)
        return total / tokens

    def fit(self, resume: bool = False) -> TrainResult:
        """Train to ``total_steps`` (from the last checkpoint when ``resume``), checkpointing on the way."""
        start = time.perf_counter()
        if resume:
            self.load_checkpoint()
        eval_before = self.evaluate() if self.step == 0 else None
        while self.step < self.total_steps:
            log = self.train_step()
            if self.on_step is not None and self.rank == 0:
                self.on_step(log, self.total_steps)
            if self.step % self.config.checkpoint_every == 0 or self.step == self.total_steps:
                self.save_checkpoint()
        train_loss = self.history[-1].loss if self.history else float("nan")
        return TrainResult(
            self.step, train_loss, eval_before, self.evaluate(), time.perf_counter() - start, self.history
        )

    # --- checkpoints --------------------------------------------------------------------------
    @property
    def checkpoint_root(self) -> Path:
        return self.out_dir / "checkpoints"

    def latest_checkpoint(self) -> Path | None:
        found = sorted(self.checkpoint_root.glob("step-*")) if self.checkpoint_root.exists() else []
        return found[-1] if found else None

    def save_checkpoint(self) -> None:
        """Write step-N atomically (temp folder, fsync, rename); keep the last few."""
        if self.rank == 0:
            final = self.checkpoint_root / f"step-{self.step:07d}"
            tmp = self.checkpoint_root / f".tmp-step-{self.step:07d}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            trainable = {
                n: p.detach().cpu().contiguous() for n, p in self.model.named_parameters() if p.requires_grad
            }
            save_file(trainable, str(tmp / "trainable.safetensors"))
            torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save({"torch": torch.get_rng_state(), "python": random.getstate()}, tmp / "rng.pt")
            state = {
                "step": self.step,
                "scheduler": self.scheduler.state_dict(),
                "history": [asdict(h) for h in self.history],
            }
            (tmp / "trainer.json").write_text(json.dumps(state))
            for f in tmp.iterdir():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            _fsync_dir(tmp)
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            _fsync_dir(self.checkpoint_root)
            for old in sorted(self.checkpoint_root.glob("step-*"))[:-KEEP_CHECKPOINTS]:
                shutil.rmtree(old, ignore_errors=True)
        if self.world > 1:
            dist.barrier()

    def load_checkpoint(self) -> None:
        path = self.latest_checkpoint()
        if path is None:
            return
        weights = load_file(str(path / "trainable.safetensors"))
        by_name = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, tensor in weights.items():
                by_name[name].copy_(tensor)
        self.optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
        rng: dict[str, Any] = torch.load(path / "rng.pt", weights_only=False)  # our own file, written above
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        state = json.loads((path / "trainer.json").read_text())
        self.step = state["step"]
        self.scheduler.load_state_dict(state["scheduler"])
        self.history = [StepLog(**h) for h in state["history"]]
        logger.info("resumed from %s (step %d of %d)", path.name, self.step, self.total_steps)
