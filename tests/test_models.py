"""Networks, diffusion schedule and samplers, and training behaviour (issue 5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from img2spec.config import network_hyperparameters, validate_config
from img2spec.diffusion import NoiseSchedule
from img2spec.models import ResNetEncoder, info_nce
from img2spec.networks import NETWORKS
from img2spec.tasks import build_contrastive, build_denoiser

torch.set_num_threads(1)
TINY = network_hyperparameters(validate_config({})["training"])


def test_resnet_encoders_match_torchvision_parameter_counts():
    # torchvision's published sizes (3-band 7×7 stem, 1000-class head): ResNet-18 11,689,512; ResNet-50 25,557,032
    for depth, published in ((18, 11_689_512), (50, 25_557_032)):
        encoder = ResNetEncoder(depth, 64, in_bands=3)
        ours = sum(p.numel() for p in encoder.parameters())
        assert ours - 3 * 64 * 9 + 3 * 64 * 49 + encoder.out_dim * 1000 + 1000 == published
    tokens, pooled = ResNetEncoder(18, 8)(torch.randn(2, 5, 64, 64))
    assert tokens.shape == (2, 64, 64) and pooled.shape == (2, 64)


@pytest.mark.parametrize("network, length", [("cdm_lr", 578), ("cdm_sr", 4617)])
def test_denoiser_shapes_and_gradients(network, length):
    torch.manual_seed(0)
    net = build_denoiser(TINY[network], super_resolution=NETWORKS[network].conditioned_on_lowres, length=length)
    x = torch.randn(3, length)
    lowres = torch.randn(3, length) if NETWORKS[network].conditioned_on_lowres else None
    images = torch.randn(3, 5, 64, 64)
    t = torch.tensor([0, 100, 249])
    assert net(x, t, images, lowres).shape == (3, length)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    target = torch.randn(3, length)
    for _ in range(2):  # the output layer starts at zero, so gradients reach the body from step 2
        optimizer.zero_grad()
        bound = net.conditioned(images, lowres)
        loss = ((bound(x, t) - target) ** 2).mean()
        if bound.centre is not None:
            assert bound.centre.shape == (3, length)
            loss = loss + ((bound.centre - target) ** 2).mean()
        if net.redshift is not None:
            loss = loss + ((net.redshift(bound.pooled) - 1) ** 2).mean()
        loss.backward()
        optimizer.step()
    dead = [name for name, p in net.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not dead, dead


@pytest.mark.parametrize("network, length", [("contrastive_lr", 563), ("contrastive_sr", 4500)])
def test_contrastive_shapes_and_gradients(network, length):
    model = build_contrastive(TINY[network])
    logits = model.logits(torch.randn(4, 5, 64, 64), torch.randn(4, length))
    assert logits.shape == (4, 4)
    info_nce(logits).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    norms = model.embed_spectra(torch.randn(4, length)).norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(4))


def test_cosine_schedule_properties():
    schedule = NoiseSchedule.cosine(250)
    ab = schedule.alpha_bar
    assert torch.all(ab[1:] < ab[:-1])
    assert ab[0] > 0.999 and ab[-1] < 1e-6
    # the forward process has the right mean and variance
    x0 = torch.full((200_000, 1), 1.5, dtype=torch.float64)
    for step in (0, 60, 200, 249):
        t = torch.full((x0.shape[0],), step)
        x_t = schedule.q_sample(x0, t, torch.randn_like(x0))
        assert x_t.mean().item() == pytest.approx(1.5 * math.sqrt(ab[step]), abs=0.01)
        assert x_t.var().item() == pytest.approx(1 - ab[step].item(), abs=0.01)


def test_training_draws_t_uniformly_over_all_steps():
    schedule = NoiseSchedule.cosine(250)
    seen = []

    def denoiser(x, t):
        seen.append(t)
        return torch.zeros_like(x)

    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        schedule.training_loss(denoiser, torch.zeros(1000, 4), generator=generator)
    counts = torch.bincount(torch.cat(seen), minlength=250).double()
    assert counts.min() > 0 and counts.numel() == 250
    chi2 = ((counts - counts.mean()) ** 2 / counts.mean()).sum().item()
    assert chi2 < 249 + 5 * math.sqrt(2 * 249)  # consistent with uniform


def _gaussian_data_denoiser(schedule, mu, sigma):
    """Exact ε(x_t, t) for data x0 ~ N(mu, sigma²)."""
    ab = schedule.alpha_bar

    def denoiser(x, t):
        a = ab[t].to(x.dtype).view(-1, 1)
        var = a * sigma**2 + 1 - a
        return (1 - a).sqrt() * (x - a.sqrt() * mu) / var

    return denoiser


def test_samplers_reproduce_a_known_gaussian():
    schedule = NoiseSchedule.cosine(250)
    mu, sigma = 0.7, 0.3
    denoiser = _gaussian_data_denoiser(schedule, mu, sigma)
    shape = (20_000, 2)
    x = schedule.sample_ancestral(denoiser, shape, generator=torch.Generator().manual_seed(1))
    assert x.mean().item() == pytest.approx(mu, abs=0.01)
    assert x.std().item() == pytest.approx(sigma, rel=0.03)
    # DDIM is first order: it under-disperses at few steps and converges as the steps grow
    errors = []
    for steps in (10, 25, 125):
        x = schedule.sample_ddim(denoiser, shape, steps=steps, generator=torch.Generator().manual_seed(1))
        assert x.mean().item() == pytest.approx(mu, abs=0.03)
        errors.append(abs(x.std().item() - sigma))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.03 * sigma


def test_sampling_that_ends_at_a_noise_level_returns_the_posterior_mean_there():
    """Issue 25: with final_noise the samplers stop at that noise variance v and return E[x0 | x_t]; for data
    N(mu, sigma²) its spread is sigma²/√(sigma² + v), the part of the data above the noise level, and its mean mu."""
    schedule = NoiseSchedule.cosine(250)
    mu, sigma = 0.7, 0.3
    denoiser = _gaussian_data_denoiser(schedule, mu, sigma)
    final = schedule.final_step(sigma**2)  # the data's own variance: half of its spread's power is kept
    assert schedule.noise_variance[final] >= sigma**2 > schedule.noise_variance[final - 1]
    shape = (20_000, 2)
    # DPM-Solver++(2M) ends 0.015 low in mean at 20 steps (second order on the shortened span)
    for name, steps, mean_tolerance in (("ancestral", None, 0.01), ("ddim", 50, 0.01), ("dpmpp_2m", 20, 0.025)):
        x = schedule.sample(
            name, denoiser, shape, steps, generator=torch.Generator().manual_seed(2), final_noise=sigma**2
        )
        last = final if name == "ancestral" else schedule.step_sequence(steps, None, final)[-1]
        assert last >= final
        expected = sigma**2 / math.sqrt(sigma**2 + float(schedule.noise_variance[last]))
        assert x.mean().item() == pytest.approx(mu, abs=mean_tolerance), name
        assert x.std().item() == pytest.approx(expected, rel=0.04), name
    with pytest.raises(ValueError, match="final_noise must be ≥ 0"):
        schedule.final_step(-1.0)
    with pytest.raises(ValueError, match=f"steps must be in 1..{250 - final}, the steps from the final step"):
        schedule.step_sequence(250 - final + 1, None, final)


def test_conditional_mean_averages_away_what_the_network_reads_from_pure_noise():
    """An ε-network whose x0 estimate at the last step is the data mean plus a leak of its noise input: the
    average over n noises keeps the mean and leaves the leak's spread / √n (issue 25: one noise left
    0.015 rms of ln flux in CDM_sr's validation mean, more than the fine structure it is to learn)."""
    schedule = NoiseSchedule.cosine(250)
    mu, leak = 0.7, 0.5
    exact = _gaussian_data_denoiser(schedule, mu, 0.3)
    ab_last = schedule.alpha_bar[-1].item()

    def leaky(x, t):
        # x0 = (x − √(1−ᾱ) ε)/√ᾱ, so this ε moves the x0 estimate by leak · x
        return exact(x, t) - leak * math.sqrt(ab_last / (1 - ab_last)) * x

    shape = (20_000, 1)
    spread = {}
    for draws in (1, 4):
        mean = schedule.conditional_mean(leaky, shape, torch.Generator().manual_seed(3), draws=draws)
        assert mean.mean().item() == pytest.approx(mu, abs=0.02)
        spread[draws] = mean.std().item()
    assert spread[1] == pytest.approx(leak, rel=0.05) and spread[4] == pytest.approx(leak / 2, rel=0.05)


