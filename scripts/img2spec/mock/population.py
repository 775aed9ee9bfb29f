"""Physical properties of mock SDSS galaxies, drawn from published scaling relations.

Each galaxy is a bulge (de Vaucouleurs, Sérsic n = 4) plus an exponential disk, each with its own
star-formation history, metallicity and dust.  All draws are vectorised over galaxies; the random
generator is passed in, so equal seeds give equal galaxies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from astropy.cosmology import FlatLambdaCDM

from ..settings import Settings
from ..spectral import DOUBLETS, kauffmann03, kewley01, schawinski07
from ..units import G_KPC_KMS2_PER_MSUN

#: Emission lines of the mock: names of :data:`img2spec.spectral.EMISSION_LINES_VACUUM`, whose rest wavelengths they take.
MOCK_LINES = ("Hbeta", "OIII_4959", "OIII_5007", "OI_6300", "NII_6548", "Halpha", "NII_6584", "SII_6717", "SII_6731")

COMPONENTS = ("bulge", "disk")


@dataclass(frozen=True, kw_only=True)
class PopulationSettings(Settings):
    """Parameters of the galaxy population; defaults reproduce SDSS main-sample galaxies.

    Attributes
    ----------
    z_min, z_max : float
        Redshift range (the paper's 0.05 < z ≤ 0.15).
    petro_r_limit : float
        Petrosian r magnitude limit of the SDSS main galaxy sample (Strauss et al. 2002).
    logmass_min, logmass_max : float
        Range of log10 stellar mass formed [M_sun] drawn from the mass function.
    quench_logmass, quench_width : float
        Mass formed [log M_sun] at which half the galaxies are quenched, and the width of the
        transition (Baldry et al. 2006; Peng et al. 2010; their present-day masses are ≈0.6 of the
        mass formed).
    agn_fraction_max, agn_logmass, agn_mass_width : float
        Active nuclei (Seyferts and LINERs): the highest fraction of galaxies with one, the present-day
        stellar mass [log M_sun] where half of it is reached and the width of that rise [dex]; see
        :func:`draw_emission_lines`.
    agn_quenched_factor : float
        How much rarer an active nucleus is in a quenched host than in a star-forming one of the same
        mass and bulge fraction.
    retired_log_ew_halpha : float
        Mean log10 EW(Hα) [Å] of the LINER-like emission of quenched galaxies without an active
        nucleus, ionised by their evolved stars ("retired", Cid Fernandes et al. 2011).
    burst_fraction : float
        Fraction of star-forming galaxies with a recent burst.
    h0, omega_m : float
        Flat ΛCDM cosmology.
    """

    SECTION: ClassVar[str] = "mock.population"

    z_min: float
    z_max: float
    petro_r_limit: float
    logmass_min: float
    logmass_max: float
    quench_logmass: float
    quench_width: float
    agn_fraction_max: float
    agn_logmass: float
    agn_mass_width: float
    agn_quenched_factor: float
    retired_log_ew_halpha: float
    burst_fraction: float
    h0: float
    omega_m: float

    @property
    def cosmology(self) -> FlatLambdaCDM:
        return FlatLambdaCDM(H0=self.h0, Om0=self.omega_m)


def sample_from_density(grid: np.ndarray, density: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws from a density tabulated on ``grid``, by inverting its trapezoid-rule CDF."""
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(grid))])
    return np.interp(rng.random(n) * cdf[-1], cdf, grid)


def draw_redshift(n: int, settings: PopulationSettings, rng: np.random.Generator) -> np.ndarray:
    """Redshifts uniform in comoving volume between ``z_min`` and ``z_max``."""
    z = np.linspace(settings.z_min, settings.z_max, 512)
    return sample_from_density(z, settings.cosmology.differential_comoving_volume(z).value, n, rng)


