"""Tuning stage: LoRA brand adapters trained on past pushes, and their held-out evaluation."""
