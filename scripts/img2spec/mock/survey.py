"""A mock SDSS survey: catalog, spec-lite spectra and ugriz image cubes of the same galaxies, plus truth.

The fiber spectrum and the images are two observations of one model galaxy: the spectrum is the
light of bulge and disk that a 3″ fiber collects after seeing, the images are the same components
convolved with each band's PSF, so colours and colour gradients carry the information on age,
metallicity, dust, lines and velocity dispersion that the spectrum shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..dust import calzetti_k, ccm_extinction
from ..io import (
    BANDS,
    NODATA_BIT,
)
from ..photometry import FilterSet, ab_maggies, asinh_mag, line_maggies, mag_to_nanomaggies, sdss_filters
from ..settings import Settings
from ..spectral import (
    BPT_LINES,
    EMISSION_LINES_VACUUM,
    FWHM_PER_SIGMA,
    PASSIVE_EW_HALPHA,
    bpt_class,
    bpt_ratios,
    composite_or_agn,
)
from ..templates import SSPLibrary
from ..units import C_ANGSTROM_PER_S, MPC_CM, air_to_vacuum
from . import population as pop
from .render import component_covariances, enclosed_fraction, petrosian_quantities, render_gaussians, with_psf
from .spectra import (
    OBSERVED_K0,
    OBSERVED_K1,
    SpectralModel,
    attenuated,
    line_profiles,
    luminosity_to_sdss_flux,
    observed_loglam,
    redshift_and_broaden,
)

#: Kennicutt (1998): SFR [M_sun/yr] = 7.9e-42 L(Hα) [erg/s] for a Salpeter IMF.
KENNICUTT_HA = 7.9e-42

from .observation import BRIGHTSKY_BIT, SKY_LINE_FLUX, SKY_LINES_AIR, ObservationSettings


@dataclass(frozen=True, kw_only=True)
class MockSettings(Settings):
    """Size, seed and physics of a mock survey."""

    SECTION: ClassVar[str] = "mock"

    n_galaxies: int
    seed: int
    batch_size: int
    population: pop.PopulationSettings
    observation: ObservationSettings


@dataclass
class MockSurvey:
    """Generator of mock galaxies with a fixed template library, filters and settings."""

    model: SpectralModel
    settings: MockSettings
    filters: FilterSet = field(default_factory=sdss_filters)

    @classmethod
    def from_library(cls, library: SSPLibrary, settings: MockSettings) -> MockSurvey:
        return cls(SpectralModel.from_library(library, settings.observation.resolving_power), settings)

    # ------------------------------------------------------------------ photometry
    def component_photometry(self, gal: dict) -> np.ndarray:
        """Total flux of each component in each band [nanomaggies], (n, 2, 5), MW extinction included."""
        model, z = self.model, gal["z"]
        obs_wave = np.arange(2900.0, 11200.0, 4.0)
        factor = luminosity_to_sdss_flux(gal["dl_cm"], z) * 1e-17
        mw = 10 ** (-0.4 * gal["ebv_mw"][:, None] * ccm_extinction(obs_wave)[None, :])
        rest = obs_wave[None, :] / (1 + z[:, None])
        position = (rest - model.phot_wave[0]) / (model.phot_wave[1] - model.phot_wave[0])
        lo = np.clip(np.floor(position).astype(int), 0, model.phot_wave.size - 2)
        t = position - lo
        out = np.empty((z.size, 2, len(BANDS)))
        for c, comp in enumerate(pop.COMPONENTS):
            weights = self.model.ssp_weights(gal[f"{comp}_sfh"], gal[f"{comp}_metallicity"])
            sed = attenuated(weights @ model.phot, model.phot_wave, gal[f"{comp}_ebv"])
            observed = np.take_along_axis(sed, lo, 1) * (1 - t) + np.take_along_axis(sed, lo + 1, 1) * t
            out[:, c] = ab_maggies(obs_wave, observed * factor[:, None] * mw, self.filters) * 1e9
        return out

    def geometry(self, gal: dict) -> dict:
        """Gaussian-mixture covariances [″²] of bulge and disk on the sky, without PSF."""
        arcsec_per_kpc = gal["arcsec_per_kpc"]
        amp_b, cov_b = component_covariances(gal["bulge_re_kpc"] * arcsec_per_kpc, gal["bulge_q"], gal["pa_deg"], 4.0)
        amp_d, cov_d = component_covariances(gal["disk_re_kpc"] * arcsec_per_kpc, gal["disk_q"], gal["pa_deg"], 1.0)
        return {"amp": (amp_b, amp_d), "cov": (cov_b, cov_d)}

    def aperture_fractions(self, geometry: dict, radius: float, seeing: float) -> np.ndarray:
        """Fraction of each component's light inside a centred circular aperture, (n, 2)."""
        return np.stack(
            [
                enclosed_fraction(with_psf(cov, seeing), radius) @ amp
                for amp, cov in zip(geometry["amp"], geometry["cov"])
            ],
            axis=1,
        )

    # ------------------------------------------------------------------ draws
    def draw_candidates(self, n: int, rng: np.random.Generator) -> dict:
        """Galaxies with photometry that may pass the magnitude limit.

        Two conservative cuts save work on galaxies that cannot pass: before photometry, those
        fainter than the limit even at log M/L_r = −0.4 (per mass formed; the population never
        goes below −0.05); before the costly Petrosian measurement, those whose total r magnitude
        is 0.5 mag fainter than the limit (a Petrosian flux is ≥ 80% of the total for n ≤ 4).
        An empty dict when no galaxy survives them.
        """
        gal = pop.draw_galaxies(n, self.model.ages, self.settings.population, rng)
        cosmo = self.settings.population.cosmology
        brightest_r = 4.65 - 2.5 * (gal["logmass"] + 0.4) + cosmo.distmod(gal["z"]).value
        possible = brightest_r <= self.settings.population.petro_r_limit + 0.5
        if not possible.any():
            return {}
        gal = {key: value[possible] for key, value in gal.items()}
        n = possible.sum()
        gal["dl_cm"] = cosmo.luminosity_distance(gal["z"]).value * MPC_CM
        gal["arcsec_per_kpc"] = cosmo.arcsec_per_kpc_proper(gal["z"]).value
        gal["ebv_mw"] = rng.uniform(0.01, 0.06, n)
        gal["extinction_r"] = 2.751 * gal["ebv_mw"]  # Schlafly & Finkbeiner (2011), SDSS r
        gal["flux_nmgy"] = self.component_photometry(gal)
        r = BANDS.index("r")
        total_r = asinh_mag(gal["flux_nmgy"].sum(1))[:, r] - gal["extinction_r"]
        bright = total_r <= self.settings.population.petro_r_limit + 0.5
        if not bright.any():
            return {}
        gal = {key: value[bright] for key, value in gal.items()}
        geom = self.geometry(gal)
        psf_r = self.settings.observation.psf_fwhm[r]
        petro = petrosian_quantities(
            list(geom["amp"]),
            [with_psf(cov, psf_r) for cov in geom["cov"]],
            [gal["flux_nmgy"][:, 0, r], gal["flux_nmgy"][:, 1, r]],
        )
        gal.update(petro)
        gal["petroMag_r"] = asinh_mag(np.stack([petro["petroFlux"]] * len(BANDS), -1))[:, r]
        return gal

    def select(self, gal: dict) -> np.ndarray:
        """Main-sample selection: extinction-corrected Petrosian r ≤ limit."""
        return gal["petroMag_r"] - gal["extinction_r"] <= self.settings.population.petro_r_limit

    # ------------------------------------------------------------------ spectra
    def fiber_spectra(self, gal: dict, rng: np.random.Generator) -> dict:
        """Noiseless and observed fiber spectra and their truth, on the SDSS log grid.

        Returns a dict with ``loglam`` (n_pix,), ``model`` (n, n_pix, noiseless, 1e-17 units),
        ``flux``, ``ivar``, ``and_mask``, ``sky`` and per-galaxy truth arrays.  Light-weighted
        truth uses the fiber light at rest 5000–6000 Å: ``age_lw`` (log yr), ``metallicity_lw``,
        ``ebv_lw``, and ``sigma_star``, the second moment √(Σ w σ²) of the bulge and disk LOSVDs.
        A single-Gaussian fit returns less than that second moment when the two differ strongly
        (≈8% less for 229 and 76 km/s with 86% bulge light).
        """
        obs = self.settings.observation
        model = self.model
        n = gal["z"].size
        loglam = observed_loglam()
        wave = 10.0**loglam
        k = np.arange(OBSERVED_K0, OBSERVED_K1 + 1)
        geom = self.geometry(gal)
        fiber = self.aperture_fractions(geom, obs.fiber_radius, obs.fiber_seeing)
        factor = luminosity_to_sdss_flux(gal["dl_cm"], gal["z"])
        rest_wave = model.rest_wave
        window = (rest_wave > 5000) & (rest_wave < 6000)
        continuum = np.zeros((n, k.size))
        covered = np.ones((n, k.size), bool)
        ssp_light = np.zeros((n, model.spec.shape[0]))
        component_light = np.zeros((n, 2))
        for c, comp in enumerate(pop.COMPONENTS):
            weights = model.ssp_weights(gal[f"{comp}_sfh"], gal[f"{comp}_metallicity"])
            scale = fiber[:, c] * factor
            rest = attenuated(weights @ model.spec, rest_wave, gal[f"{comp}_ebv"]) * scale[:, None]
            observed, ok = redshift_and_broaden(rest, model.rest_k0, gal["z"], gal[f"{comp}_sigma"], k)
            continuum += observed
            covered &= ok
            # light of each SSP in the fiber at rest 5000–6000 Å, for light-weighted truth
            transmission = 10 ** (-0.4 * gal[f"{comp}_ebv"][:, None] * calzetti_k(rest_wave[window]).mean())
            light = weights * model.spec[:, window].mean(axis=1)[None, :] * (scale[:, None] * transmission)
            ssp_light += light
            component_light[:, c] = light.sum(1)
        continuum *= 10 ** (-0.4 * gal["ebv_mw"][:, None] * ccm_extinction(wave)[None, :])

        lines = self.emission_lines(gal, fiber, continuum, wave, rng)
        noiseless = continuum + lines.pop("profile")
        out = self.observe_spectra(noiseless, covered, wave, rng)
        ages = np.tile(model.ages, model.metallicities.size)
        metals = np.repeat(model.metallicities, model.ages.size)
        light = ssp_light / ssp_light.sum(1, keepdims=True)
        comp_w = component_light / component_light.sum(1, keepdims=True)
        out.update(lines)
        out.update(
            loglam=loglam,
            model=noiseless,
            fiber_fraction=fiber,
            age_lw=light @ np.log10(ages * 1e9),
            metallicity_lw=light @ metals,
            ebv_lw=comp_w[:, 0] * gal["bulge_ebv"] + comp_w[:, 1] * gal["disk_ebv"],
            bulge_light_fraction=comp_w[:, 0],
            sigma_star=np.sqrt(comp_w[:, 0] * gal["bulge_sigma"] ** 2 + comp_w[:, 1] * gal["disk_sigma"] ** 2),
        )
        return out

    def emission_lines(self, gal, fiber, continuum, wave, rng) -> dict:
        """Nebular (star formation) and AGN lines in the fiber; profiles and per-line truth."""
        obs = self.settings.observation
        n = gal["z"].size
        names = list(pop.MOCK_LINES)
        rest = np.array([EMISSION_LINES_VACUUM[name] for name in names])
        centre = rest[None, :] * (1 + gal["z"][:, None])
        sf = pop.line_ratios(gal["sf_log_nii_ha"], gal["sf_log_oiii_hb"], gal["sf_log_sii_ha"], gal["sf_log_oi_ha"])
        agn = pop.line_ratios(
            gal["agn_log_nii_ha"], gal["agn_log_oiii_hb"], gal["agn_log_sii_ha"], gal["agn_log_oi_ha"]
        )
        # star formation follows the disk light in the fiber; Hα from Kennicutt (1998)
        sf_ha = gal["sfr"] / KENNICUTT_HA / (4 * np.pi * gal["dl_cm"] ** 2) / 1e-17 * fiber[:, 1]
        ebv_gas = gal["disk_ebv"] / 0.44  # Calzetti (2000): stars see 0.44 of the gas reddening
        sf_flux = np.stack([sf[name] for name in names], 1) * sf_ha[:, None]
        sf_flux *= 10 ** (-0.4 * ebv_gas[:, None] * calzetti_k(rest)[None, :])
        # AGN strength as rest-frame EW(Hα) against the observed fiber continuum
        ha_pix = np.argmin(np.abs(wave[None, :] - centre[:, names.index("Halpha")][:, None]), axis=1)
        cont_ha = continuum[np.arange(n), ha_pix]
        agn_ha = gal["agn_ew_ha"] * (1 + gal["z"]) * cont_ha
        agn_flux = np.stack([agn[name] for name in names], 1) * agn_ha[:, None]
        mw = 10 ** (-0.4 * gal["ebv_mw"][:, None] * ccm_extinction(centre))
        sf_flux, agn_flux = sf_flux * mw, agn_flux * mw
        # the whole galaxy's lines for its photometry: SF lines spread like the disk, AGN lines are
        # a point source of which the fiber sees the PSF's central part
        psf_sigma = obs.fiber_seeing / FWHM_PER_SIGMA
        point_in_fiber = -np.expm1(-0.5 * (obs.fiber_radius / psf_sigma) ** 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            sf_total = np.where(fiber[:, 1:2] > 0, sf_flux / fiber[:, 1:2], 0.0)
        to_nmgy = 1e-17 * 1e9
        line_sf_nmgy = line_maggies(centre, sf_total, self.filters) * to_nmgy
        line_agn_nmgy = line_maggies(centre, agn_flux / point_in_fiber, self.filters) * to_nmgy
        inst = self.model.instrument_sigma_kms
        ones = np.ones(len(names))
        profile = line_profiles(np.log10(wave), centre, np.hypot(gal["sf_sigma_gas"], inst)[:, None] * ones, sf_flux)
        profile += line_profiles(np.log10(wave), centre, np.hypot(gal["agn_sigma_gas"], inst)[:, None] * ones, agn_flux)
        total = sf_flux + agn_flux
        truth = {f"flux_{name}": total[:, j] for j, name in enumerate(names)}
        truth["ew_Halpha"] = total[:, names.index("Halpha")] / cont_ha / (1 + gal["z"])
        truth["profile"] = profile
        truth["line_sf_nmgy"] = line_sf_nmgy
        truth["line_agn_nmgy"] = line_agn_nmgy
        x, y = bpt_ratios({name: total[:, names.index(name)] for name in BPT_LINES})
        truth["bpt_class"] = bpt_class(x, y, truth["ew_Halpha"] >= PASSIVE_EW_HALPHA)
        truth["bpt_detail"] = composite_or_agn(x, y, truth["bpt_class"])
        return truth

    def observe_spectra(self, noiseless, covered, wave, rng) -> dict:
        """Add calibration error, noise, sky residuals and flagged pixels as SDSS spectra show them."""
        obs = self.settings.observation
        n = noiseless.shape[0]
        # sky through the fiber: continuum interpolated between bands plus bright lines
        area = np.pi * obs.fiber_radius**2
        sky_fnu = mag_to_nanomaggies(np.array(obs.sky_mag)) * 3.631e-29 * area  # erg/s/cm²/Hz
        sky_flam = sky_fnu * C_ANGSTROM_PER_S / self.filters.effective_wave**2 / 1e-17
        sky = np.exp(np.interp(wave, self.filters.effective_wave, np.log(sky_flam)))
        sky_centres = air_to_vacuum(SKY_LINES_AIR)
        sigma_sky = np.full(sky_centres.size, self.model.instrument_sigma_kms)
        sky_lines = line_profiles(np.log10(wave), sky_centres[None, :], sigma_sky[None, :], SKY_LINE_FLUX[None, :])[0]
        sky = sky + sky_lines
        # effective gain so that S/N per pixel at 6200 Å is snr_r18 for a fiber magnitude r = 18
        f18 = mag_to_nanomaggies(18.0) * 3.631e-29 * C_ANGSTROM_PER_S / 6200.0**2 / 1e-17
        sky_6200 = np.interp(6200.0, wave, sky)
        gain = obs.snr_r18**2 * (f18 + sky_6200) / f18**2
        # SDSS's plateSN2 is (S/N)² per pixel at a fiber magnitude of about 20.2; here at 6200 Å in r
        f20 = mag_to_nanomaggies(20.2) * 3.631e-29 * C_ANGSTROM_PER_S / 6200.0**2 / 1e-17
        plate_sn2 = gain * f20**2 / (f20 + sky_6200)
        x = (np.log10(wave) - np.log10(wave).mean()) / np.ptp(np.log10(wave)) * 2
        calib = 1 + obs.calibration_error * (rng.normal(size=(n, 1)) * x + rng.normal(size=(n, 1)) * (x**2 - 1 / 3))
        variance = (np.clip(noiseless, 0, None) + sky[None, :]) / gain
        residual = (rng.normal(0, obs.sky_residual, (n, sky_centres.size)) * SKY_LINE_FLUX) @ np.stack(
            [
                line_profiles(np.log10(wave), sky_centres[None, j : j + 1], sigma_sky[None, :1], np.ones((1, 1)))[0]
                for j in range(sky_centres.size)
            ]
        )
        flux = noiseless * calib + rng.normal(size=noiseless.shape) * np.sqrt(variance) + residual
        and_mask = np.where(covered, 0, NODATA_BIT).astype(np.int64)
        and_mask |= np.where(sky_lines > 3 * (sky - sky_lines), BRIGHTSKY_BIT, 0)[None, :]
        flagged = rng.random(noiseless.shape) < obs.bad_pixel_rate
        and_mask |= np.where(flagged, 1 << 18, 0)  # FULLREJECT
        ivar = np.where(and_mask == 0, 1.0 / variance, 0.0)
        flux = np.where(covered, flux, 0.0)
        return {
            "flux": flux,
            "ivar": ivar,
            "and_mask": and_mask,
            "sky": np.broadcast_to(sky, flux.shape),
            "plate_sn2": np.full(n, plate_sn2),
        }

    # ------------------------------------------------------------------ images
    def images(
        self, gal: dict, others: dict, rng: np.random.Generator, noiseless: bool = False
    ) -> tuple[np.ndarray, dict]:
        """ugriz cubes (n, 64, 64, 5) in nanomaggies per pixel.

        ``gal["flux_nmgy"]`` (n, 2, 5) gives bulge and disk fluxes, lines included; an optional
        ``gal["agn_nmgy"]`` (n, 5) adds the AGN's lines as a central point source.  Unless
        ``noiseless``, neighbours, stars, sky and photon noise are added.
        """
        obs = self.settings.observation
        n = gal["z"].size
        size, pix = obs.image_size, obs.pixel_arcsec
        geom = self.geometry(gal)
        centre = size / 2 + rng.uniform(-0.5, 0.5, (n, 2))
        cube = np.zeros((n, size, size, len(BANDS)))
        fiber_flux = np.zeros((n, len(BANDS)))
        for b, psf in enumerate(obs.psf_fwhm):
            for c in range(2):
                amp, cov = geom["amp"][c], with_psf(geom["cov"][c], psf)
                image = render_gaussians(np.broadcast_to(amp, cov.shape[:2]), cov, centre, size, pix)
                cube[..., b] += gal["flux_nmgy"][:, c, b, None, None] * image
                fiber_flux[:, b] += gal["flux_nmgy"][:, c, b] * (enclosed_fraction(cov, obs.fiber_radius) @ amp)
            if "agn_nmgy" in gal:
                point = render_gaussians(np.ones((n, 1)), with_psf(np.zeros((n, 1, 2, 2)), psf), centre, size, pix)
                cube[..., b] += gal["agn_nmgy"][:, b, None, None] * point
                psf_sigma = psf / FWHM_PER_SIGMA
                fiber_flux[:, b] += gal["agn_nmgy"][:, b] * -np.expm1(-0.5 * (obs.fiber_radius / psf_sigma) ** 2)
        if noiseless:
            return cube.astype(np.float32), {"fiber_flux": fiber_flux}
        extras = self._neighbours_and_stars(n, others, centre, rng)
        cube += extras.pop("cube")
        noise_sigma = self._pixel_noise_sigma()
        variance = noise_sigma[None, None, None, :] ** 2 + np.clip(cube, 0, None) / np.array(obs.electrons_per_nmgy)
        cube += rng.normal(size=cube.shape) * np.sqrt(variance)
        extras["fiber_flux"] = fiber_flux
        extras["noise_sigma"] = noise_sigma
        return cube.astype(np.float32), extras

    def _pixel_noise_sigma(self) -> np.ndarray:
        """Sky noise per pixel [nmgy] giving the 5σ point-source depth with a Gaussian PSF."""
        obs = self.settings.observation
        psf_sigma_pix = np.array(obs.psf_fwhm) / FWHM_PER_SIGMA / obs.pixel_arcsec
        nea = 4 * np.pi * psf_sigma_pix**2  # noise-equivalent area [pixels]
        return mag_to_nanomaggies(np.array(obs.depth_5sigma)) / 5 / np.sqrt(nea)

    def _neighbours_and_stars(self, n, others, centre, rng) -> dict:
        """Fainter galaxies (colours of another mock galaxy) and stars (blackbody colours) in the cube."""
        obs = self.settings.observation
        size, pix = obs.image_size, obs.pixel_arcsec
        cube = np.zeros((n, size, size, len(BANDS)))
        has_neighbour = rng.random(n) < obs.neighbour_probability
        has_star = rng.random(n) < obs.star_probability
        wave = np.arange(2900.0, 11200.0, 4.0)
        for kind, present in (("neighbour", has_neighbour), ("star", has_star)):
            idx = np.flatnonzero(present)
            if idx.size == 0:
                continue
            angle = rng.uniform(0, 2 * np.pi, idx.size)
            radius = rng.uniform(8, 30, idx.size)
            pos = centre[idx] + np.stack([np.cos(angle), np.sin(angle)], 1) * radius[:, None]
            if kind == "neighbour":
                donor = rng.integers(0, others["flux_nmgy"].shape[0], idx.size)
                colours = others["flux_nmgy"][donor].sum(1)
                colours = colours / colours[:, BANDS.index("r")][:, None]
                r_flux = mag_to_nanomaggies(rng.uniform(17.0, 21.0, idx.size))
                re = rng.uniform(0.8, 4.0, idx.size)
                amp, cov = component_covariances(
                    re, rng.uniform(0.3, 1.0, idx.size), rng.uniform(0, 180, idx.size), 1.0
                )
            else:
                temperature = rng.uniform(3500, 9000, idx.size)
                planck = 1 / (wave[None, :] ** 5 * np.expm1(1.4388e8 / (wave[None, :] * temperature[:, None])))
                colours = ab_maggies(wave, planck, self.filters)
                colours = colours / colours[:, BANDS.index("r")][:, None]
                r_flux = mag_to_nanomaggies(rng.uniform(15.0, 21.0, idx.size))
                amp, cov = np.ones(1), np.zeros((idx.size, 1, 2, 2))
            for b, psf in enumerate(obs.psf_fwhm):
                image = render_gaussians(np.broadcast_to(amp, cov.shape[:2]), with_psf(cov, psf), pos, size, pix)
                cube[idx, :, :, b] += (r_flux * colours[:, b])[:, None, None] * image
        return {"cube": cube, "has_neighbour": has_neighbour, "has_star": has_star}
