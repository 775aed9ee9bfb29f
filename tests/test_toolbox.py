"""Physics checks of the spectroscopic toolbox on real SDSS spectra and noiseless synthetic galaxies."""

from __future__ import annotations

import re
import zipfile

import numpy as np
import pytest
from img2spec.dust import calzetti_transmission
from img2spec.io import read_sdss_spectrum
from img2spec.preprocessing import rebin_matrix
from img2spec.templates import library_from_wheel
from img2spec.toolbox import build_basis, fit_firefly, fit_ppxf, measure_indices, measure_redshift, prepare_templates
from img2spec.toolbox.indices import dn4000, to_lick_resolution
from img2spec.toolbox.spectra import broaden_velocity, pixel_edges, rebin, to_rest_frame
from img2spec.units import air_to_vacuum, vacuum_to_air

AGES = [0.1, 0.2, 0.4, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 10.0, 12.0]
OBS_WAVE = np.arange(4000.0, 8500.0)


@pytest.fixture(scope="module")
def m11(mangadap_wheel):
    return library_from_wheel(mangadap_wheel, "m11_miles")


@pytest.fixture(scope="module")
def templates_sdss(m11):
    return prepare_templates(m11, 2000.0, ages_gyr=AGES)


@pytest.fixture(scope="module")
def templates_r1500(m11):
    return prepare_templates(m11, 1500.0, ages_gyr=AGES)


def _sdss(path):
    spectrum = read_sdss_spectrum(path)
    return spectrum.wave, spectrum.flux, np.where(spectrum.bad, 0.0, spectrum.ivar), spectrum.meta


def synthetic_galaxy(
    templates, age_gyr: float, metallicity: float, sigma: float, ebv: float, z: float, snr: float = 1e4
):
    """A noiseless single-population galaxy on the img2spec grid (observed vacuum, 1 Å, R = 1500)."""
    a = int(np.argmin(np.abs(templates.age_gyr - age_gyr)))
    m = int(np.argmin(np.abs(templates.metallicity - metallicity)))
    rest = broaden_velocity(templates.flux[:, a, m], sigma, templates.velscale) * calzetti_transmission(
        templates.wave, ebv
    )
    observed_wave = air_to_vacuum(templates.wave) * (1 + z)
    inside = (OBS_WAVE > observed_wave[0] + 5) & (OBS_WAVE < observed_wave[-1] - 5)
    flux, _ = rebin(observed_wave, rest.ravel(), np.ones(rest.size), OBS_WAVE[inside])
    flux /= np.median(flux)
    return (
        OBS_WAVE[inside],
        flux,
        np.full(flux.size, snr**2),
        np.log10(templates.age_gyr[a] * 1e9),
        templates.metallicity[m],
    )


def test_ppxf_sigma_of_ngc3522_matches_sdss(ngc3522_path, templates_sdss):
    wave, flux, ivar, meta = _sdss(ngc3522_path)
    fit = fit_ppxf(wave, flux, ivar, meta["z"], templates_sdss, bootstrap=3, resolving_power=2000.0)
    assert fit["sigma_star"] == pytest.approx(meta["vdisp"], rel=0.05)
    assert abs(fit["velocity"]) < 30.0
    assert 0.5 < fit["chi2_per_pixel"] < 2.0
    assert 0 < fit["sigma_star_err"] < 10
    assert fit["log_age"] > 9.5  # an old S0


def _dap_lick(wave, flux, definition):
    """Worthey et al. (1994) equivalent width with fractional pixels: the DAP's way, written independently."""
    primary, blue, red = definition
    edges = pixel_edges(wave)

    def band_mean(lo, hi):
        w = np.asarray(rebin_matrix(edges, np.array([lo, hi])).todense()).ravel()
        return w @ flux / w.sum()

    blue_mid, red_mid = np.mean(blue), np.mean(red)
    slope = (band_mean(*red) - band_mean(*blue)) / (red_mid - blue_mid)
    continuum = band_mean(*blue) + slope * (wave - blue_mid)
    w = np.asarray(rebin_matrix(edges, np.array(primary)).todense()).ravel()
    return float(w @ (1 - flux / continuum))


