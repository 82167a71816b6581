"""Training runs: configs, the trainer, checkpoints on disk, distributed set-up."""
