"""The plain-PyTorch training loop (no Ray): data preparation, fit, evaluation, checkpoints."""