def test_denoiser_overfits_a_tiny_fixed_batch():
    torch.manual_seed(0)
    hp = TINY["cdm_lr"]
    net = build_denoiser(hp, super_resolution=False, length=563)
    schedule = NoiseSchedule.cosine(hp.timesteps)
    x0 = torch.sin(torch.linspace(0, 12, 563))[None].repeat(4, 1) * torch.tensor([[1.0], [0.5], [-0.5], [-1.0]])
    images = torch.randn(4, 5, 64, 64)
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(120):
        loss = schedule.training_loss(lambda x, t: net(x, t, images), x0, generator=generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-20:]) < 0.3 * np.mean(losses[:5])


def test_contrastive_loss_ranks_the_matching_pair_first():
    torch.manual_seed(0)
    n = 8
    # a trivially separable batch: image k is bright in a band pattern, spectrum k a sinusoid of frequency k
    images = torch.zeros(n, 5, 64, 64)
    for k in range(n):
        images[k, k % 5] = 1.0 + k / n
    spectra = torch.stack([torch.sin(torch.linspace(0, (k + 1) * 3.14, 563)) for k in range(n)])
    model = build_contrastive(TINY["contrastive_lr"])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(80):
        loss = info_nce(model.logits(images, spectra))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    logits = model.logits(images, spectra)
    assert torch.equal(logits.argmax(dim=1), torch.arange(n))
    assert torch.equal(logits.argmax(dim=0), torch.arange(n))
    # and the loss itself prefers the matching assignment
    good = torch.eye(n) * 10
    assert info_nce(good) < info_nce(good[torch.randperm(n)])


