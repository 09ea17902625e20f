"""Fine-tuning: SFT examples with answer-only loss, a resumable trainer (LoRA via PEFT or full),
data parallelism under torchrun, and results registered as new model versions."""
