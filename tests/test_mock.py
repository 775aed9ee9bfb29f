"""Physics checks of the mock SDSS survey (issue 3)."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd
import pytest
import speclite.filters
from astropy import units as u
from img2spec.cubes import open_cube_file
from img2spec.io import SAMPLE_COLUMNS, SurveyFiles, read_sdss_spectrum, spectrum_path
from img2spec.mock import population as pop
from img2spec.mock.products import generate
from img2spec.mock.render import (
    component_covariances,
    enclosed_fraction,
    petrosian_quantities,
    sersic_mixture,
    with_psf,
)
from img2spec.mock.spectra import OBSERVED_K0, OBSERVED_K1, redshift_and_broaden
from img2spec.mock.survey import MockSettings, MockSurvey
from img2spec.photometry import ab_maggies, nanomaggies_to_mag
from img2spec.spectral import (
    BPT_LINES,
    EMISSION_LINES_VACUUM,
    kauffmann03,
    kewley01,
    kewley01_oi,
    kewley01_sii,
    kewley06_oi,
    kewley06_sii,
    schawinski07,
)


@pytest.fixture(scope="module")
def bright_galaxies(mock_survey):
    gal = mock_survey.draw_candidates(1500, np.random.default_rng(11))
    keep = np.flatnonzero(mock_survey.select(gal))
    return {k: v[keep] for k, v in gal.items()}


def test_mixture_profiles_have_unit_flux_and_half_light_radius():
    for n in (1.0, 4.0):
        amp, sigma = sersic_mixture(n)
        assert amp.sum() == pytest.approx(1.0)
        half = np.sum(amp * -np.expm1(-0.5 / sigma**2))
        assert half == pytest.approx(0.5, abs=1e-6)


def test_enclosed_fraction_of_round_gaussian_is_analytic():
    cov = np.array([[[4.0, 0.0], [0.0, 4.0]]])
    assert enclosed_fraction(cov, np.array([3.0]))[0] == pytest.approx(1 - np.exp(-9 / 8), rel=1e-12)
    elongated = np.array([[[9.0, 0.0], [0.0, 0.25]]])
    rng = np.random.default_rng(0)
    samples = rng.multivariate_normal([0, 0], elongated[0], 400_000)
    assert enclosed_fraction(elongated, np.array([1.5]))[0] == pytest.approx(
        np.mean(np.hypot(*samples.T) < 1.5), abs=3e-3
    )


def test_petrosian_radii_of_exponential_disk():
    # a large exponential disk: Petrosian flux ≈ 99% of the total, R50 = R_e (Graham & Driver 2005)
    amp, cov = component_covariances(np.array([6.0]), np.array([1.0]), np.array([0.0]), 1.0)
    petro = petrosian_quantities([amp], [with_psf(cov, 0.01)], [np.array([1.0])])
    assert petro["petroFlux"][0] == pytest.approx(0.99, abs=0.01)
    assert petro["petroR50"][0] == pytest.approx(6.0, rel=0.02)


def test_redshift_and_broadening_are_exact():
    rest = np.zeros((1, 3000))
    rest[0, 1500] = 1.0
    k = np.arange(OBSERVED_K0, OBSERVED_K1 + 1)
    rest_k0 = 38170 - 1500
    out, covered = redshift_and_broaden(rest, rest_k0, np.array([0.1234]), np.array([180.0]), k)
    wave = 10 ** (k * 1e-4)
    centroid = np.sum(wave * out[0]) / out[0].sum()
    width = np.sqrt(np.sum((wave - centroid) ** 2 * out[0]) / out[0].sum()) / centroid * 299792.458
    assert centroid == pytest.approx(10 ** (38170e-4) * 1.1234, rel=2e-6)
    assert width == pytest.approx(180.0, rel=1e-3)
    assert out[0].sum() == pytest.approx(1.0, rel=1e-9)
    assert covered[0, np.argmax(out[0])]


def test_aperture_photometry_matches_magnitude_of_spectrum(mock_survey, bright_galaxies):
    """Noiseless images summed over the stamp against the total SED through speclite's filters."""
    gal = {k: v[:24] for k, v in bright_galaxies.items()}
    small = np.flatnonzero(gal["petroR90"] < 5.0)[:8]
    gal = {k: v[small] for k, v in gal.items()}
    cube, _ = mock_survey.images(gal, gal, np.random.default_rng(0), noiseless=True)
    image_mag = nanomaggies_to_mag(cube.sum(axis=(1, 2)))
    model = mock_survey.model
    wave = model.phot_wave
    filters = speclite.filters.load_filters("sdss2010-g", "sdss2010-r", "sdss2010-i")
    factor = 3.828e33 / (4 * np.pi * gal["dl_cm"] ** 2 * (1 + gal["z"]))
    from img2spec.dust import ccm_extinction
    from img2spec.mock.spectra import attenuated

    for i in range(len(small)):
        sed = 0.0
        for comp in pop.COMPONENTS:
            weights = model.ssp_weights(gal[f"{comp}_sfh"][i : i + 1], gal[f"{comp}_metallicity"][i : i + 1])
            sed = sed + attenuated(weights @ model.phot, wave, gal[f"{comp}_ebv"][i : i + 1])[0]
        obs_wave = wave * (1 + gal["z"][i])
        flux = sed * factor[i] * 10 ** (-0.4 * gal["ebv_mw"][i] * ccm_extinction(obs_wave))
        mags = filters.get_ab_magnitudes(flux * u.erg / u.s / u.cm**2 / u.AA, obs_wave * u.AA)
        expected = np.array([mags[f"sdss2010-{b}"][0] for b in "gri"])
        np.testing.assert_allclose(image_mag[i, 1:4], expected, atol=0.05)


