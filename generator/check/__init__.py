"""Checking stage: brand guidelines, guardrails, the one builder of message facts, the click-through model."""
