from __future__ import annotations

import numpy as np
import pytest
from img2spec import preprocessing as pp
from img2spec.io import Spectrum, read_sdss_spectrum


def _log_grid(lo=3800.0, hi=9200.0):
    k = np.arange(np.ceil(np.log10(lo) / 1e-4), np.floor(np.log10(hi) / 1e-4))
    return 10.0 ** (k * 1e-4)


def _spectrum(flux, wave=None, ivar=None, bad=None):
    wave = _log_grid() if wave is None else wave
    flux = np.broadcast_to(flux, wave.shape).astype(float)
    ivar = np.ones_like(wave) if ivar is None else ivar
    bad = np.zeros(wave.size, bool) if bad is None else bad
    return Spectrum(wave, flux.copy(), ivar, bad, {"specobjid": 1})


def _gaussian_line(wave, centre, fwhm):
    sigma = fwhm / pp.FWHM_PER_SIGMA
    return np.exp(-0.5 * ((wave - centre) / sigma) ** 2)


def _fwhm_from_moments(x, y):
    mean = np.sum(x * y) / np.sum(y)
    return pp.FWHM_PER_SIGMA * np.sqrt(np.sum((x - mean) ** 2 * y) / np.sum(y))


@pytest.mark.parametrize("centre", [4500.0, 5000.0, 7500.0])
def test_degraded_line_has_target_fwhm(centre):
    wave = _log_grid()
    line = _gaussian_line(wave, centre, centre / 2000.0)
    sigma_pix = pp.lsf_kernel_sigma_kms(2000, 1500) / pp.PIXEL_KMS
    smoothed = pp.gaussian_smooth(line, sigma_pix)[0]
    near = np.abs(wave - centre) < 30
    assert _fwhm_from_moments(wave[near], smoothed[near]) == pytest.approx(centre / 1500.0, rel=0.02)


def test_kernel_width_at_5000():
    sigma = pp.lsf_kernel_sigma_kms(2000, 1500)
    assert 5000 * sigma / pp.C_KMS * pp.FWHM_PER_SIGMA == pytest.approx(2.2048, abs=1e-3)
    with pytest.raises(ValueError):
        pp.lsf_kernel_sigma_kms(1500, 2000)


def test_rebinning_conserves_integrated_flux():
    wave = _log_grid()
    k = np.log10(wave) / 1e-4
    in_edges = 10 ** ((np.append(k, k[-1] + 1) - 0.5) * 1e-4)
    rng = np.random.default_rng(0)
    flux = 1 + rng.random(wave.size) + 5 * _gaussian_line(wave, 6563, 3.0)
    out_edges = np.arange(4000, 8501) - 0.5
    weights = pp.rebin_matrix(in_edges, out_edges)
    out = (weights.T @ flux) / np.asarray(weights.sum(0)).ravel()
    inside = (in_edges[:-1] >= out_edges[0]) & (in_edges[1:] <= out_edges[-1])
    integral_in = np.sum(flux[inside] * np.diff(in_edges)[inside])
    first, last = np.flatnonzero(inside)[[0, -1]]
    covered = (out_edges[:-1] >= in_edges[first]) & (out_edges[1:] <= in_edges[last + 1])
    partial = np.sum(out * np.diff(out_edges)) - np.sum(out[~covered] * np.diff(out_edges)[~covered])
    assert partial == pytest.approx(integral_in, rel=1e-3)
    total_in = np.sum(flux * np.diff(in_edges) * (in_edges[1:] > out_edges[0]) * (in_edges[:-1] < out_edges[-1]))
    assert np.sum(out * np.diff(out_edges)) == pytest.approx(total_in, rel=1e-3)


def test_real_spectrum_is_normalised_and_on_the_paper_grid(ngc3522_path):
    result, rejects = pp.preprocess_spectra([read_sdss_spectrum(ngc3522_path)])
    assert rejects == []
    assert result.flux.shape == (1, 4500) and result.flux_lowres.shape == (1, 563)
    assert result.wave[[0, -1]].tolist() == [4000.0, 8499.0]
    window = (result.wave >= 6900) & (result.wave <= 6950)
    assert np.exp(result.flux[0, window].astype(np.float64)).mean() == pytest.approx(1.0, abs=1e-6)
    # low-resolution pixels are 8-A means of the normalised linear flux
    linear = np.exp(result.flux[0])
    assert np.exp(result.flux_lowres[0, 10]) == pytest.approx(linear[80:88].mean(), rel=1e-5)
    assert result.wave_lowres[[0, -1]].tolist() == [4003.5, 8497.5]
    assert result.ivar[0, ~result.mask[0]].min() > 0