def test_fiber_spectrum_matches_catalog_fiber_magnitude(mock_dir, mock_survey):
    catalog = pd.read_csv(mock_dir / "catalog.csv")
    offsets = []
    for row in catalog.itertuples():
        spec = read_sdss_spectrum(spectrum_path(mock_dir / "spectra", row.plate, row.mjd, row.fiberID))
        r = ab_maggies(spec.wave, spec.flux * 1e-17, mock_survey.filters, "r")[0] * 1e9
        offsets.append(nanomaggies_to_mag(r) - row.fiberMag_r)
    offsets = np.abs(offsets)
    assert np.median(offsets) < 0.02
    assert np.percentile(offsets, 90) < 0.05


def test_line_ratios_fall_on_the_intended_side_of_every_diagnostic_line():
    """Each component where Kewley et al. (2001, 2006) put it, in the [N II], [S II] and [O I] diagrams alike."""
    gal = pop.draw_galaxies(
        4000, np.geomspace(0.06, 17.8, 50), pop.PopulationSettings.defaults(), np.random.default_rng(5)
    )
    sf_y = gal["sf_log_oiii_hb"]
    assert np.all(sf_y < kauffmann03(gal["sf_log_nii_ha"]))
    assert np.all(gal["sf_log_nii_ha"] < 0.05)
    # a few per mille of SDSS star-forming galaxies are "ambiguous" in the other diagrams (Kewley et al. 2006)
    assert np.mean(sf_y < kewley01_sii(gal["sf_log_sii_ha"])) > 0.995 and np.all(gal["sf_log_sii_ha"] < 0.32)
    assert np.mean(sf_y < kewley01_oi(gal["sf_log_oi_ha"])) > 0.995 and np.all(gal["sf_log_oi_ha"] < -0.59)
    # the SF ridge lies 0.4 dex below the Kauffmann line with a 0.12 dex spread (Kewley et al. 2006, Fig. 1)
    offset = kauffmann03(gal["sf_log_nii_ha"]) - sf_y
    assert np.median(offset) == pytest.approx(0.4, abs=0.02) and np.std(offset) == pytest.approx(0.12, abs=0.02)

    types = np.array(pop.AGN_TYPES)[gal["agn_type"]]
    seyfert, liner_like = types == "seyfert", np.isin(types, ["liner", "retired"])
    assert seyfert.sum() > 50 and liner_like.sum() > 200
    x, y = gal["agn_log_nii_ha"], gal["agn_log_oiii_hb"]
    s2, o1 = gal["agn_log_sii_ha"], gal["agn_log_oi_ha"]
    assert np.all(y[seyfert | liner_like] > kewley01(x[seyfert | liner_like]))
    assert np.all(y[seyfert] > schawinski07(x[seyfert])) and np.all(y[liner_like] < schawinski07(x[liner_like]))
    # the [S II] and [O I] diagrams agree with the [N II] one on Seyfert against LINER
    assert np.mean(y[seyfert] > kewley06_sii(s2[seyfert])) > 0.97
    assert np.mean(y[liner_like] < kewley06_sii(s2[liner_like])) > 0.97
    assert np.mean(y[seyfert] > kewley06_oi(o1[seyfert])) > 0.97
    assert np.mean(y[liner_like] < kewley06_oi(o1[liner_like])) > 0.97
    assert np.all(gal["agn_ew_ha"][types == "none"] == 0) and np.all(gal["agn_ew_ha"][types != "none"] > 0)


