"""Writing stage: prompts, the generator (batched decoding of drafts), multi-LoRA, the adapter registry."""
