"""Core: settings, errors, strict input, data contracts and the shop, payloads, the model registry."""
