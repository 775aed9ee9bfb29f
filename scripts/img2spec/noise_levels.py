"""The noise levels of the diffusion schedules in plain Python: β_t of each schedule and where a sampling ends.

:class:`img2spec.diffusion.NoiseSchedule` builds its tables from these; the configuration check
(:func:`img2spec.config.check_sampling_steps`) uses them while Snakemake builds the DAG, which imports
neither torch nor numpy.
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator

#: Noise schedules by name.
SCHEDULES = ("cosine", "linear")


def cosine_betas(timesteps: int, offset: float = 0.008, max_beta: float = 0.999) -> list[float]:
    """β_t (T,) with ᾱ(t) = cos²((t/T + s)/(1 + s) · π/2), clipped at ``max_beta`` (Nichol & Dhariwal 2021)."""

    def f(t):
        return math.cos((t / timesteps + offset) / (1 + offset) * math.pi / 2) ** 2

    return [min(1 - f(i + 1) / f(i), max_beta) for i in range(timesteps)]


def linear_betas(timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> list[float]:
    """β_t (T,) of the linear schedule of Ho et al. (2020), rescaled to ``timesteps`` steps."""
    scale = 1000 / timesteps
    step = (beta_end - beta_start) / max(timesteps - 1, 1)
    return [scale * (beta_start + i * step) for i in range(timesteps)]


def named_betas(name: str, timesteps: int) -> list[float]:
    """β_t (T,) of schedule ``name`` (one of :data:`SCHEDULES`)."""
    if name == "cosine":
        return cosine_betas(timesteps)
    if name == "linear":
        return linear_betas(timesteps)
    raise ValueError(f"unknown noise schedule {name!r} ({', '.join(SCHEDULES)})")


def noise_variance(betas: list[float]) -> list[float]:
    """(1 − ᾱ_t)/ᾱ_t (T,): the variance of the noise on x0 at each step, x_t/√ᾱ_t = x0 + √((1 − ᾱ_t)/ᾱ_t) ε."""
    alpha_bar = list(itertools.accumulate((1 - beta for beta in betas), operator.mul))
    return [(1 - a) / a for a in alpha_bar]


def final_step(betas: list[float], final_noise: float = 0.0) -> int:
    """First step whose :func:`noise_variance` is at least ``final_noise``; 0 for 0.

    A sampler that ends there returns E[x0 | x_t] at that noise level: structure of the data below
    it, the training spectra's observational noise among it, is averaged out, not drawn.

    Raises
    ------
    ValueError
        If ``final_noise`` is negative or above the schedule's largest noise variance.
    """
    if final_noise < 0:
        raise ValueError(f"final_noise must be ≥ 0, got {final_noise}")
    variance = noise_variance(betas)
    if final_noise > variance[-1]:
        raise ValueError(f"final_noise {final_noise} exceeds the schedule's largest noise variance")
    return bisect.bisect_left(variance, final_noise)
