"""Fine-tuning and evaluation: metrics, label-efficient splits, probes, fine-tuning loops."""
