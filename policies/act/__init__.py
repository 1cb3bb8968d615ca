"""ACT-style transformer head: learned action queries, L1 loss, optional CVAE latent."""