def _dap_definitions(wheel):
    text = zipfile.ZipFile(wheel).read("mangadap/data/absorption_indices/lickindx.par").decode()
    found = {}
    for name, *numbers in re.findall(
        r"DAPABI\s+\d+\s+(\S+)\s+\{\s*(\S+)\s+(\S+)\s*\}\s+\{\s*(\S+)\s+(\S+)\s*\}\s+\{\s*(\S+)\s+(\S+)\s*\}", text
    ):
        v = list(map(float, numbers))
        found[name] = ((v[0], v[1]), (v[2], v[3]), (v[4], v[5]))
    return found


def test_lick_indices_of_ngc3522_match_the_dap_definitions(ngc3522_path, mangadap_wheel):
    wave, flux, ivar, meta = _sdss(ngc3522_path)
    ours = measure_indices(wave, flux, ivar, meta["z"], resolving_power=2000.0)
    rest = to_rest_frame(wave, flux, ivar, meta["z"], 2000.0)
    filled = np.interp(rest.wave, rest.wave[rest.good], rest.flux[rest.good])  # one bad pixel in Hβ's window
    lick = to_lick_resolution(rest.wave, filled, rest.fwhm)
    dap = _dap_definitions(mangadap_wheel)
    for ours_name, dap_name in (("Mg_b", "Mgb"), ("Fe5270", "Fe5270"), ("Fe5335", "Fe5335"), ("H_beta", "Hb")):
        assert ours[ours_name] == pytest.approx(_dap_lick(rest.wave, lick, dap[dap_name]), abs=0.1), ours_name
    assert 3.0 < ours["Mg_b"] < 5.0 and 1.5 < ours["Dn4000"] < 2.3


def test_dn4000_of_flat_and_power_law_spectra():
    wave = np.linspace(3700.0, 4300.0, 3000)
    assert dn4000(wave, 1.0 / wave**2) == pytest.approx(1.0, abs=1e-6)  # flat f_nu
    # flat f_lambda: f_nu ∝ λ², so Dn4000 is the ratio of the windows' mean λ²
    expected = ((4100**3 - 4000**3) / 100) / ((3950**3 - 3850**3) / 100)
    assert dn4000(wave, np.ones_like(wave)) == pytest.approx(expected, rel=1e-4)
    assert np.isnan(dn4000(wave[wave > 3900], np.ones((wave > 3900).sum())))


def test_sigma_correction_undoes_velocity_broadening(ngc3522_path, templates_sdss):
    wave, flux, ivar, meta = _sdss(ngc3522_path)
    fit = fit_ppxf(wave, flux, ivar, meta["z"], templates_sdss, bootstrap=0, resolving_power=2000.0)
    corrected = measure_indices(wave, flux, ivar, meta["z"], 2000.0, stellar_fit=fit)
    raw = measure_indices(wave, flux, ivar, meta["z"], 2000.0)
    assert corrected["H_beta_source"] == "stellar model"
    # at sigma ~ 100 km/s the Fe lines lose a few per cent of their strength to broadening
    for name in ("Mg_b", "Fe5270", "Fe5335"):
        assert 1.0 < corrected[f"{name}_sigma_correction"] < 1.2
        assert corrected[name] == pytest.approx(raw[name] * corrected[f"{name}_sigma_correction"])


@pytest.mark.parametrize(
    "age, metallicity, sigma, ebv", [(10.0, 0.0, 220.0, 0.05), (1.0, 0.0, 90.0, 0.2), (8.0, -0.3, 150.0, 0.1)]
)
def test_fitters_recover_a_noiseless_galaxy(templates_r1500, age, metallicity, sigma, ebv):
    wave, flux, ivar, log_age, metal = synthetic_galaxy(templates_r1500, age, metallicity, sigma, ebv, z=0.08)
    ppxf_fit = fit_ppxf(wave, flux, ivar, 0.08, templates_r1500, bootstrap=0)
    assert ppxf_fit["sigma_star"] == pytest.approx(sigma, rel=0.1)
    assert ppxf_fit["log_age"] == pytest.approx(log_age, abs=0.15)
    assert ppxf_fit["ebv"] == pytest.approx(ebv, abs=0.03)
    firefly = fit_firefly(wave, flux, ivar, 0.08, ppxf_fit["sigma_star"], templates_r1500, bootstrap=0)
    assert firefly["log_age"] == pytest.approx(log_age, abs=0.15)
    assert firefly["ebv"] == pytest.approx(ebv, abs=0.03)
    if age >= 5.0:
        assert ppxf_fit["metallicity"] == pytest.approx(metal, abs=0.1)
        assert firefly["metallicity"] == pytest.approx(metal, abs=0.1)


