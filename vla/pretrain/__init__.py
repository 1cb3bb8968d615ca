"""Contrastive pretraining of the embedded default encoder (a small SigLIP on simulator scenes)."""