@pytest.fixture(scope="module")
def selected_population(mock_survey):
    """About 3,000 galaxies of the default population through the main-sample cut, with their true classes."""
    survey = MockSurvey(mock_survey.model, MockSettings.defaults(), mock_survey.filters)
    rng = np.random.default_rng(2024)
    parts = []
    while sum(len(part["bpt_class"]) for part in parts) < 3000:
        candidates = survey.draw_candidates(2048, rng)
        keep = np.flatnonzero(survey.select(candidates))
        gal = {k: v[keep] for k, v in candidates.items()}
        spectra = survey.fiber_spectra(gal, rng)
        parts.append(
            {
                "log_mstar": gal["logmass"] + np.log10(pop.SURVIVING_MASS_FRACTION),
                "bt": gal["bt"],
                "quenched": gal["quenched"],
                "agn_type": np.array(pop.AGN_TYPES)[gal["agn_type"]],
                "age_lw": spectra["age_lw"],
                "bpt_class": spectra["bpt_class"],
                "bpt_detail": spectra["bpt_detail"],
                "ew_Halpha": spectra["ew_Halpha"],
                **{key: spectra[key] for key in spectra if key.startswith("flux_")},
            }
        )
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def test_class_fractions_are_those_of_the_papers_sdss_test_set(selected_population):
    """Passive / star-forming / AGN as in the paper's Table 2 (464 / 539 / 503 of 1,506), within ±0.05."""
    classes = selected_population["bpt_class"]
    for name, expected in (("passive", 464 / 1506), ("star-forming", 539 / 1506), ("AGN", 503 / 1506)):
        assert np.mean(classes == name) == pytest.approx(expected, abs=0.05), name


def test_agn_fraction_rises_with_mass_as_in_sdss(selected_population):
    """The AGN fraction in bins of stellar mass within 0.08 of :func:`sdss_agn_fraction` and rising by > 0.3."""
    log_mstar, agn = selected_population["log_mstar"], selected_population["bpt_class"] == "AGN"
    edges = np.arange(9.75, 11.26, 0.25)
    measured = []
    for lo, hi in itertools.pairwise(edges):
        in_bin = (log_mstar >= lo) & (log_mstar < hi)
        assert in_bin.sum() >= 150, (lo, in_bin.sum())
        measured.append(agn[in_bin].mean())
        expected = pop.sdss_agn_fraction(log_mstar[in_bin]).mean()
        assert measured[-1] == pytest.approx(expected, abs=0.08), (lo, measured[-1], expected)
    assert measured[-1] - measured[0] > 0.3


def test_composites_lie_between_the_lines_in_the_expected_share(selected_population):
    """Composites (between the Kauffmann and Kewley lines) are 30–60% of the paper's AGN class, as
    star formation plus a nucleus makes them (Kewley et al. 2006); pure star formation never lands there."""
    detail = selected_population["bpt_detail"]
    composite_share = np.mean(detail[selected_population["bpt_class"] == "AGN"] == "composite")
    assert 0.3 < composite_share < 0.6
    assert not np.any((detail == "composite") & (selected_population["agn_type"] == "none"))


def test_agn_depend_on_their_host_at_fixed_mass(selected_population):
    """At fixed mass, nuclei favour star-forming hosts with bulges (Kauffmann et al. 2003b; Lacerda et al.
    2020), and Seyferts have younger hosts than LINERs (Kewley et al. 2006)."""
    pop_ = selected_population
    mid = (pop_["log_mstar"] > 10.25) & (pop_["log_mstar"] < 10.75)
    nucleus = np.isin(pop_["agn_type"], ["seyfert", "liner"])
    with_bulge = mid & ~pop_["quenched"] & (pop_["bt"] > 0.25)
    pure_disk = mid & ~pop_["quenched"] & (pop_["bt"] < 0.08)
    assert with_bulge.sum() > 50 and pure_disk.sum() > 30
    assert nucleus[with_bulge].mean() > nucleus[pure_disk].mean() + 0.3
    quenched = mid & pop_["quenched"]
    assert (
        nucleus[~pop_["quenched"] & mid & (pop_["bt"] > 0.25)].mean()
        > 2 * nucleus[quenched & (pop_["bt"] > 0.25)].mean()
    )
    seyfert_age = np.median(pop_["age_lw"][pop_["agn_type"] == "seyfert"])
    liner_age = np.median(pop_["age_lw"][pop_["agn_type"] == "liner"])
    assert seyfert_age < liner_age - 0.1