def test_bad_pixels_are_interpolated_and_masked():
    wave = _log_grid()
    flux = 2.0 + 0.0 * wave
    bad = np.abs(wave - 5500) < 10
    flux_with_junk = np.where(bad, 1e6, flux)
    result, rejects = pp.preprocess_spectra([_spectrum(flux_with_junk, bad=bad)])
    assert not rejects
    near = np.abs(result.wave - 5500) < 8
    assert result.mask[0, near].all()
    np.testing.assert_allclose(result.flux[0], 0.0, atol=1e-4)
    assert result.ivar[0, near].max() == 0


def test_unusable_spectra_are_rejected_with_reasons():
    wave = _log_grid()
    good = _spectrum(1.0)
    negative = _spectrum(-1.0)
    window_masked = _spectrum(1.0, bad=(wave > 6850) & (wave < 7000))
    off_grid = _spectrum(1.0, wave=np.linspace(3800, 9200, 3000))
    mostly_bad = _spectrum(1.0, bad=wave < 7500)
    result, rejects = pp.preprocess_spectra([negative, good, window_masked, off_grid, mostly_bad])
    assert result.index.tolist() == [1]
    reasons = dict(rejects)
    assert "not positive" in reasons[0]
    assert "normalisation window" in reasons[2]
    assert "log10-wavelength" in reasons[3]
    assert "masked" in reasons[4]


def test_low_flux_is_floored_and_masked():
    wave = _log_grid()
    flux = np.where(np.abs(wave - 5000) < 20, -5.0, 1.0)
    result, _ = pp.preprocess_spectra([_spectrum(flux)])
    low = np.abs(result.wave - 5000) < 10
    assert np.all(result.flux[0, low] == np.float32(np.log(1e-2)))
    assert result.mask[0, low].all() and not result.mask[0, ~(np.abs(result.wave - 5000) < 25)].any()


def test_inverse_variance_states_the_scatter_of_preprocessed_noise():
    """Smoothing to R 1500 and rebinning onto 1 Å pixels both change the noise: the output ivar must
    state the scatter that independent Gaussian noise of the input ivar actually has afterwards."""
    rng = np.random.default_rng(1)
    wave = 10 ** np.arange(np.log10(3700.0), np.log10(9200.0), 1e-4)
    sigma = 0.5 * (1 + 0.5 * np.sin(wave / 300.0))  # noise varying along the spectrum
    spectra = [
        Spectrum(wave, 10 + rng.normal(size=wave.size) * sigma, 1 / sigma**2, np.zeros(wave.size, bool), {})
        for _ in range(400)
    ]
    result, _ = pp.preprocess_spectra(spectra, pp.PreprocessingSettings.defaults())
    linear = np.exp(result.flux.astype(np.float64))
    ratio = linear.var(axis=0) / (1 / result.ivar.astype(np.float64)).mean(axis=0)
    assert np.median(ratio) == pytest.approx(1.0, abs=0.05)
    # without the smoothing's correlations the rebinned variance would be off by ~30% at the red end
    assert abs(ratio[-500:].mean() - 1) < 0.08 and abs(ratio[:500].mean() - 1) < 0.08


def test_shift_to_redshift_moves_a_line_and_back(ngc3522_path):
    """A spectrum moved by +3,000 km/s has its lines 1% redder; moving it back restores it."""
    result, _ = pp.preprocess_spectra([read_sdss_spectrum(ngc3522_path)])
    wave, log_flux = result.wave, result.flux.astype(np.float64)
    z = 0.0041
    z_moved = (1 + z) * (1 + 3000.0 / pp.C_KMS) - 1
    moved, invalid = pp.shift_to_redshift(wave, log_flux, z, z_moved)
    assert invalid[0, :40].all() and not invalid[0, 100:].any()  # the blue end has no source
    window = (wave > 5100) & (wave < 5250)  # Mg b: the absorption minimum moves by Δλ = λ v/c
    minimum = lambda f: wave[window][np.argmin(f[window])]
    assert minimum(moved[0]) - minimum(log_flux[0]) == pytest.approx(minimum(log_flux[0]) * 3000.0 / pp.C_KMS, abs=2.0)
    norm = (wave >= 6900) & (wave <= 6950)
    assert np.mean(np.exp(moved[0, norm])) == pytest.approx(np.mean(np.exp(log_flux[0, norm])), rel=1e-9)
    back, invalid_back = pp.shift_to_redshift(wave, np.nan_to_num(moved), z_moved, z)
    inner = ~invalid_back[0] & (wave > 4100)
    assert np.abs(back[0, inner] - log_flux[0, inner]).max() < 0.02
    same, _ = pp.shift_to_redshift(wave, log_flux, z, z)
    assert np.allclose(same, log_flux, atol=1e-12)
    nothing, all_invalid = pp.shift_to_redshift(wave, log_flux, np.nan, z)
    assert all_invalid.all() and np.isnan(nothing).all()


