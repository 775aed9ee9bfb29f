"""The default preset's four networks cut to two training steps: enough to exercise training and inference."""

from __future__ import annotations

import dataclasses


def two_step_networks() -> dict:
    """Hyperparameters of the default preset, each network trained for 2 steps of batch 8 and validated once."""
    from img2spec.config import network_hyperparameters, validate_config
    from img2spec.networks import NETWORKS

    short = {"max_steps": 2, "batch_size": 8, "val_every_steps": 2, "checkpoint_every_steps": 2}
    return {
        name: dataclasses.replace(hp, **short, **({"val_sampler_steps": 2} if NETWORKS[name].is_diffusion else {}))
        for name, hp in network_hyperparameters(validate_config({})["training"]).items()
    }
