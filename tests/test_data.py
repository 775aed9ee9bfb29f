"""Training data: sharding across processes, seeded augmentation, standardisation (issue 5)."""

from __future__ import annotations

import h5py
import numpy as np
import torch
from img2spec.data import ShardedEpochSampler, SpectraImages
from img2spec.statistics import image_stats, spectrum_stats
from img2spec.upsampling import lowres_to_fullres


def test_distributed_shards_are_disjoint_and_deal_one_process_batches_round_robin():
    n, world, batch = 103, 4, 8
    shards = [list(ShardedEpochSampler(n, seed=5, shuffle=True, rank=r, world_size=world)) for r in range(world)]
    assert {len(s) for s in shards} == {n // world}  # training: equal shares, so equal numbers of steps
    positions = [p for shard in shards for p, _ in shard]
    assert len(positions) == len(set(positions)) == n - n % world  # nothing repeated; the remainder left out
    one = [p for p, _ in ShardedEpochSampler(n, seed=5, shuffle=True)]
    for k in range(n // batch):  # the k-th batches of B/W items of the W processes: one process's k-th of B
        per_rank = batch // world
        together = {p for shard in shards for p, _ in shard[k * per_rank : (k + 1) * per_rank]}
        assert together == set(one[k * batch : (k + 1) * batch])
    left_out = [set(range(n)) - {p for r in range(world) for p, _ in _shard_in_epoch(n, r, world, e)} for e in (0, 1)]
    assert left_out[0] != left_out[1]  # a different remainder in each epoch: no galaxy is never trained on
    validation = [
        list(ShardedEpochSampler(n, 5, shuffle=False, rank=r, world_size=world, equal_shares=False))
        for r in range(world)
    ]
    assert sorted(p for shard in validation for p, _ in shard) == list(range(n))  # validation: each once
    sampler = ShardedEpochSampler(n, seed=5, shuffle=True)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(p for p, _ in sampler) == list(range(n))
    sampler.set_epoch(0)
    assert list(sampler) == first


def _shard_in_epoch(n: int, rank: int, world: int, epoch: int) -> list[tuple[int, int]]:
    sampler = ShardedEpochSampler(n, seed=5, shuffle=True, rank=rank, world_size=world)
    sampler.set_epoch(epoch)
    return list(sampler)


def test_augmentation_is_seeded_by_epoch_and_images_standardised(tiny_dataset):
    stats = spectrum_stats(str(tiny_dataset), "flux_lowres")
    linear = image_stats(str(tiny_dataset), "linear")
    plain = SpectraImages(str(tiny_dataset), "train", "flux_lowres", stats, linear)
    augmented = SpectraImages(str(tiny_dataset), "train", "flux_lowres", stats, linear, augment=True, seed=1)
    a0, again, a1 = augmented[(3, 0)]["images"], augmented[(3, 0)]["images"], augmented[(3, 1)]["images"]
    assert torch.equal(a0, again) and not torch.equal(a0, a1)
    assert torch.equal(plain[(3, 0)]["spectrum"], augmented[(3, 1)]["spectrum"])  # spectra are never augmented
    with h5py.File(tiny_dataset) as h5:
        row = plain.rows[3]
        raw = h5["images"][row]
        mean, std = h5["images"].attrs["train_mean"], h5["images"].attrs["train_std"]
        np.testing.assert_allclose(
            plain[(3, 0)]["images"].numpy(), (raw - mean[:, None, None]) / std[:, None, None], rtol=1e-5, atol=1e-5
        )
        expected = (h5["flux_lowres"][row] - stats.mean) / stats.std
    np.testing.assert_allclose(plain[(3, 0)]["spectrum"].numpy(), expected, rtol=1e-5)


def test_per_pixel_standardisation_and_residual_target(tiny_dataset):
    """Per-pixel statistics standardise every training pixel to mean 0 and std 1; the residual target
    is the full-resolution spectrum minus the interpolated low-resolution one."""
    with h5py.File(tiny_dataset) as h5:
        train = np.flatnonzero(h5["split"][()] == 0)
        flux, mask = h5["flux_lowres"][()][train], h5["mask_lowres"][()][train]
        full, low = h5["flux"][()][train], h5["flux_lowres"][()][train]
        interp = lowres_to_fullres(h5["wave_lowres"][()], h5["wave"][()])
    stats = spectrum_stats(str(tiny_dataset), "flux_lowres", per_pixel=True)
    standard = np.where(mask, np.nan, stats.standardise(flux))
    well_sampled = (~mask).sum(0) > 30
    np.testing.assert_allclose(np.nanmean(standard, 0)[well_sampled], 0, atol=1e-4)
    np.testing.assert_allclose(np.nanstd(standard, 0)[well_sampled], 1, rtol=1e-3)
    assert stats.low <= np.nanmin(standard) + 1e-5 and stats.high >= np.nanmax(standard) - 1e-5
    np.testing.assert_allclose(stats.restore(stats.standardise(flux)), flux, rtol=1e-5, atol=1e-5)
    residual = spectrum_stats(str(tiny_dataset), "residual", per_pixel=True)
    dataset = SpectraImages(str(tiny_dataset), "train", "residual", residual, image_stats(str(tiny_dataset), "arcsinh"))
    np.testing.assert_allclose(
        residual.restore(dataset[(0, 0)]["spectrum"].numpy()), full[0] - low[0] @ interp, atol=1e-4
    )
    # the residual carries only small-scale structure: far less spread than the spectrum itself
    assert np.median(residual.std) < 0.5 * np.median(spectrum_stats(str(tiny_dataset), "flux", per_pixel=True).std)


def test_arcsinh_images_use_the_sky_noise_as_softening(tiny_dataset):
    stats = image_stats(str(tiny_dataset), "arcsinh")
    with h5py.File(tiny_dataset) as h5:
        train = np.flatnonzero(h5["split"][()] == 0)
        images = h5["images"][()][train]
    frame = images[:, :, :8, :].reshape(len(images), 5, -1)
    sky_sigma = 1.4826 * np.median(np.abs(frame - np.median(frame, axis=(0, 2))[None, :, None]), axis=(0, 2))
    np.testing.assert_allclose(stats.softening, sky_sigma, rtol=0.3)
    standard = stats.apply(images)
    np.testing.assert_allclose(standard.mean(axis=(0, 2, 3)), 0, atol=1e-3)
    np.testing.assert_allclose(standard.std(axis=(0, 2, 3)), 1, rtol=1e-3)
    # bright cores are compressed logarithmically, faint pixels stay linear
    assert standard.max() < 0.2 * ((images - images.mean()) / images.std()).max()


def test_lowres_interpolation_reproduces_a_linear_spectrum():
    wave = np.arange(4000.0, 4500.0)
    wave_lowres = wave.reshape(-1, 10).mean(1)
    matrix = lowres_to_fullres(wave_lowres, wave)
    inside = (wave >= wave_lowres[0]) & (wave <= wave_lowres[-1])
    np.testing.assert_allclose(((0.01 * wave_lowres) @ matrix)[inside], 0.01 * wave[inside], rtol=1e-12)


def _line_population(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """ln spectra on 1 Å pixels: a flat continuum with noise (σ 0.02), and in 60% of them an unresolved
    emission line (σ 1.5 Å) at 4500 Å with EW 2–15 Å; their 8-pixel ln bin means, as preprocessing makes them."""
    from img2spec.preprocessing import lowres_bin_means

    rng = np.random.default_rng(seed)
    wave = np.arange(4400.0, 4600.0)
    ew = np.where(rng.random(n) < 0.6, rng.uniform(2.0, 15.0, n), 0.0)
    profile = np.exp(-0.5 * ((wave - 4500.0) / 1.5) ** 2) / (1.5 * np.sqrt(2 * np.pi))
    linear = 1.0 + ew[:, None] * profile[None, :]
    noisy = linear * np.exp(rng.normal(0.0, 0.02, linear.shape))
    lowres = np.log(lowres_bin_means(noisy, 8))
    return wave, lowres_bin_means(wave[None, :], 8)[0], np.log(noisy), lowres, ew


def test_interpolated_residual_has_side_lobes_that_the_fitted_upsampling_removes():
    """Issue 25's side-lobe mechanism, pinned.  With linear interpolation of the 8 Å bins the residual of
    a line is a peak with troughs beside it, and so is the population's mean residual: a CDM_sr that
    ignores its condition draws that mean (0 in standardised units) into every spectrum, troughs and
    all.  The least-squares upsampling leaves a residual of zero mean and, from the bins alone, puts
    the line back with its flux and no trough deeper than the noise."""
    from img2spec.upsampling import UpsamplingFit, linear_upsampling

    wave, wave_lowres, full, lowres, _ = _line_population(3000, seed=1)
    beside = (np.abs(wave - 4500.0) >= 4) & (np.abs(wave - 4500.0) <= 12)
    interpolated_mean = (full - linear_upsampling(wave_lowres, wave).apply(lowres)).mean(axis=0)
    assert interpolated_mean[beside].min() < -0.1  # troughs of 10% of the continuum and more

    fit = UpsamplingFit(wave_lowres, wave, half_width=2)
    fit.add(full, np.zeros(full.shape, bool), lowres)
    upsampling = fit.solve()
    inner = (wave > 4420) & (wave < 4580)  # away from the grid's ends, where bands are one-sided
    assert np.abs((full - upsampling.apply(lowres)).mean(axis=0)[inner]).max() < 0.005

    wave, wave_lowres, full, lowres, ew = _line_population(400, seed=2)  # new spectra, the same map
    upsampled = np.exp(upsampling.apply(lowres))
    window = np.abs(wave - 4500.0) <= 10
    recovered = (upsampled[:, window] - 1.0).sum(axis=1)
    emitting = ew > 5
    np.testing.assert_allclose(np.median(recovered[emitting] / ew[emitting]), 1.0, atol=0.05)
    assert np.all(recovered[ew == 0] < 1.0)  # no line where the bins have no bump
    assert np.quantile(upsampled[:, beside].min(axis=1), 0.05) > np.exp(-3 * 0.02 / np.sqrt(8))
    assert (
        np.quantile(
            np.exp(linear_upsampling(wave_lowres, wave).apply(lowres))[:, window].max(axis=1)[emitting]
            / upsampled[:, window].max(axis=1)[emitting],
            0.5,
        )
        < 0.7
    )  # interpolation flattens the peak
