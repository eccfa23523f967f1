"""Training: losses, objectives, the optimizer and schedule, run directories, and the supervised
recipe `train(config)`. Import submodules directly (`distillscale.training.recipe`); this package
imports nothing so that the CLI starts fast."""
