"""The training loop on a tiny model: answer-only labels, loss that falls, exact resume, and
2-process data parallelism equal to one process on the same global batch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from llmos.runtime.tokenizer import TextTokenizer
from llmos.train.config import TrainConfig
from llmos.train.model import load_trainable
from llmos.train.sft import IGNORE_INDEX, build_examples
from llmos.train.trainer import StepLog, Trainer

QA = [
    ("the capital of france", "is paris"),
    ("hello", "world"),
    ("the capital", "of france is paris"),
    ("paris is", "the capital of france"),
]
RECORDS = [
    {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in QA * 4
]


@pytest.fixture(scope="module")
def folder(tiny_chat_folder: Path) -> Path:
    return tiny_chat_folder


def _config(**overrides: object) -> TrainConfig:
    values = dict(base="tiny", data="x", lr=5e-2, batch_size=2, grad_accum=2, checkpoint_every=2, max_steps=6)
    return TrainConfig.build(**{**values, **overrides})


def _trainer(folder: Path, out: Path, config: TrainConfig) -> Trainer:
    tokenizer = TextTokenizer.from_dir(folder)
    examples = build_examples(tokenizer, RECORDS, "chat", 64)
    model = load_trainable(folder, config)
    return Trainer(config, model, examples, examples[:4], out, pad_id=0)


def test_only_answer_tokens_carry_labels(folder: Path) -> None:
    tokenizer = TextTokenizer.from_dir(folder)
    (example,) = build_examples(tokenizer, RECORDS[:1], "chat", 64)
    labelled = [t for t, label in zip(example.input_ids, example.labels) if label != IGNORE_INDEX]
    assert tokenizer.decode(labelled).strip() == "is paris"
    assert example.num_label_tokens == 2 and len(example.input_ids) > 2


def test_lora_training_lowers_the_loss_and_touches_only_the_adapter(folder: Path, tmp_path: Path) -> None:
    # The tiny model's embeddings are so small that its logits cannot move far from uniform with
    # the embeddings frozen (LoRA), so the bar is a clear fall rather than a fit.
    trainer = _trainer(folder, tmp_path, _config(max_steps=20, lr=0.1, checkpoint_every=100))
    frozen = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if not p.requires_grad}
    assert all("lora_" in n for n, p in trainer.model.named_parameters() if p.requires_grad)
    result = trainer.fit()
    assert result.steps == 20
    assert result.eval_loss_after < result.eval_loss_before - 0.3
    assert all(torch.equal(p, frozen[n]) for n, p in trainer.model.named_parameters() if n in frozen)


def test_full_fine_tuning_fits_the_answers(folder: Path, tmp_path: Path) -> None:
    trainer = _trainer(folder, tmp_path, _config(method="full", max_steps=30, lr=1e-2, checkpoint_every=100))
    result = trainer.fit()
    assert result.eval_loss_after < 0.2 * result.eval_loss_before


def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(folder: Path, tmp_path: Path) -> None:
    full = _trainer(folder, tmp_path / "a", _config()).fit()

    interrupted = _trainer(folder, tmp_path / "b", _config())

    def crash(log: StepLog, total: int) -> None:
        if log.step == 3:  # after the step-2 checkpoint, before the step-4 one
            raise KeyboardInterrupt

    interrupted.on_step = crash
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    assert interrupted.latest_checkpoint().name == "step-0000002"
    resumed = _trainer(folder, tmp_path / "b", _config()).fit(resume=True)
    assert resumed.steps == 6
    assert [round(h.loss, 6) for h in resumed.history[2:]] == pytest.approx(
        [round(h.loss, 6) for h in full.history[2:]], rel=1e-4
    )
    assert resumed.train_loss == pytest.approx(full.train_loss, rel=1e-4)


def _ddp_worker(rank: int, folder: Path, out: Path, init_file: str, losses: dict) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        result = _trainer(folder, out, _config(grad_accum=1, checkpoint_every=100)).fit()
        if rank == 0:
            losses["ddp"] = [h.loss for h in result.history]
    finally:
        dist.destroy_process_group()


def test_two_process_ddp_matches_one_process_on_the_same_global_batch(folder: Path, tmp_path: Path) -> None:
    # One process with grad_accum=2 sees the same 4-example global batches as 2 ranks x 2 examples.
    single = _trainer(folder, tmp_path / "single", _config(grad_accum=2, checkpoint_every=100)).fit()
    with mp.Manager() as manager:
        losses = manager.dict()
        mp.spawn(_ddp_worker, args=(folder, tmp_path / "ddp", str(tmp_path / "init"), losses), nprocs=2)
        ddp = list(losses["ddp"])
    assert ddp == pytest.approx([h.loss for h in single.history], rel=1e-4)


def test_every_config_field_is_described_and_documented() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "training.md").read_text()
    for name, field in TrainConfig.model_fields.items():
        assert field.description, f"TrainConfig.{name} has no description"
        assert f"| `{name}` |" in docs, f"docs/training.md does not list {name}"