def draw_logmass(n: int, settings: PopulationSettings, rng: np.random.Generator) -> np.ndarray:
    """log10 stellar mass from the double-Schechter mass function of Baldry et al. (2012).

    M* = 10^10.66 M_sun, φ1* = 3.96e-3, α1 = −0.35, φ2* = 0.79e-3, α2 = −1.47.
    """
    logm = np.linspace(settings.logmass_min, settings.logmass_max, 1024)
    x = 10.0 ** (logm - 10.66)
    phi = np.log(10.0) * np.exp(-x) * (3.96e-3 * x ** (1 - 0.35) + 0.79e-3 * x ** (1 - 1.47))
    return sample_from_density(logm, phi, n, rng)


def shen_size_kpc(logmass: np.ndarray, early: bool) -> np.ndarray:
    """Median half-light radius [kpc] of Shen et al. (2003), eqs. 17–18.

    Early types: R = 2.88e-6 M^0.56; late types: R = 0.1 M^0.14 (1 + M/3.98e10)^0.25.
    """
    m = 10.0 ** np.asarray(logmass)
    if early:
        return 2.88e-6 * m**0.56
    return 0.1 * m**0.14 * (1 + m / 3.98e10) ** (0.39 - 0.14)


def stellar_metallicity(logmass: np.ndarray) -> np.ndarray:
    """Median [M/H] versus stellar mass, a tanh fit to the Gallazzi et al. (2005) relation."""
    return -0.25 + 0.33 * np.tanh((np.asarray(logmass) - 10.2) / 0.6)