def test_truth_and_toolbox_classifiers_agree_on_the_true_fluxes(selected_population):
    from img2spec.toolbox.lines import bpt_class as toolbox_bpt_class

    fluxes = {name: selected_population[f"flux_{name}"] for name in BPT_LINES}
    measured = np.ones(selected_population["bpt_class"].size, bool)
    classes = toolbox_bpt_class(fluxes, selected_population["ew_Halpha"], measured)
    np.testing.assert_array_equal(classes, selected_population["bpt_class"])


def _two_gaussian_fit(x, iterations=300):
    mu = np.percentile(x, [25, 75]).astype(float)
    sd = np.array([x.std(), x.std()]) / 2
    w = np.array([0.5, 0.5])
    for _ in range(iterations):
        dens = w * np.exp(-0.5 * ((x[:, None] - mu) / sd) ** 2) / sd
        resp = dens / dens.sum(1, keepdims=True)
        w = resp.mean(0)
        mu = (resp * x[:, None]).sum(0) / resp.sum(0)
        sd = np.sqrt((resp * (x[:, None] - mu) ** 2).sum(0) / resp.sum(0))
    return w, mu, sd


def test_u_minus_r_is_bimodal(mock_survey, bright_galaxies):
    flux = bright_galaxies["flux_nmgy"].sum(1)
    u_r = nanomaggies_to_mag(flux[:, 0]) - nanomaggies_to_mag(flux[:, 2])
    quenched = bright_galaxies["quenched"]
    weights, mu, sd = _two_gaussian_fit(u_r)
    separation = abs(mu[1] - mu[0]) / np.sqrt(0.5 * (sd[0] ** 2 + sd[1] ** 2))
    assert separation > 2.0, f"Ashman D = {separation:.2f} (means {mu}, widths {sd})"
    assert weights.min() > 0.15
    assert np.median(u_r[quenched]) > np.median(u_r[~quenched]) + 0.5


def test_velocity_dispersion_recovered_by_template_fit(mock_survey, bright_galaxies):
    from ppxf.ppxf import ppxf

    gal = bright_galaxies
    # quenched galaxies without a nucleus: their weak retired lines are masked below, as in any σ* fit
    no_nucleus = np.array(pop.AGN_TYPES)[gal["agn_type"]] == "retired"
    passive = np.flatnonzero((gal["bt"] > 0.7) & gal["quenched"] & no_nucleus & (gal["bulge_sigma"] > 90))[:8]
    assert passive.size >= 3
    sub = {k: v[passive] for k, v in gal.items()}
    spectra = mock_survey.fiber_spectra(sub, np.random.default_rng(1))
    model = mock_survey.model
    wave = 10 ** spectra["loglam"]
    checked_strictly = 0
    for i in range(passive.size):
        rest_ok = (wave / (1 + sub["z"][i]) > model.rest_wave[0] + 50) & (wave / (1 + sub["z"][i]) < 7000)
        galaxy = spectra["model"][i, rest_ok]
        galaxy = galaxy / np.median(galaxy)
        templates = model.spec.T / np.median(model.spec)
        # ppxf's systemic velocity of the templates: c ln(λ_template[0] / λ_galaxy[0]), rest frame
        dv = 299792.458 * np.log(model.rest_wave[0] / (wave[rest_ok][0] / (1 + sub["z"][i])))
        # as in any σ* fit, ±800 km/s around the emission lines are left out
        rest = wave[rest_ok] / (1 + sub["z"][i])
        near_line = np.any(
            np.abs(rest[:, None] / np.array([EMISSION_LINES_VACUUM[name] for name in pop.MOCK_LINES]) - 1)
            < 800 / 299792.458,
            axis=1,
        )
        fit = ppxf(
            templates,
            galaxy,
            np.ones_like(galaxy),
            299792.458 * np.log(10) * 1e-4,
            [0, 150],
            moments=2,
            degree=-1,
            mdegree=8,
            vsyst=dv,
            goodpixels=np.flatnonzero(~near_line),
            quiet=True,
        )
        # one Gaussian matches the LOSVD second moment where one component dominates the light
        tolerance = 0.05 if spectra["bulge_light_fraction"][i] > 0.8 else 0.10
        assert fit.sol[1] == pytest.approx(spectra["sigma_star"][i], rel=tolerance)
        checked_strictly += spectra["bulge_light_fraction"][i] > 0.8
    assert checked_strictly >= 2