def test_bootstrap_errors_grow_with_noise(templates_r1500):
    wave, flux, _, _, _ = synthetic_galaxy(templates_r1500, 10.0, 0.0, 200.0, 0.05, z=0.1)
    rng = np.random.default_rng(1)
    errors = []
    for snr in (60.0, 15.0):
        noisy = flux + rng.normal(0, 1 / snr, flux.size)
        fit = fit_ppxf(wave, noisy, np.full(flux.size, snr**2), 0.1, templates_r1500, bootstrap=5)
        errors.append(fit["sigma_star_err"])
    assert errors[1] > 2 * errors[0]


def test_redshift_of_real_and_synthetic_spectra(ngc3522_path, miuscat, templates_r1500):
    wave, flux, ivar, meta = _sdss(ngc3522_path)
    keep = (wave > 3800) & (wave < 9200)
    basis = build_basis(miuscat, 2000.0, obs_range=(3800.0, 9200.0))
    found = measure_redshift(wave[keep], flux[keep], ivar[keep], basis)
    assert found["z"] == pytest.approx(meta["z"], abs=1e-4)
    basis = build_basis(miuscat, 1500.0)
    for z in (0.0613, 0.1234, 0.2401):
        wave, flux, ivar, _, _ = synthetic_galaxy(templates_r1500, 5.0, 0.0, 150.0, 0.1, z=z, snr=30.0)
        assert measure_redshift(wave, flux, ivar, basis)["z"] == pytest.approx(z, abs=3e-4)


def test_bad_spectra_raise_errors_naming_them(templates_r1500, miuscat):
    wave, flux, ivar, _, _ = synthetic_galaxy(templates_r1500, 5.0, 0.0, 150.0, 0.1, z=0.1)
    basis = build_basis(miuscat, 1500.0)
    with pytest.raises(ValueError, match="galaxy 42: no pixel"):
        measure_redshift(wave, flux, np.zeros_like(ivar), basis, name="galaxy 42")
    with pytest.raises(ValueError, match="galaxy 7: wave, flux and ivar"):
        to_rest_frame(wave, flux[:-3], ivar, 0.1, name="galaxy 7")
    with pytest.raises(ValueError, match="negative inverse variance"):
        fit_ppxf(wave, flux, -ivar, 0.1, templates_r1500, bootstrap=0)
    nan_flux = flux.copy()
    nan_flux[1000:1010] = np.nan  # NaN pixels are left out, not propagated
    assert np.isfinite(fit_ppxf(wave, nan_flux, ivar, 0.1, templates_r1500, bootstrap=0)["sigma_star"])


def test_interstellar_na_d_is_masked_and_sigma_recovered(templates_r1500):
    """A deep, narrow interstellar Na D doublet on a noiseless galaxy: with the default masks σ* comes back within 5%."""
    from img2spec.toolbox.stellar import FitMasks

    z, sigma = 0.08, 180.0
    wave, flux, _, _, _ = synthetic_galaxy(templates_r1500, 10.0, 0.0, sigma, 0.05, z=z)
    rest_air = vacuum_to_air(wave / (1 + z))
    width = 5890.0 / 1500.0 / 2.3548  # unresolved at R = 1500 [Å]
    for line in (5889.95, 5895.92):
        flux = flux * (1.0 - 0.45 * np.exp(-0.5 * ((rest_air - line) / width) ** 2))
    ivar = np.full(flux.size, 100.0**2)  # S/N 100, to let pPXF's clipping see a realistic residual
    masked = fit_ppxf(wave, flux, ivar, z, templates_r1500, bootstrap=0)
    assert masked["sigma_star"] == pytest.approx(sigma, rel=0.05)
    assert masked["n_masked"] > 0
    unmasked = fit_ppxf(wave, flux, ivar, z, templates_r1500, bootstrap=0, masks=FitMasks.none())
    assert abs(unmasked["sigma_star"] - sigma) > abs(masked["sigma_star"] - sigma)