def _mixture_denoiser(schedule, weights, means, sd):
    """Exact ε(x_t, t) for a 1-D Gaussian mixture data distribution: ε = −σ ∇ log p_t(x_t)."""
    ab = schedule.alpha_bar
    weights, means = torch.tensor(weights, dtype=torch.float64), torch.tensor(means, dtype=torch.float64)

    def denoiser(x, t):
        a = ab[t].view(-1, 1, 1)
        var = a * sd**2 + 1 - a
        diff = x[..., None].double() - a.sqrt() * means
        log_r = torch.log(weights) - 0.5 * diff**2 / var
        r = torch.softmax(log_r, dim=-1)
        score = -(r * diff / var).sum(-1)
        return (-(1 - a[..., 0]).sqrt() * score).to(x.dtype)

    return denoiser


@pytest.mark.parametrize("sampler, steps", [("ancestral", None), ("ddim", 125), ("dpmpp_2m", 50)])
def test_samplers_match_a_gaussian_mixture(sampler, steps):
    schedule = NoiseSchedule.cosine(250)
    weights, means, sd = [0.3, 0.7], [-1.0, 1.5], 0.25
    denoiser = _mixture_denoiser(schedule, weights, means, sd)
    x = (
        schedule.sample(sampler, denoiser, (40_000, 1), steps, generator=torch.Generator().manual_seed(2))
        .double()
        .ravel()
    )
    left, right = x[x < 0.25], x[x >= 0.25]
    assert left.numel() / x.numel() == pytest.approx(0.3, abs=0.01)
    assert left.mean().item() == pytest.approx(-1.0, abs=0.02) and right.mean().item() == pytest.approx(1.5, abs=0.02)
    assert left.std().item() == pytest.approx(sd, rel=0.06) and right.std().item() == pytest.approx(sd, rel=0.06)


def test_fast_samplers_converge_with_steps():
    # with few steps DDIM under-disperses and DPM-Solver++(2M) over-disperses; both converge
    schedule = NoiseSchedule.cosine(250)
    denoiser = _gaussian_data_denoiser(schedule, 0.7, 0.3)
    for name in ("ddim", "dpmpp_2m"):
        errors = []
        for steps in (10, 50, 125):
            x = schedule.sample(name, denoiser, (20_000, 2), steps, generator=torch.Generator().manual_seed(1))
            errors.append(abs(x.std().item() - 0.3) + abs(x.mean().item() - 0.7))
        assert errors[0] > errors[1] > errors[2], (name, errors)
        assert errors[2] < 0.01


def test_per_sample_generators_make_batches_irrelevant():
    schedule = NoiseSchedule.cosine(50)
    denoiser = _gaussian_data_denoiser(schedule, 0.7, 0.3)
    seeds = [11, 12, 13]
    together = schedule.sample_ancestral(denoiser, (3, 5), [torch.Generator().manual_seed(s) for s in seeds])
    alone = torch.cat([schedule.sample_ancestral(denoiser, (1, 5), [torch.Generator().manual_seed(s)]) for s in seeds])
    torch.testing.assert_close(together, alone)


def _gaussian_prediction(schedule, mu, sigma, prediction):
    """Exact network output (ε, v or x0) for Gaussian data N(mu, sigma²), from the posterior mean of x0."""
    ab = schedule.alpha_bar

    def denoiser(x, t):
        a = ab[t].view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        x0 = mu + a.sqrt() * sigma**2 / (a * sigma**2 + 1 - a) * (x - a.sqrt() * mu)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        return {"epsilon": eps, "x0": x0, "v": a.sqrt() * eps - (1 - a).sqrt() * x0}[prediction]

    return denoiser


