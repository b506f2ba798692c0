"""transformers checkpoints on the ulmfit core: layer groups, data, LM and classifier training."""