def test_rest_frame_normalisation_window_follows_the_redshift(ngc3522_path):
    spectrum = read_sdss_spectrum(ngc3522_path)
    settings = pp.PreprocessingSettings.defaults(norm_frame="rest")
    result, rejects = pp.preprocess_spectra([spectrum], settings)
    window = np.array(settings.norm_window) * (1 + spectrum.meta["z"])
    inside = (result.wave >= window[0]) & (result.wave <= window[1])
    assert not rejects and np.mean(np.exp(result.flux[0, inside])) == pytest.approx(1.0, rel=1e-6)
    no_z = spectrum._replace(meta={k: v for k, v in spectrum.meta.items() if k != "z"})
    _, rejects = pp.preprocess_spectra([no_z], settings)
    assert rejects and "no redshift" in rejects[0][1]


def test_rest_frame_grid_covers_the_observed_grid_at_every_redshift_of_the_range():
    wave = pp.PreprocessingSettings.defaults().wave
    rest = pp.rest_frame_wave(wave, (0.05, 0.15))
    assert rest[0] <= wave[0] / 1.15 and rest[-1] >= wave[-1] / 1.05 and rest[[0, -1]].tolist() == [3478.0, 8095.0]
    assert np.allclose(np.diff(rest), 1.0)


def test_rest_frame_spectrum_has_its_lines_at_their_rest_wavelengths_and_moves_back():
    """An emission line of rest wavelength 6564.61 Å and σ = 3 Å (rest) seen at z = 0.12: in the rest frame
    it peaks at 6564.61 Å with σ = 3 Å; the spectrum is normalised in the rest-frame window, pixels
    the observation does not reach are masked, a masked observed pixel masks the rest-frame pixels
    interpolated from it, and moving the rest-frame spectrum back to z = 0.12 restores the observation."""
    settings = pp.PreprocessingSettings.defaults()
    wave, z, centre, sigma = settings.wave, 0.12, 6564.61, 3.0
    rest_wave = pp.rest_frame_wave(wave, (0.05, 0.15))
    x = wave / (1 + z)
    linear = (x / 6000.0) ** -1.0 * (1 + 4.0 * np.exp(-0.5 * ((x - centre) / sigma) ** 2))
    observed = np.log(linear / linear[(wave >= 6900) & (wave <= 6950)].mean())[None]
    mask = np.zeros(observed.shape, bool)
    mask[0, 2000] = True  # 6000 Å observed → 5357.1 Å rest
    flux, rest_mask, lowres, lowres_mask = pp.rest_frame_spectra(
        wave, observed, mask, np.array([z]), rest_wave, settings.lowres_factor, settings.log_floor
    )
    near = np.abs(rest_wave - centre) < 15
    excess = np.exp(flux[0, near]) - np.exp(flux[0, near]).min()
    peak = np.sum(rest_wave[near] * excess) / excess.sum()
    width = np.sqrt(np.sum((rest_wave[near] - peak) ** 2 * excess) / excess.sum())
    assert peak == pytest.approx(centre, abs=0.05) and width == pytest.approx(sigma, rel=0.05)
    window = (rest_wave >= 6900) & (rest_wave <= 6950)
    assert np.mean(np.exp(flux[0, window])) == pytest.approx(1.0, rel=1e-6)
    reached = (rest_wave * (1 + z) >= wave[0]) & (rest_wave * (1 + z) <= wave[-1])
    assert np.array_equal(rest_mask[0] & ~reached, ~reached)
    assert rest_mask[0, np.abs(rest_wave - 6000.0 / (1 + z)) < 0.5].all()
    assert rest_mask[0, reached].sum() <= 2 and np.isfinite(flux).all()
    assert lowres.shape == (1, -(-rest_wave.size // settings.lowres_factor)) and lowres_mask[0, 0]
    back, invalid = pp.move_spectra(rest_wave, flux, 0.0, wave, z)
    assert not invalid.any() and np.abs(back - observed).max() < 2e-3