def test_sky_line_windows_sit_at_observed_wavelengths(templates_r1500):
    from img2spec.toolbox.stellar import FitMasks

    z = 0.1
    wave, flux, ivar, _, _ = synthetic_galaxy(templates_r1500, 10.0, 0.0, 150.0, 0.05, z=z)
    rest = to_rest_frame(wave, flux, ivar, z, 1500.0, templates_r1500.velscale)
    masks = FitMasks(interstellar={}, sky_lines=(5577.34,), sky_half_width=8.0)
    masked_wave = rest.wave[masks.masked(rest)]
    assert masked_wave.min() * (1 + z) == pytest.approx(5577.34 - 8.0, abs=1.5)
    assert masked_wave.max() * (1 + z) == pytest.approx(5577.34 + 8.0, abs=1.5)


def test_bc03_populations_at_kinematics_from_m11(mangadap_wheel, miuscat, templates_r1500):
    """The default fits: σ* from M11-MILES, then populations from BC03 (3 Å, too broad for R = 1500 in the
    blue) at that σ*, on a galaxy made of a third library (MIUSCAT, the mock's)."""
    bc03 = library_from_wheel(mangadap_wheel, "bc03")
    assert bc03.flux.shape[0] == 40 and np.allclose(
        bc03.metallicities, np.log10(np.array([0.004, 0.008, 0.02, 0.05]) / 0.02)
    )
    assert bc03.ages[0] == pytest.approx(0.005) and bc03.ages[-1] == pytest.approx(10.0)
    templates = prepare_templates(bc03, 1500.0)
    assert templates.flux.shape[1:] == (10, 4)  # every age at every metallicity
    galaxy = prepare_templates(miuscat, 1500.0, ages_gyr=[8.0])
    wave, flux, ivar, _log_age, metallicity = synthetic_galaxy(galaxy, 8.0, 0.0, 60.0, 0.05, z=0.08, snr=100.0)
    alone = fit_ppxf(wave, flux, ivar, 0.08, templates, bootstrap=0)
    kinematics = fit_ppxf(wave, flux, ivar, 0.08, templates_r1500, bootstrap=0)
    populations = fit_ppxf(wave, flux, ivar, 0.08, templates, bootstrap=0, kinematics=kinematics)
    assert kinematics["sigma_star"] == pytest.approx(60.0, rel=0.1)
    assert alone["sigma_star"] < 0.8 * 60.0  # why the kinematics come from another library
    assert populations["sigma_star"] == kinematics["sigma_star"]
    assert populations["log_age"] > 9.5 and populations["metallicity"] == pytest.approx(metallicity, abs=0.2)


def test_population_fit_keeps_the_outliers_of_the_kinematics_fit_out(templates_r1500):
    """Cosmic-ray-like spikes clipped by the kinematics fit stay out of the population fit at fixed σ*,
    which clips nothing of its own, and the populations come back as without the spikes."""
    z = 0.08
    wave, flux, ivar, _log_age, _metallicity = synthetic_galaxy(templates_r1500, 5.0, 0.0, 150.0, 0.05, z=z, snr=50.0)
    spikes = np.array([900, 2100, 3300])
    spiked = flux.copy()
    spiked[spikes] *= 4.0
    kinematics = fit_ppxf(wave, spiked, ivar, z, templates_r1500, bootstrap=0)
    rest_spikes = vacuum_to_air(wave[spikes] / (1 + z))
    assert np.all(np.min(np.abs(kinematics["clipped_wave"][:, None] - rest_spikes[None, :]), axis=0) < 2.0)
    populations = fit_ppxf(wave, spiked, ivar, z, templates_r1500, bootstrap=0, kinematics=kinematics)
    assert populations["n_clipped"] == kinematics["n_clipped"]
    clean = fit_ppxf(wave, flux, ivar, z, templates_r1500, bootstrap=0, kinematics=kinematics)
    assert populations["metallicity"] == pytest.approx(clean["metallicity"], abs=0.02)
    assert populations["log_age"] == pytest.approx(clean["log_age"], abs=0.02)
