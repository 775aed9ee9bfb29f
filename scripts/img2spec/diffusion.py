"""Denoising diffusion (Ho et al. 2020) with the cosine schedule of Nichol & Dhariwal (2021).

One :class:`NoiseSchedule` holds every table, used alike by the training loss and the samplers,
so that step t means the same noise level everywhere (the published img2spec code's samplers were
one step off its training tables).  Steps are indexed t = 0 … T−1 and ᾱ_t = Π_{s ≤ t} (1 − β_s).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import noise_levels

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: What the network outputs: the noise ε, the velocity v = √ᾱ ε − √(1−ᾱ) x0, or x0 itself.
PREDICTIONS = ("epsilon", "v", "x0")
Generators = torch.Generator | list[torch.Generator] | None
#: Bounds of x0 estimates: numbers, or per-element tensors (a bound around each regression centre).
Range = tuple[float | torch.Tensor, float | torch.Tensor]


def randn(shape: tuple[int, ...], generator: Generators = None, device=None) -> torch.Tensor:
    """Standard normal noise; with a list of generators, row i comes from generator i.

    One generator per sample makes a sample's noise independent of what else is in the batch, so
    batched sampling gives the same results as one sample at a time.
    """
    if isinstance(generator, list):
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for {shape[0]} samples")
        return torch.stack([torch.randn(shape[1:], generator=g, device=device) for g in generator])
    return torch.randn(shape, generator=generator, device=device)


@dataclass
class NoiseSchedule:
    """Variance schedule and the tables derived from it (float64 for accuracy, cast on use).

    Attributes
    ----------
    betas : Tensor (T,)
    alpha_bar : Tensor (T,)
        Fraction of signal variance left at each step.
    """

    betas: torch.Tensor
    prediction: str = "epsilon"

    def __post_init__(self) -> None:
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {self.prediction!r} ({', '.join(PREDICTIONS)})")

    @classmethod
    def cosine(
        cls, timesteps: int, offset: float = 0.008, max_beta: float = 0.999, prediction: str = "epsilon"
    ) -> NoiseSchedule:
        """ᾱ(t) = cos²((t/T + s)/(1 + s) · π/2), β clipped at ``max_beta`` (Nichol & Dhariwal 2021)."""
        return cls(
            torch.tensor(noise_levels.cosine_betas(timesteps, offset, max_beta), dtype=torch.float64), prediction
        )

    @classmethod
    def linear(
        cls, timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02, prediction: str = "epsilon"
    ) -> NoiseSchedule:
        """The linear schedule of Ho et al. (2020), rescaled to ``timesteps`` steps."""
        return cls(
            torch.tensor(noise_levels.linear_betas(timesteps, beta_start, beta_end), dtype=torch.float64), prediction
        )

    @classmethod
    def named(cls, name: str, timesteps: int, prediction: str = "epsilon") -> NoiseSchedule:
        """Schedule ``cosine`` or ``linear`` whose network predicts ``prediction`` (epsilon, v or x0)."""
        return cls(torch.tensor(noise_levels.named_betas(name, timesteps), dtype=torch.float64), prediction)

    @property
    def timesteps(self) -> int:
        return self.betas.numel()

    @property
    def alpha_bar(self) -> torch.Tensor:
        return torch.cumprod(1 - self.betas, dim=0)

    @property
    def noise_variance(self) -> torch.Tensor:
        """(1 − ᾱ_t)/ᾱ_t: the variance of the noise on x0 at each step (:func:`img2spec.noise_levels.noise_variance`)."""
        return torch.tensor(noise_levels.noise_variance(self.betas.tolist()), dtype=torch.float64)

    def final_step(self, final_noise: float = 0.0) -> int:
        """First step whose noise variance is at least ``final_noise`` (:func:`img2spec.noise_levels.final_step`)."""
        return noise_levels.final_step(self.betas.tolist(), final_noise)

    def _at(self, table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return table.to(like.device)[t].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε."""
        ab = self._at(self.alpha_bar, t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def training_loss(
        self,
        denoiser: Denoiser,
        x0: torch.Tensor,
        weight: torch.Tensor | None = None,
        generator: Generators = None,
        shard: tuple[int, int] = (0, 1),
        weight_total: torch.Tensor | float | None = None,
    ) -> torch.Tensor:
        """MSE of the network's ``prediction`` with t uniform over all T steps.

        In terms of the x0 error, ε-prediction weights step t by the signal-to-noise ratio
        ᾱ/(1−ᾱ), v-prediction by SNR + 1 and x0-prediction by 1 (Salimans & Ho 2022).  At high noise,
        where only the conditioning tells the network anything about x0, ε-prediction puts almost
        no weight: x0 and v make the network learn the conditional mean there.
        ``weight`` (same shape as x0, e.g. 0 on masked pixels) weights the squared error.  With a
        list of generators, row i's t and ε come from generator i (:func:`randn`).

        Data-parallel training: ``shard`` (rank, world size) says that x0 holds rows rank, rank +
        world, … of a global batch ``world`` times larger; t and ε are drawn for that global batch and
        these rows taken, so W processes draw exactly what one process with the global batch draws.
        ``weight_total`` (the global batch's weight sum divided by W) then normalises the loss so that
        the mean over processes, which data parallelism takes of the gradients, is the global loss.
        """
        if isinstance(generator, list):
            t = torch.cat([torch.randint(0, self.timesteps, (1,), device=x0.device, generator=g) for g in generator])
            noise = randn(x0.shape, generator, x0.device).to(x0.dtype)
        else:
            rank, world = shard
            rows = slice(rank, None, world)
            global_shape = (x0.shape[0] * world, *x0.shape[1:])
            t = torch.randint(0, self.timesteps, global_shape[:1], device=x0.device, generator=generator)[rows]
            noise = torch.randn(global_shape, device=x0.device, dtype=x0.dtype, generator=generator)[rows]
        if self.prediction == "epsilon":
            target = noise
        elif self.prediction == "x0":
            target = x0
        else:
            ab = self._at(self.alpha_bar, t, x0)
            target = ab.sqrt() * noise - (1 - ab).sqrt() * x0
        error = (denoiser(self.q_sample(x0, t, noise), t) - target) ** 2
        if weight is None:
            return error.mean()
        total = weight.sum() if weight_total is None else weight_total
        return (error * weight).sum() / torch.as_tensor(total).clamp_min(1.0)

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        ab = self._at(self.alpha_bar, t, x_t)
        return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()

    def _x0_and_eps(self, denoiser: Denoiser, x: torch.Tensor, step: int, x0_range: Range | None):
        """x0̂ and ε̂ from the network's output, x0̂ clamped into ``x0_range`` (ε̂ made consistent) when given.

        The bounds are floats or tensors broadcastable to x (per-pixel bounds of a residual).
        """
        t = torch.full((x.shape[0],), step, device=x.device, dtype=torch.long)
        output = denoiser(x, t)
        a_bar = float(self.alpha_bar[step])
        if self.prediction == "epsilon":
            x0 = (x - math.sqrt(1 - a_bar) * output) / math.sqrt(a_bar)
        elif self.prediction == "x0":
            x0 = output
        else:
            x0 = math.sqrt(a_bar) * x - math.sqrt(1 - a_bar) * output
        eps = (x - math.sqrt(a_bar) * x0) / math.sqrt(1 - a_bar)
        if x0_range is not None:
            low, high = (torch.as_tensor(bound, dtype=x0.dtype, device=x0.device) for bound in x0_range)
            x0 = x0.clamp(low, high)
            eps = (x - math.sqrt(a_bar) * x0) / math.sqrt(1 - a_bar)
        return x0, eps

    @torch.no_grad()
    def conditional_mean(
        self, denoiser: Denoiser, shape: tuple[int, ...], generator: Generators = None, device=None, draws: int = 1
    ) -> torch.Tensor:
        """The network's x0 estimate from pure noise at the last step, averaged over ``draws`` noises:
        E[x0 | condition] for a trained model.

        At ᾱ ≈ 0 the noisy input holds nothing of x0, so the MSE-optimal estimate is the conditional
        mean, whatever the noise; a network that has not learned to ignore it answers each noise
        differently, and the average over noises removes that variance.  ``draws`` network
        evaluations, for validation (no sample's own noise in it).
        """
        estimates = [
            self._x0_and_eps(denoiser, randn(shape, generator, device), self.timesteps - 1, None)[0]
            for _ in range(draws)
        ]
        return torch.stack(estimates).mean(dim=0)

    @torch.no_grad()
    def sample_ancestral(
        self,
        denoiser: Denoiser,
        shape: tuple[int, ...],
        generator: Generators = None,
        device=None,
        x0_range: Range | None = None,
        final_step: int = 0,
    ) -> torch.Tensor:
        """DDPM ancestral sampling over steps T−1 … ``final_step`` with the posterior q(x_{t−1} | x_t, x0̂).

        μ = √ᾱ_{t−1} β_t/(1−ᾱ_t) x0̂ + √α_t (1−ᾱ_{t−1})/(1−ᾱ_t) x_t, variance β̃_t = β_t (1−ᾱ_{t−1})/(1−ᾱ_t).
        Near t = T−1 (β → 0.999) the x0 estimate divides the network's error by √ᾱ_t ≈ 2e-4;
        ``x0_range``, the range of the (standardised) training data, bounds it, as the clipping of
        Ho et al. (2020) to [−1, 1] does for images, without cutting real spectra.  The x0 estimate at
        ``final_step`` is returned (:meth:`final_step`).
        """
        x = randn(shape, generator, device)
        betas, ab = self.betas, self.alpha_bar
        for step in reversed(range(final_step, self.timesteps)):
            x0, _ = self._x0_and_eps(denoiser, x, step, x0_range)
            if step == final_step:
                return x0
            beta, a_bar, a_prev = float(betas[step]), float(ab[step]), float(ab[step - 1])
            mean = math.sqrt(a_prev) * beta / (1 - a_bar) * x0 + math.sqrt(1 - beta) * (1 - a_prev) / (1 - a_bar) * x
            variance = beta * (1 - a_prev) / (1 - a_bar)
            x = mean + math.sqrt(variance) * randn(shape, generator, x.device)
        return x

    def step_sequence(self, steps: int, spacing: str | None = None, final_step: int = 0) -> list[int]:
        """Decreasing training steps visited by a sampler with ``steps`` network evaluations.

        ``leading``: t = k·⌊T/steps⌋ (Song et al. 2021); it never starts at t = T−1, where ᾱ ≈ 4e-8
        for the clipped cosine schedule and an ε-network's x0 estimate divides its error by √ᾱ, but
        it starts from a partly noised state it then treats as pure noise, which biases few-step
        samples towards zero by √ᾱ of its first step.  ``trailing``: t = T − 1 − k·T/steps, rounded
        (Lin et al. 2024): starts at pure noise, safe for x0- and v-prediction, which need no
        division by √ᾱ.  None picks trailing for those and leading for ε-prediction.  With all T
        steps both visit every step.  Measured on exact Gaussian data (tests): trailing
        DPM-Solver++(2M) has no mean bias and a spread 14%, 3% and 0% too narrow at 10, 20 and 50
        steps, its last step returning E[x0 | x_t] at t = T/steps; leading has a 5% mean bias at
        10 steps (α of its first step).

        ``final_step`` f > 0 spaces the same way over steps f … T−1 only, as if step f were the
        clean end of the schedule (:meth:`final_step`): the last step visited lies at or above f.
        """
        if not 1 <= steps <= self.timesteps - final_step:
            ending = f", the steps from the final step {final_step} (final_noise) up" if final_step else ""
            raise ValueError(f"steps must be in 1..{self.timesteps - final_step}{ending}, got {steps}")
        spacing = spacing or ("leading" if self.prediction == "epsilon" else "trailing")
        span = self.timesteps - final_step
        if spacing == "leading":
            return [final_step + k * (span // steps) for k in reversed(range(steps))]
        if spacing == "trailing":
            return [final_step + round(span - 1 - k * span / steps) for k in range(steps)]
        raise ValueError(f"unknown step spacing {spacing!r} (leading, trailing)")

    @torch.no_grad()
    def sample_ddim(
        self,
        denoiser: Denoiser,
        shape: tuple[int, ...],
        steps: int,
        eta: float = 0.0,
        generator: Generators = None,
        device=None,
        x0_range: Range | None = None,
        spacing: str | None = None,
        final_step: int = 0,
    ) -> torch.Tensor:
        """DDIM (Song et al. 2021) on :meth:`step_sequence`; eta = 0 is deterministic."""
        x = randn(shape, generator, device)
        ab = self.alpha_bar
        sequence = self.step_sequence(steps, spacing, final_step)
        for i, step in enumerate(sequence):
            x0, eps = self._x0_and_eps(denoiser, x, step, x0_range)
            a_t = float(ab[step])
            a_prev = float(ab[sequence[i + 1]]) if i + 1 < len(sequence) else 1.0
            sigma = eta * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
            x = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps
            if sigma > 0:
                x = x + sigma * randn(shape, generator, x.device)
        return x

    @torch.no_grad()
    def sample_dpmpp_2m(
        self,
        denoiser: Denoiser,
        shape: tuple[int, ...],
        steps: int,
        generator: Generators = None,
        device=None,
        x0_range: Range | None = None,
        spacing: str | None = None,
        final_step: int = 0,
    ) -> torch.Tensor:
        """DPM-Solver++(2M) (Lu et al. 2022): second-order multistep in the data-prediction form.

        With α = √ᾱ, σ = √(1−ᾱ), λ = ln(α/σ) and h = λ_next − λ_t:
        x_next = (σ_next/σ_t) x − α_next (e^(−h) − 1) D, where D = x0̂ on the first step and
        (1 + 1/(2r)) x0̂_t − 1/(2r) x0̂_prev, r = h_prev/h, afterwards.  The last step goes to the
        clean signal (σ = 0), where the update is x = x0̂ as in DDIM; ``steps`` network evaluations in all.
        """
        x = randn(shape, generator, device)
        ab = self.alpha_bar
        sequence = self.step_sequence(steps, spacing, final_step)
        previous_x0: torch.Tensor | None = None
        previous_h = 0.0
        for i, step in enumerate(sequence):
            x0, _ = self._x0_and_eps(denoiser, x, step, x0_range)
            if i + 1 == len(sequence):
                return x0
            a_t, a_next = float(ab[step]), float(ab[sequence[i + 1]])
            alpha_next, sigma_t, sigma_next = math.sqrt(a_next), math.sqrt(1 - a_t), math.sqrt(1 - a_next)
            h = 0.5 * math.log(a_next / (1 - a_next)) - 0.5 * math.log(a_t / (1 - a_t))
            if previous_x0 is None:
                data = x0
            else:
                r = previous_h / h
                data = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * previous_x0
            x = (sigma_next / sigma_t) * x - alpha_next * math.expm1(-h) * data
            previous_x0, previous_h = x0, h
        return x

    def sample(
        self,
        name: str,
        denoiser: Denoiser,
        shape: tuple[int, ...],
        steps: int | None = None,
        generator: Generators = None,
        device=None,
        x0_range: Range | None = None,
        spacing: str | None = None,
        final_noise: float = 0.0,
    ) -> torch.Tensor:
        """Sample with the sampler called ``name``: ``ancestral`` (all T steps), ``ddim`` or ``dpmpp_2m``.

        ``spacing`` (leading, trailing; None for the prediction's default) applies to the fast samplers.
        ``final_noise`` > 0 ends the sampling at that noise variance with the x0 estimate there
        (:meth:`final_step`); 0 samples down to the clean end of the schedule.
        """
        final_step = self.final_step(final_noise)
        if name == "ancestral":
            return self.sample_ancestral(denoiser, shape, generator, device, x0_range, final_step)
        if steps is None:
            raise ValueError(f"sampler {name!r} needs a number of steps")
        if name == "ddim":
            return self.sample_ddim(
                denoiser,
                shape,
                steps,
                generator=generator,
                device=device,
                x0_range=x0_range,
                spacing=spacing,
                final_step=final_step,
            )
        if name == "dpmpp_2m":
            return self.sample_dpmpp_2m(denoiser, shape, steps, generator, device, x0_range, spacing, final_step)
        raise ValueError(f"unknown sampler {name!r} (ancestral, ddim, dpmpp_2m)")