def delayed_tau_mass_in_bins(age_edges: np.ndarray, formation_age: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Mass fraction formed in each stellar-age bin by SFR(t) ∝ t e^(−t/τ).

    Parameters
    ----------
    age_edges : ndarray, (n_bins + 1,)
        Edges of the stellar-age bins [Gyr], increasing from 0.
    formation_age : ndarray, (n,)
        Age of the oldest stars, i.e. time since star formation began [Gyr].
    tau : ndarray, (n,)
        e-folding time [Gyr].

    Returns
    -------
    ndarray, (n, n_bins)
        Fractions summing to 1 per galaxy.
    """

    # the cumulative mass formed by time t is τ² − τ(t + τ) e^(−t/τ); an age a ↔ t = T − a
    def formed_by(t: np.ndarray) -> np.ndarray:
        t = np.clip(t, 0.0, None)
        return tau[:, None] ** 2 - tau[:, None] * (t + tau[:, None]) * np.exp(-t / tau[:, None])

    cumulative = formed_by(formation_age[:, None] - age_edges[None, :])
    mass = cumulative[:, :-1] - cumulative[:, 1:]
    return mass / mass.sum(axis=1, keepdims=True)


def age_bin_edges(ages: np.ndarray) -> np.ndarray:
    """Edges between log-spaced SSP ages [Gyr]; the first bin starts at 0 so that stars younger
    than the youngest template are represented by it."""
    mids = np.sqrt(ages[1:] * ages[:-1])
    return np.concatenate([[0.0], mids, [ages[-1] * np.sqrt(ages[-1] / ages[-2])]])


def draw_galaxies(
    n: int, ssp_ages: np.ndarray, settings: PopulationSettings, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Draw ``n`` galaxies' intrinsic properties.

    Parameters
    ----------
    n : int
    ssp_ages : ndarray
        Ages of the SSP library [Gyr]: star-formation histories are binned onto them.
    settings : PopulationSettings
    rng : numpy.random.Generator

    Returns
    -------
    dict of ndarray
        Per galaxy: ``z``, ``logmass`` (formed), ``quenched``, ``bt`` (bulge-to-total mass), per
        component ``{c}_mass``, ``{c}_re_kpc``, ``{c}_q`` (axis ratio), ``{c}_sfh`` (n, n_ages) mass
        per SSP age [M_sun], ``{c}_metallicity``, ``{c}_ebv``, ``{c}_sigma`` [km/s]; ``pa_deg``,
        ``cos_incl``, ``sfr`` [M_sun/yr, mean over 100 Myr] and the emission-line parameters of
        :func:`draw_emission_lines`.
    """
    s = settings
    cosmo = s.cosmology
    z = draw_redshift(n, s, rng)
    logmass = draw_logmass(n, s, rng)
    universe_age = cosmo.age(z).value
    p_quench = 1.0 / (1.0 + np.exp(-(logmass - s.quench_logmass) / s.quench_width))
    quenched = rng.random(n) < p_quench

    # bulge fraction: high for quenched galaxies, growing with mass for star-forming ones
    bt_sf = np.clip(0.05 + 0.25 * (logmass - 9.5) / 2.0, 0.03, 0.4)
    bt = np.where(
        quenched,
        rng.beta(6.0, 2.5, n),
        np.clip(rng.beta(2.0, 2.0 / bt_sf - 2.0 + 1e-9), 0.0, 0.9),
    )
    bt = np.clip(bt, 0.01, 0.98)
    out: dict[str, np.ndarray] = {"z": z, "logmass": logmass, "quenched": quenched, "bt": bt}
    mass = 10.0**logmass
    out["bulge_mass"] = bt * mass
    out["disk_mass"] = (1 - bt) * mass
    out["bulge_re_kpc"] = shen_size_kpc(np.log10(out["bulge_mass"]), early=True) * 10 ** rng.normal(0, 0.12, n)
    out["disk_re_kpc"] = shen_size_kpc(logmass, early=False) * 10 ** rng.normal(0, 0.15, n)
    # the disk never hides inside its bulge
    out["disk_re_kpc"] = np.maximum(out["disk_re_kpc"], 1.2 * out["bulge_re_kpc"])
    cos_incl = rng.random(n)
    out["cos_incl"] = cos_incl
    # oblate disk of intrinsic thickness 0.15 seen at inclination i (Holmberg 1958)
    out["disk_q"] = np.sqrt(cos_incl**2 + 0.15**2 * (1 - cos_incl**2))
    out["bulge_q"] = rng.uniform(0.6, 1.0, n)
    out["pa_deg"] = rng.uniform(0, 180, n)

    # star-formation histories: delayed-τ per component, ages binned on the SSP grid
    edges = age_bin_edges(ssp_ages)
    oldest = universe_age - 0.3
    # bulges formed early and fast (Thomas et al. 2005: τ ≲ 1 Gyr for massive spheroids)
    bulge_t0 = np.minimum(rng.uniform(9.5, 13.0, n), oldest)
    bulge_tau = rng.uniform(0.2, 0.8, n)
    # quenched disks stopped forming stars long ago (sSFR ≲ 1e-12 /yr today, Salim et al. 2007)
    disk_t0 = np.minimum(np.where(quenched, rng.uniform(8.0, 12.5, n), rng.uniform(7.0, 12.5, n)), oldest)
    disk_tau = np.where(quenched, rng.uniform(0.5, 1.2, n), rng.uniform(3.0, 12.0, n))
    for comp, t0, tau in (("bulge", bulge_t0, bulge_tau), ("disk", disk_t0, disk_tau)):
        fractions = delayed_tau_mass_in_bins(edges, t0, tau)
        out[f"{comp}_sfh"] = fractions * out[f"{comp}_mass"][:, None]
    burst = (~quenched) & (rng.random(n) < s.burst_fraction)
    burst_age = 10 ** rng.uniform(np.log10(0.07), 0, n)
    burst_bin = np.clip(np.searchsorted(edges, burst_age) - 1, 0, ssp_ages.size - 1)
    burst_mass = rng.uniform(0.01, 0.08, n) * out["disk_mass"] * burst
    out["disk_sfh"][np.arange(n), burst_bin] += burst_mass
    out["burst_mass_fraction"] = burst_mass / mass
    young = np.clip((0.1 - edges[:-1]) / np.diff(edges), 0.0, 1.0)  # share of each bin in the last 100 Myr
    out["sfr"] = (out["bulge_sfh"] + out["disk_sfh"]) @ young / 1e8

    met = stellar_metallicity(logmass) + rng.normal(0, 0.1, n)
    out["bulge_metallicity"] = met + 0.05
    out["disk_metallicity"] = met - 0.05

    # Calzetti E(B−V)_star: grows with mass and inclination for star-forming disks
    disk_ebv = np.where(
        quenched,
        rng.exponential(0.02, n),
        (0.10 + 0.06 * (logmass - 10.0) + 0.12 * (1 - cos_incl)) * 10 ** rng.normal(0, 0.15, n),
    )
    out["disk_ebv"] = np.clip(disk_ebv, 0.0, 0.6)
    out["bulge_ebv"] = np.clip(np.where(quenched, rng.exponential(0.015, n), 0.5 * disk_ebv), 0.0, 0.6)

    # velocity dispersions: virial estimate for the bulge (M_dyn = 5 R_e σ²/G, Cappellari et al.
    # 2006) with dynamical mass 1.5× the stellar mass formed; a thick-disk value for the disk
    virial = G_KPC_KMS2_PER_MSUN * 1.5 * out["bulge_mass"] / (5.0 * out["bulge_re_kpc"])
    out["bulge_sigma"] = np.clip(np.sqrt(virial) * 10 ** rng.normal(0, 0.04, n), 40.0, 400.0)
    out["disk_sigma"] = np.clip(30.0 + 20.0 * (logmass - 9.0) + rng.normal(0, 8, n), 25.0, 120.0)

    out.update(draw_emission_lines(logmass, bt, quenched, rng, s))
    return out


#: Names of the truth's ``agn_type`` codes: no LINER-like or nuclear emission, a Seyfert nucleus, a LINER
#: nucleus, or LINER-like emission of a retired galaxy ionised by its evolved stars.
AGN_TYPES = ("none", "seyfert", "liner", "retired")
#: Fraction of the stellar mass formed that survives to z ≈ 0.1 (Bruzual & Charlot 2003, Chabrier IMF,
#: populations older than a few Gyr): turns the mass formed into the present-day stellar mass that
#: SDSS catalogues quote.
SURVIVING_MASS_FRACTION = 0.6
#: Rise of the retired galaxies' mean log EW(Hα) per dex of stellar mass: the share of quenched galaxies
#: with LINER-like lines grows with mass (Kauffmann et al. 2003b, Sect. 4.1: the AGN fraction, which in
#: the paper's scheme includes them, keeps rising above 10^10.75 M_sun, where almost all galaxies are quenched).
RETIRED_EW_MASS_SLOPE = 0.6


def sdss_agn_fraction(log_mstar: np.ndarray) -> np.ndarray:
    """Fraction of SDSS main-sample galaxies the paper's BPT scheme calls AGN, against stellar mass.

    "AGN" as in the paper (Sect. 5.7, Table 2): EW(Hα) ≥ 1 Å, the four lines present and above the
    Kauffmann et al. (2003) line, so composites and LINERs count.  The shape follows Kauffmann et al.
    (2003b, MNRAS 346, 1055; Sect. 4.1 and Fig. 5, read by eye: AGN hosts are almost exclusively
    above 10^10 M_sun, and about half the galaxies above 10^11 M_sun host one); its level is set so that the
    main sample's mass function gives the paper's 503 of 1,506 (33%).

    Parameters
    ----------
    log_mstar : ndarray
        Present-day stellar mass [log M_sun].

    Returns
    -------
    ndarray
        The fraction, 0.02 at 10^9.5 M_sun rising to 0.55 at 10^11.25 M_sun.
    """
    return 0.02 + 0.53 / (1.0 + np.exp(-(np.asarray(log_mstar) - 10.45) / 0.22))


def draw_emission_lines(
    logmass: np.ndarray, bt: np.ndarray, quenched: np.ndarray, rng: np.random.Generator, settings: PopulationSettings
) -> dict[str, np.ndarray]:
    """Emission-line parameters of star formation and of LINER-like or nuclear (AGN) emission.

    Every galaxy may carry two components whose fluxes add in the fiber, so that composites arise as
    they do in SDSS, from star formation and an AGN seen together (Kewley et al. 2006, Sect. 5;
    Kauffmann et al. 2003b), and lie between the Kauffmann et al. (2003) and Kewley et al. (2001) lines.

    - **Star formation** (its Hα follows the SFR, added by the survey): [N II]/Hα rises with mass and
      saturates as the gas metallicity does (Tremonti et al. 2004; Kewley & Ellison 2008); the
      galaxies lie along the SF ridge of the BPT diagram 0.4 dex below the Kauffmann et al. (2003)
      line with a spread of 0.12 dex (the "left wing" of Kewley et al. 2006, Fig. 1; Brinchmann et al.
      2008 measure the distance from that ridge).  [S II]/Hα and [O I]/Hα follow the gas metallicity,
      below the Kewley et al. (2001) starburst lines of those diagrams.
    - **An active nucleus** with probability ``agn_fraction_max`` × a logistic rise in present-day
      stellar mass (midpoint ``agn_logmass``, width ``agn_mass_width``; Kauffmann et al. 2003b:
      "AGN reside almost exclusively in massive galaxies") × a bulge term that rises linearly from 0
      at B/T 0.02 to 1 at B/T 0.22 (AGN hosts have the concentrations of early types, Kauffmann et al.
      2003b; Sab–Sb spirals and earlier are preferred, Lacerda et al. 2020) × ``agn_quenched_factor``
      in quenched hosts (AGN ages lie between the blue cloud and the red sequence, Lacerda et al.
      2020).  Seyferts are the stronger AGN and live in younger hosts (Kauffmann et al. 2003b; Kewley
      et al. 2006, Sect. 6), so a nucleus in a star-forming host is a Seyfert with probability 0.6, in
      a quenched host 0.15; the rest are LINERs.
    - **Retired galaxies**: a quenched galaxy without a nucleus still shows LINER-like lines ionised
      by its post-AGB stars (Stasińska et al. 2008; Cid Fernandes et al. 2011), with log EW(Hα)
      ~ N(``retired_log_ew_halpha`` + :data:`RETIRED_EW_MASS_SLOPE` (log M* − 10.5), 0.3): the
      lower mode of the SDSS EW(Hα) distribution, mostly below 3 Å (Cid Fernandes et al. 2011, Sect. 3).

    EW(Hα) of the nuclear component against the fiber continuum follows the WHAN classes of Cid
    Fernandes et al. (2011): Seyferts ("strong AGN", EW > 6 Å) log EW ~ N(1.0, 0.3), LINERs ("weak
    AGN", 3–6 Å) N(0.55, 0.2).  Seyferts lie above the Kewley et al. (2001) and Schawinski et al. (2007)
    lines, LINERs between them, and their [S II] and [O I] ratios on the same sides of the Kewley et al.
    (2006) Seyfert/LINER lines of those diagrams.

    Returns
    -------
    dict of ndarray
        ``sf_log_{nii,oiii,sii,oi}_*`` ratios, ``sf_sigma_gas`` [km/s]; ``agn_type`` (codes of
        :data:`AGN_TYPES`), ``agn_log_*`` ratios, ``agn_ew_ha`` [Å, 0 where ``agn_type`` is 0] and
        ``agn_sigma_gas`` [km/s].
    """
    s = settings
    n = logmass.size
    log_mstar = logmass + np.log10(SURVIVING_MASS_FRACTION)
    out: dict[str, np.ndarray] = {}

    n2_sf = -0.28 - 0.45 * np.exp(-(logmass - 9.8) / 0.8) + rng.normal(0, 0.06, n)
    n2_sf = np.clip(n2_sf, -1.2, -0.2)
    out["sf_log_nii_ha"] = n2_sf
    below_ridge = np.clip(rng.normal(0.4, 0.12, n), 0.05, None) - 0.4
    out["sf_log_oiii_hb"] = kauffmann03(n2_sf) - 0.4 - below_ridge
    # a higher ionisation parameter raises [O III]/Hβ and lowers [S II]/Hα (Kewley et al. 2019, Sect. 4)
    out["sf_log_sii_ha"] = -0.4 + 0.5 * (n2_sf + 0.4) + 0.5 * below_ridge + rng.normal(0, 0.05, n)
    out["sf_log_oi_ha"] = -1.5 + 0.5 * (n2_sf + 0.4) + rng.normal(0, 0.1, n)
    out["sf_sigma_gas"] = np.clip(rng.normal(45, 10, n), 20, 90)

    bulge_term = np.clip((bt - 0.02) / 0.2, 0.0, 1.0)
    mass_term = 1.0 / (1.0 + np.exp(-(log_mstar - s.agn_logmass) / s.agn_mass_width))
    host_term = np.where(quenched, s.agn_quenched_factor, 1.0)
    nucleus = rng.random(n) < s.agn_fraction_max * mass_term * bulge_term * host_term
    seyfert = nucleus & (rng.random(n) < np.where(quenched, 0.15, 0.6))
    liner = nucleus & ~seyfert
    retired = quenched & ~nucleus
    out["agn_type"] = np.select([seyfert, liner, retired], [1, 2, 3], 0)

    n2_sey = rng.uniform(-0.2, 0.3, n)
    o3_sey = np.maximum(kewley01(n2_sey), schawinski07(n2_sey)) + rng.uniform(0.1, 0.45, n)
    n2_lin = rng.uniform(0.0, 0.4, n)
    o3_lin = np.clip(rng.uniform(-0.4, 0.3, n), kewley01(n2_lin) + 0.1, schawinski07(n2_lin) - 0.05)
    liner_like = liner | retired
    out["agn_log_nii_ha"] = np.where(liner_like, n2_lin, n2_sey)
    out["agn_log_oiii_hb"] = np.where(liner_like, o3_lin, o3_sey)
    out["agn_log_sii_ha"] = np.where(liner_like, 0.0, -0.2) + rng.normal(0, 0.07, n)
    out["agn_log_oi_ha"] = np.where(liner_like, -0.6, -1.0) + rng.normal(0, 0.08, n)
    log_ew = np.select(
        [seyfert, liner, retired],
        [
            rng.normal(1.0, 0.3, n),
            rng.normal(0.55, 0.2, n),
            rng.normal(s.retired_log_ew_halpha + RETIRED_EW_MASS_SLOPE * (log_mstar - 10.5), 0.3, n),
        ],
        -np.inf,
    )
    out["agn_ew_ha"] = 10.0**log_ew
    out["agn_sigma_gas"] = rng.uniform(150, 300, n)
    return out


def line_ratios(log_nii_ha, log_oiii_hb, log_sii_ha, log_oi_ha) -> dict[str, np.ndarray]:
    """Line fluxes relative to Hα = 1 for the given diagnostic ratios (intrinsic, Case B Hα/Hβ = 2.86)."""
    hb = np.full_like(np.asarray(log_nii_ha, float), 1 / 2.86)
    oiii = hb * 10 ** np.asarray(log_oiii_hb)
    nii = 10 ** np.asarray(log_nii_ha)
    sii = 10 ** np.asarray(log_sii_ha)
    return {
        "Hbeta": hb,
        "OIII_5007": oiii,
        "OIII_4959": oiii / DOUBLETS["OIII_5007"][1],
        "OI_6300": 10 ** np.asarray(log_oi_ha),
        "Halpha": np.ones_like(hb),
        "NII_6584": nii,
        "NII_6548": nii / DOUBLETS["NII_6584"][1],
        "SII_6717": sii * 1.4 / 2.4,
        "SII_6731": sii * 1.0 / 2.4,
    }
