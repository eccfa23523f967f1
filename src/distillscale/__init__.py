"""distillscale: plan and run knowledge distillation of language models with scaling laws."""

__version__ = "0.1.0"
