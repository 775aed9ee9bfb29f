"""Training data: sharding across processes, seeded augmentation, standardisation (issue 5)."""

from __future__ import annotations

import h5py
import numpy as np
import torch

from img2spec.data import ShardedEpochSampler, SpectraImages, lowres_to_fullres, spectrum_stats


def test_distributed_shards_are_disjoint_and_cover_the_data():
    n, world = 103, 4
    shards = [list(ShardedEpochSampler(n, seed=5, shuffle=True, rank=r, world_size=world)) for r in range(world)]
    assert len({len(s) for s in shards}) == 1
    positions = [p for shard in shards for p, _ in shard]
    assert set(positions) == set(range(n))
    assert len(positions) - n < world  # only the wrap-around padding repeats
    sampler = ShardedEpochSampler(n, seed=5, shuffle=True)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(p for p, _ in sampler) == list(range(n))
    sampler.set_epoch(0)
    assert list(sampler) == first


def test_augmentation_is_seeded_by_epoch_and_images_standardised(tiny_dataset):
    stats = spectrum_stats(str(tiny_dataset), "flux_lowres")
    plain = SpectraImages(str(tiny_dataset), "train", "lowres", stats)
    augmented = SpectraImages(str(tiny_dataset), "train", "lowres", stats, augment=True, seed=1)
    a0, again, a1 = augmented[(3, 0)]["images"], augmented[(3, 0)]["images"], augmented[(3, 1)]["images"]
    assert torch.equal(a0, again) and not torch.equal(a0, a1)
    assert torch.equal(plain[(3, 0)]["spectrum"], augmented[(3, 1)]["spectrum"])  # spectra are never augmented
    with h5py.File(tiny_dataset) as h5:
        row = plain.rows[3]
        raw = h5["images"][row]
        mean, std = h5["images"].attrs["train_mean"], h5["images"].attrs["train_std"]
        np.testing.assert_allclose(plain[(3, 0)]["images"].numpy(), (raw - mean[:, None, None]) / std[:, None, None], rtol=1e-5, atol=1e-5)
        expected = (h5["flux_lowres"][row] - stats.mean) / stats.std
    np.testing.assert_allclose(plain[(3, 0)]["spectrum"].numpy(), expected, rtol=1e-5)


def test_lowres_interpolation_reproduces_a_linear_spectrum():
    wave = np.arange(4000.0, 4500.0)
    wave_lowres = wave.reshape(-1, 10).mean(1)
    matrix = lowres_to_fullres(wave_lowres, wave)
    inside = (wave >= wave_lowres[0]) & (wave <= wave_lowres[-1])
    np.testing.assert_allclose(((0.01 * wave_lowres) @ matrix)[inside], 0.01 * wave[inside], rtol=1e-12)