def test_same_seed_gives_identical_survey(mock_survey, tmp_path):
    settings = dataclasses.replace(mock_survey.settings, n_galaxies=6, batch_size=6, seed=9)
    survey = MockSurvey(mock_survey.model, settings, mock_survey.filters)
    generate(survey, SurveyFiles.in_folder(tmp_path / "a"))
    generate(survey, SurveyFiles.in_folder(tmp_path / "b"))
    assert (tmp_path / "a" / "catalog.csv").read_text() == (tmp_path / "b" / "catalog.csv").read_text()
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "a" / "truth.parquet"), pd.read_parquet(tmp_path / "b" / "truth.parquet")
    )
    with open_cube_file(tmp_path / "a" / "cubes.npz") as a, open_cube_file(tmp_path / "b" / "cubes.npz") as b:
        np.testing.assert_array_equal(a.read(slice(0, 6)), b.read(slice(0, 6)))
    files = sorted((tmp_path / "a" / "spectra").rglob("*.fits"))
    assert len(files) == 6
    for path in files:
        twin = tmp_path / "b" / path.relative_to(tmp_path / "a")
        np.testing.assert_array_equal(read_sdss_spectrum(path).flux, read_sdss_spectrum(twin).flux)
    other = MockSurvey(mock_survey.model, dataclasses.replace(settings, seed=10), mock_survey.filters)
    generate(other, SurveyFiles.in_folder(tmp_path / "c"))
    assert (tmp_path / "c" / "catalog.csv").read_text() != (tmp_path / "a" / "catalog.csv").read_text()


def test_mock_outputs_are_read_like_sdss(mock_dir):
    catalog = pd.read_csv(mock_dir / "catalog.csv")
    truth = pd.read_parquet(mock_dir / "truth.parquet")
    assert len(catalog) == len(truth) == 48
    assert tuple(catalog.columns) == SAMPLE_COLUMNS  # the columns of the sample query, in its order
    for column in ("age_lw", "metallicity_lw", "ebv", "sigma_star", "sfr", "logmass", "bpt_class", "morphology"):
        assert column in truth.columns
    assert catalog["z"].between(0.0499, 0.1501).all()
    assert (catalog["petroMag_r"] - catalog["extinction_r"] <= 17.77 + 1e-9).all()
    with open_cube_file(mock_dir / "cubes.npz") as cubes:
        np.testing.assert_array_equal(cubes.specobjid, catalog["specObjID"])
        assert cubes.read(np.arange(3)).shape == (3, 5, 64, 64)
    row = catalog.iloc[0]
    spec = read_sdss_spectrum(spectrum_path(mock_dir / "spectra", row.plate, row.mjd, row.fiberID))
    assert spec.meta["specobjid"] == row.specObjID and spec.meta["z"] == pytest.approx(row.z)
    assert spec.wave[0] == pytest.approx(10**3.5798, rel=1e-6) and spec.wave[-1] == pytest.approx(10**3.9638, rel=1e-6)
    assert 5 < np.median(spec.flux[~spec.bad] * np.sqrt(spec.ivar[~spec.bad])) < 60


def test_a_selection_nothing_passes_stops_naming_the_keys(mock_survey, tmp_path):
    population = dataclasses.replace(mock_survey.settings.population, petro_r_limit=12.0, logmass_max=9.5)
    settings = dataclasses.replace(mock_survey.settings, n_galaxies=4, batch_size=4, population=population)
    with pytest.raises(ValueError, match="kept none of .* mock.population.petro_r_limit"):
        generate(MockSurvey(mock_survey.model, settings, mock_survey.filters), SurveyFiles.in_folder(tmp_path / "none"))


def test_mock_figures_are_drawn_from_the_survey_files(mock_dir, tmp_path):
    from img2spec.mock.figures import mock_figures

    figures = [tmp_path / name for name in ("examples.png", "colour_mass.png", "bpt.png", "classes.png")]
    mock_figures(SurveyFiles.in_folder(mock_dir), *figures)
    assert all(figure.stat().st_size > 10_000 for figure in figures)
