"""Diffusion head: DDPM-trained denoiser (1D U-Net or DiT) with DDIM / DPM-Solver++ sampling."""
