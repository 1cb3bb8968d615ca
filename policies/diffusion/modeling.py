"""Diffusion head: DDPM training objective, DDIM / DPM-Solver++ sampling, optional inpainting prefix."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from policies.base import Policy, paste_prefix
from policies.diffusion.configuration import DiffusionConfig
from policies.diffusion.dit import TransformerDenoiser
from policies.diffusion.unet1d import ConditionalUnet1D
from policies.layers import TokenPool


class DiffusionPolicy(Policy):
    """Denoises an action chunk (B, horizon, action_dim) conditioned on tokens and state."""

    name = "diffusion"
    network_names = ("condition", "denoise")

    def __init__(self, config: DiffusionConfig) -> None:
        super().__init__(config)
        c = config
        self.pool = TokenPool.from_config(c, c.d_model)
        self.build_aux_heads(self.pool.out_tokens(c.n_tokens), c.d_model)
        if c.denoiser == "unet":
            # Global condition = flattened pooled tokens + flattened state history.
            n_pooled = self.pool.out_tokens(c.n_tokens)
            self.denoiser = ConditionalUnet1D(
                action_dim=c.action_dim,
                global_cond_dim=n_pooled * c.d_model + c.n_obs_steps * c.state_dim,
                step_embed_dim=c.diffusion_step_embed_dim,
                down_dims=c.down_dims,
                kernel_size=c.kernel_size,
                n_groups=c.n_groups,
            )
        else:
            self.denoiser = TransformerDenoiser(
                action_dim=c.action_dim,
                horizon=c.horizon,
                state_dim=c.state_dim,
                n_obs_steps=c.n_obs_steps,
                d_model=c.d_model,
                n_heads=c.n_heads,
                n_layers=c.n_layers,
                dim_feedforward=c.dim_feedforward,
                dropout=c.dropout,
            )
        common = {
            "num_train_timesteps": c.num_train_timesteps,
            "beta_schedule": c.beta_schedule,
            "prediction_type": c.prediction_type,
        }
        clip = {"clip_sample": c.clip_sample, "clip_sample_range": c.clip_sample_range}
        self.train_scheduler = DDPMScheduler(**common, **clip)
        if c.scheduler == "ddim":
            self.sample_scheduler = DDIMScheduler(**common, **clip, set_alpha_to_one=True)
        else:
            self.sample_scheduler = DPMSolverMultistepScheduler(
                **common, algorithm_type="dpmsolver++", solver_order=2
            )

    # ------------------------------------------------------------------ networks (see Policy.networks)
    def condition(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled tokens (B, K, d_model) and their mask (B, K)."""
        return self.pool(obs["tokens"], obs["token_mask"], obs.get("text_mask"))

    def denoise(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        pooled: torch.Tensor,
        pooled_mask: torch.Tensor,
        state: torch.Tensor,
    ) -> torch.Tensor:
        """One denoiser evaluation: noisy chunk x (B, T, Da) at timesteps t (B,) -> (B, T, Da)."""
        if self.config.denoiser == "unet":
            cond = torch.cat([pooled.flatten(1), state.flatten(1)], dim=-1)
            return self.denoiser(x, t, cond)
        return self.denoiser(x, t, pooled, pooled_mask, state)

    # ------------------------------------------------------------------ contract
    def loss_noise(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """State noise (base), the chunk noise (B, T, Da) and the diffusion timesteps (B,)."""
        c = self.config
        out = super().loss_noise(batch_size, generator)
        out["noise_action"] = torch.randn(batch_size, c.horizon, c.action_dim, generator=generator)
        out["noise_timestep"] = torch.randint(0, c.num_train_timesteps, (batch_size,), generator=generator)
        return out

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """MSE between the denoiser output and its target (noise or clean chunk) at random timesteps."""
        self.check_inputs(batch, need_action=True)
        batch = self.augment_state(batch)
        action = batch["action"]
        b = action.shape[0]
        pooled, pooled_mask = self.condition(batch)
        noise = batch.get("noise_action")
        noise = torch.randn_like(action) if noise is None else noise.to(action)
        t = batch.get("noise_timestep")
        if t is None:
            t = torch.randint(0, self.config.num_train_timesteps, (b,), device=action.device)
        t = t.to(action.device)
        noisy = self.train_scheduler.add_noise(action, noise, t)
        pred = self.denoise(noisy, t, pooled, pooled_mask, batch["state"])
        target = noise if self.config.prediction_type == "epsilon" else action
        loss = F.mse_loss(pred, target)
        metrics = {"denoise": float(loss.detach())}
        aux = self.aux_future_loss(batch, pooled)
        if aux is not None:
            loss = loss + self.config.aux_future_weight * aux
            metrics["aux_future"] = float(aux.detach())
        ground = self.aux_ground_loss(batch, self.pool)
        if ground is not None:
            loss = loss + self.config.aux_ground_weight * ground
            metrics["aux_ground"] = float(ground.detach())
        metrics["loss"] = float(loss.detach())
        return loss, metrics

    @torch.no_grad()
    def predict_chunk(
        self,
        obs: dict[str, torch.Tensor],
        prefix: torch.Tensor | None = None,
        prefix_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        num_inference_steps: int | None = None,
    ) -> torch.Tensor:
        """Sample a chunk (B, horizon, action_dim) with the configured inference scheduler.

        With a prefix (B, P, Da), the first P steps are inpainted: before each denoising step the
        noisy prefix is replaced by the known prefix forward-noised to that step's noise level
        (RePaint-style replacement), and the returned chunk holds the prefix exactly.
        num_inference_steps overrides the config's step count for this call.
        """
        self.check_inputs(obs, need_action=False)
        c = self.config
        state = obs["state"]
        b, device = state.shape[0], state.device
        mask = self.check_prefix(prefix, prefix_mask, b) if prefix is not None else None
        pooled, pooled_mask = self.condition(obs)
        sched = self.sample_scheduler
        sched.set_timesteps(num_inference_steps or c.num_inference_steps, device=device)
        x = torch.randn(b, c.horizon, c.action_dim, generator=generator, device=device, dtype=pooled.dtype)
        for t in sched.timesteps:
            if prefix is not None:
                p = prefix.shape[1]
                eps = torch.randn(prefix.shape, generator=generator, device=device, dtype=x.dtype)
                known = self.train_scheduler.add_noise(prefix.to(x.dtype), eps, t.reshape(1).expand(b))
                x = torch.cat([torch.where(mask, known, x[:, :p]), x[:, p:]], dim=1)
            out = self.denoise(x, t.reshape(1).expand(b).to(device), pooled, pooled_mask, state)
            x = sched.step(out, t, x, generator=generator).prev_sample
        if prefix is not None:
            x = paste_prefix(x, prefix, mask)
        return x

    def reset(self) -> None:
        """Stateless between chunks; the multistep scheduler's history is cleared by set_timesteps."""
