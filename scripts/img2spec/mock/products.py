"""The mock survey's on-disk products: catalog, spec-lite files and cube file as SDSS writes them, plus the truth.

:func:`generate` draws galaxies in batches (:class:`img2spec.mock.survey.MockSurvey`), keeps those the
sample cuts select, and writes them through the same layouts the real path reads
(:class:`img2spec.io.SurveyFiles`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from ..cubes import CUBE_SIZE, write_cube_archive
from ..io import (
    BANDS,
    SAMPLE_COLUMNS,
    SpecLiteWriter,
    SurveyFiles,
    atomic_output,
    encode_specobjid,
    spectrum_path,
)
from ..photometry import asinh_mag
from ..spectral import (
    LOG10_STEP,
)
from ..units import C_KMS
from . import population as pop
from .observation import ObservationSettings
from .survey import MockSettings, MockSurvey


def _catalog_and_truth(
    gal, spectra, extras, first_index, rng, obs: ObservationSettings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """SDSS-like catalog rows (Appendix B of the paper) and the truth table of a batch."""
    n = gal["z"].size
    index = first_index + np.arange(n)
    plate = 3000 + index // 600
    fiber = 1 + index % 600
    mjd = 55000 + (plate - 3000)
    specobjid = np.array([encode_specobjid(p, f, m) for p, f, m in zip(plate, fiber, mjd)], dtype=np.int64)
    total = gal["flux_nmgy"].sum(1) + gal["agn_nmgy"]
    sigma = extras["noise_sigma"]
    # photometric errors from sky noise over the measuring aperture
    model_area = np.pi * (2 * gal["petroR50"] / obs.pixel_arcsec) ** 2
    fiber_area = np.pi * (obs.fiber_radius / obs.pixel_arcsec) ** 2
    model_obs = total + rng.normal(size=total.shape) * sigma * np.sqrt(model_area)[:, None]
    fiber_obs = extras["fiber_flux"] + rng.normal(size=total.shape) * sigma * np.sqrt(fiber_area)
    bt = gal["bt"]
    p_el = np.clip(1 / (1 + np.exp(-(bt - 0.55) / 0.08)) + rng.normal(0, 0.1, n), 0, 1)
    p_cs = np.clip(1 - p_el - rng.uniform(0, 0.1, n), 0, 1)
    z_err = np.full(n, 1.5e-5)
    vdisp_err = 0.05 * spectra["sigma_star"] + 5.0
    ra = rng.uniform(120, 240, n)
    dec = np.rad2deg(np.arcsin(rng.uniform(0, np.sin(np.deg2rad(60)), n)))
    catalog = {
        "specObjID": specobjid,
        "objID": 1237660000000000000 + index,
        "plate": plate,
        "mjd": mjd,
        "fiberID": fiber,
        "ra": ra,
        "dec": dec,
        "z": gal["z"] + rng.normal(0, 1, n) * z_err,
        "zErr": z_err,
        "velDisp": spectra["sigma_star"] + rng.normal(0, 1, n) * vdisp_err,
        "velDispErr": vdisp_err,
        "firstRelease": np.full(n, "DR8"),
        "programname": np.full(n, "legacy"),
        "instrument": np.full(n, "SDSS"),
        "run2d": np.full(n, "26"),
        "plateSN2": spectra["plate_sn2"],
    }
    # the mock renders one light profile for all bands, so the Petrosian radii are the same in each
    for band in BANDS:
        catalog[f"petroRad_{band}"] = gal["petroRad"]
        catalog[f"petroR90_{band}"] = gal["petroR90"]
    catalog["petroMag_r"] = gal["petroMag_r"]
    for b, band in enumerate(BANDS):
        catalog[f"fiberMag_{band}"] = asinh_mag(fiber_obs)[:, b]
        catalog[f"modelMag_{band}"] = asinh_mag(model_obs)[:, b]
        catalog[f"cModelMag_{band}"] = asinh_mag(model_obs)[:, b]
    log_mass = gal["logmass"] + rng.normal(0, 0.1, n)
    catalog.update(
        extinction_r=gal["extinction_r"],
        # Galaxy Zoo: the mock has no merger votes; the flags follow the 0.8 debiased-vote threshold
        p_mg=np.zeros(n),
        p_el_debiased=p_el,
        p_cs_debiased=p_cs,
        spiral=(p_cs > 0.8).astype(int),
        elliptical=(p_el > 0.8).astype(int),
        uncertain=((p_el <= 0.8) & (p_cs <= 0.8)).astype(int),
        # one photometric mass with 0.1 dex scatter stands for all three SDSS mass tables
        logMass_Maraston09=log_mass,
        logMass_ConroyDust=log_mass,
        logMass_ConroyNoDust=log_mass,
    )
    catalog = {name: catalog[name] for name in SAMPLE_COLUMNS}
    truth = {
        "specObjID": specobjid,
        "z": gal["z"],
        "logmass": gal["logmass"],
        "bulge_to_total": bt,
        "morphology": np.where(bt > 0.55, "elliptical", "spiral"),
        "quenched": gal["quenched"],
        "age_lw": spectra["age_lw"],
        "metallicity_lw": spectra["metallicity_lw"],
        "ebv": spectra["ebv_lw"],
        "sigma_star": spectra["sigma_star"],
        "sfr": gal["sfr"],
        "bpt_class": spectra["bpt_class"],
        "bpt_detail": spectra["bpt_detail"],
        "agn_type": np.array(pop.AGN_TYPES)[gal["agn_type"]],
        "ew_Halpha": spectra["ew_Halpha"],
        "fiber_fraction_bulge": spectra["fiber_fraction"][:, 0],
        "bulge_light_fraction": spectra["bulge_light_fraction"],
        "fiber_fraction_disk": spectra["fiber_fraction"][:, 1],
        "ebv_mw": gal["ebv_mw"],
        "has_neighbour": extras["has_neighbour"],
        "has_star": extras["has_star"],
    }
    for key in (
        "bulge_re_kpc",
        "disk_re_kpc",
        "bulge_sigma",
        "disk_sigma",
        "bulge_ebv",
        "disk_ebv",
        "bulge_metallicity",
        "disk_metallicity",
        "cos_incl",
        "pa_deg",
        "burst_mass_fraction",
        "sf_log_nii_ha",
        "sf_log_oiii_hb",
        "agn_log_nii_ha",
        "agn_log_oiii_hb",
    ):
        truth[key] = gal[key]
    for key in spectra:
        if key.startswith("flux_"):
            truth[key] = spectra[key]
    for b, band in enumerate(BANDS):
        truth[f"mag_{band}"] = asinh_mag(gal["flux_nmgy"].sum(1) + gal["agn_nmgy"])[:, b]
        truth[f"fiberflux_{band}"] = extras["fiber_flux"][:, b]
    return pd.DataFrame(catalog), pd.DataFrame(truth)


#: Consecutive draws that select no galaxy after which the mock gives up (a configuration nothing passes).
MAX_EMPTY_DRAWS = 20


def generate(survey: MockSurvey, files: SurveyFiles) -> dict:
    """Generate the mock survey and write it as SDSS products, plus its truth.

    Writes the catalog (CSV, the sample query's columns), spec-lite FITS files below
    ``files.spectra`` (``PPPP/spec-PPPP-MMMMM-FFFF.fits``), the image cubes (Pasquet layout) and
    the truth table (Parquet).  Returns counts for the summary.
    """
    settings = survey.settings
    rng = np.random.default_rng(settings.seed)
    n_total = settings.n_galaxies
    cube_tmp = Path(files.cubes).with_name(f".{Path(files.cubes).name}.npy.part")
    cube_tmp.parent.mkdir(parents=True, exist_ok=True)
    cubes = np.lib.format.open_memmap(
        cube_tmp, mode="w+", dtype=np.float32, shape=(n_total, CUBE_SIZE, CUBE_SIZE, len(BANDS))
    )
    catalogs, truths = [], []
    n_done, n_drawn, empty_draws = 0, 0, 0
    obs = settings.observation
    writer = SpecLiteWriter()
    try:
        while n_done < n_total:
            candidates = survey.draw_candidates(settings.batch_size * 8, rng)
            n_drawn += settings.batch_size * 8
            selected = survey.select(candidates) if candidates else np.zeros(0, dtype=bool)
            keep = np.flatnonzero(selected)[: min(settings.batch_size, n_total - n_done)]
            if keep.size == 0:
                empty_draws += 1
                if empty_draws >= MAX_EMPTY_DRAWS:
                    raise ValueError(
                        f"the mock's selection kept none of {empty_draws * settings.batch_size * 8} drawn galaxies; loosen "
                        "mock.population.petro_r_limit, or change mock.population.z_min/z_max or logmass_min/logmass_max"
                    )
                continue
            empty_draws = 0
            gal = {k: v[keep] for k, v in candidates.items()}
            spectra = survey.fiber_spectra(gal, rng)
            gal["flux_nmgy"][:, 1] += spectra["line_sf_nmgy"]
            gal["agn_nmgy"] = spectra["line_agn_nmgy"]
            cube, extras = survey.images(gal, candidates, rng)
            catalog, truth = _catalog_and_truth(gal, spectra, extras, n_done, rng, obs)
            cubes[n_done : n_done + keep.size] = cube
            for i, row in enumerate(catalog.itertuples(index=False)):
                writer.write(
                    spectrum_path(files.spectra, row.plate, row.mjd, row.fiberID),
                    spectra["loglam"],
                    spectra["flux"][i],
                    spectra["ivar"][i],
                    spectra["and_mask"][i],
                    {
                        "SPECOBJID": int(row.specObjID),
                        "Z": float(row.z),
                        "Z_ERR": float(row.zErr),
                        "VDISP": float(row.velDisp),
                        "VDISP_ERR": float(row.velDispErr),
                        "CLASS": "GALAXY",
                        "SUBCLASS": {"star-forming": "STARFORMING", "AGN": "AGN"}.get(truth["bpt_class"][i], ""),
                        "PLATE": int(row.plate),
                        "MJD": int(row.mjd),
                        "FIBERID": int(row.fiberID),
                        "PLUG_RA": float(row.ra),
                        "PLUG_DEC": float(row.dec),
                    },
                    sky=spectra["sky"][i],
                    model=spectra["model"][i],
                    wdisp=np.full(
                        spectra["loglam"].size, survey.model.instrument_sigma_kms / (LOG10_STEP * C_KMS * np.log(10))
                    ),
                )
            catalogs.append(catalog)
            truths.append(truth)
            n_done += keep.size
        cubes.flush()
        del cubes
        catalog = pd.concat(catalogs, ignore_index=True)
        truth = pd.concat(truths, ignore_index=True)
        labels = catalog[["specObjID", "z", "ra", "dec"]].to_records(index=False)
        write_cube_archive(files.cubes, cube_tmp, labels)
        with atomic_output(files.catalog) as tmp:
            catalog.to_csv(tmp, index=False)
        with atomic_output(files.truth) as tmp:
            truth.to_parquet(tmp, index=False)
    finally:
        if cube_tmp.exists():
            cube_tmp.unlink()
    return {"n_galaxies": n_done, "n_candidates_drawn": n_drawn, "selection_efficiency": n_done / n_drawn}


def settings_as_dict(settings: MockSettings) -> dict:
    """Plain-dict copy of the settings, for provenance in summaries."""
    return dataclasses.asdict(settings)
