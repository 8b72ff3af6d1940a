"""Fine-tuning: the Trainer subclass, its callbacks, the run folder, and `train()` as a few named steps."""