@pytest.mark.parametrize("prediction", ["v", "x0"])
def test_v_and_x0_prediction_sample_the_same_distribution_without_few_step_bias(prediction):
    """x0- and v-networks need no division by √ᾱ, so their samplers start at pure noise (trailing
    spacing): 20 steps then reproduce the mean, which leading spacing, starting from a partly noised
    state it treats as pure noise, biases by the first step's √ᾱ (at 10 steps the trailing samples
    are 14% too narrow: the last step returns E[x0 | x_24])."""
    mu, sigma = 0.7, 0.3
    schedule = NoiseSchedule.cosine(250, prediction=prediction)
    assert schedule.step_sequence(10)[0] == 249 and schedule.step_sequence(10)[-1] == 24
    denoiser = _gaussian_prediction(schedule, mu, sigma, prediction)
    generator = torch.Generator().manual_seed(3)
    trailing = schedule.sample("dpmpp_2m", denoiser, (20_000, 2), 20, generator=generator, spacing="trailing")
    assert trailing.mean().item() == pytest.approx(mu, abs=0.01)
    assert trailing.std().item() == pytest.approx(sigma, rel=0.05)
    leading = schedule.sample(
        "dpmpp_2m", denoiser, (20_000, 2), 20, generator=torch.Generator().manual_seed(3), spacing="leading"
    )
    assert abs(leading.mean().item() - mu) > 3 * abs(trailing.mean().item() - mu)
    ancestral = schedule.sample_ancestral(denoiser, (20_000, 2), generator=torch.Generator().manual_seed(1))
    assert ancestral.mean().item() == pytest.approx(mu, abs=0.01) and ancestral.std().item() == pytest.approx(
        sigma, rel=0.03
    )


@pytest.mark.parametrize("prediction", ["epsilon", "v", "x0"])
def test_training_loss_is_zero_for_the_exact_prediction(prediction):
    """The loss regresses exactly what the sampler reads back: the exact posterior network scores
    the irreducible error only, and a network off by a constant scores more."""
    schedule = NoiseSchedule.cosine(250, prediction=prediction)
    x0 = torch.full((4000, 3), 0.7)  # a point mass: the exact posterior mean is x0 itself
    exact = _gaussian_prediction(schedule, 0.7, 1e-6, prediction)
    loss = schedule.training_loss(exact, x0, generator=torch.Generator().manual_seed(0))
    assert loss.item() < 1e-6
    worse = schedule.training_loss(lambda x, t: exact(x, t) + 0.1, x0, generator=torch.Generator().manual_seed(0))
    assert worse.item() == pytest.approx(0.01, rel=0.05)


def test_paper_preset_has_the_papers_training_settings():
    """Sect. 3.4: batch 512 for the low-resolution networks, 224 / 340 for the full-resolution CDM /
    contrastive network; T = 250 cosine, EMA 0.9999, ResNet-18 in the CDMs, ResNet-50 and latent 128
    in the contrastive networks; ε-prediction without a regression head (the paper's method)."""
    paper = network_hyperparameters({"preset": "paper"})
    assert {name: hp.batch_size for name, hp in paper.items()} == {
        "cdm_lr": 512,
        "contrastive_lr": 512,
        "cdm_sr": 224,
        "contrastive_sr": 340,
    }
    for name in ("cdm_lr", "cdm_sr"):
        hp = paper[name]
        assert (hp.timesteps, hp.schedule, hp.ema_decay, hp.image_encoder.depth) == (
            250,
            "cosine",
            0.9999,
            18,
        )
        assert hp.prediction == "epsilon" and hp.regression is None
    for name in ("contrastive_lr", "contrastive_sr"):
        assert (paper[name].image_encoder.depth, paper[name].latent) == (50, 128)


def test_repeated_conditioning_equals_encoding_each_repeat():
    """Several candidates per image: encoding once and repeating the tokens gives what encoding every
    repeated image gives (eval mode), rows in image-by-image order, with the regression centre along."""
    torch.manual_seed(0)
    net = build_denoiser(TINY["cdm_lr"], super_resolution=False, length=563).eval()
    for layer in (net.unet.out[-1], net.regression.mlp[-1]):  # both start at zero, which would make any order pass
        torch.nn.init.normal_(layer.weight, std=0.1)
    images, x, t = torch.randn(2, 5, 64, 64), torch.randn(6, 563), torch.tensor([5, 60, 120, 249, 0, 30])
    with torch.no_grad():
        once = net.conditioned(images).repeated(3)
        each = net.conditioned(images.repeat_interleave(3, dim=0))
        torch.testing.assert_close(once(x, t), each(x, t), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(once.centre, each.centre)
        tiled = net.conditioned(images.repeat(3, 1, 1, 1))
        assert not torch.allclose(once(x, t), tiled(x, t), atol=1e-3)
    assert once.centre.shape == (6, 563)
