"""The default preset's four networks cut to two training steps: enough to exercise training and inference."""

from __future__ import annotations


def two_step_networks() -> dict[str, dict]:
    """Hyperparameters of the default preset, each network trained for 2 steps of batch 8 and validated once."""
    from img2spec.config import resolve_networks, validate_config
    from img2spec.networks import NETWORKS

    networks = resolve_networks(validate_config({})["training"])
    for name, hp in networks.items():
        hp.update(max_steps=2, batch_size=8, val_every_steps=2, checkpoint_every_steps=2)
        if NETWORKS[name].is_diffusion:
            hp["val_sampler_steps"] = 2
    return networks
