"""Simple-stellar-population template libraries from the sdss-mangadap distribution.

The MaNGA DAP wheel on PyPI carries the MIUSCAT (Vazdekis et al. 2012), M11-MILES (Maraston &
Strömbäck 2011) and BC03 (Bruzual & Charlot 2003, the MPA-JHU selection) SSP spectra as FITS files.  Installing the package would pin an old ppxf, so img2spec
downloads the wheel with ``pip download`` (whatever index the user's pip is configured for), checks
its SHA-256, and reads only the data files out of the archive.
"""

from __future__ import annotations

import hashlib
import io as _io
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from .config import validate_config
from .download import RateLimiter, RetryPolicy, fetch_with_retries
from .io import InputError, atomic_output

#: Library name → (folder inside the wheel, FWHM [Å] of the spectra).  MIUSCAT is the mock's truth.
#: M11-MILES: [Z/H] −0.3, 0, +0.3, ages 6.5 Myr–15 Gyr at solar but from 0.1 Gyr at +0.3, Salpeter
#: IMF.  BC03: [Z/H] −0.7, −0.4, 0, +0.4, ten ages 5 Myr–10 Gyr at every metallicity, Chabrier IMF,
#: at the 3 Å of Bruzual & Charlot (2003) (the DAP's configuration says 2.3 Å, but fits of MIUSCAT and
#: M11-MILES galaxies of known σ* come out up to 80% low with that value); broader than R = 1500 blue
#: of 4500 Å, so the pipeline takes stellar kinematics from M11-MILES (``evaluation.kinematics_library``).
LIBRARIES = {
    "miuscat": ("mangadap/data/spectral_templates/miuscat/", 2.51),
    "m11_miles": ("mangadap/data/spectral_templates/m11_miles/", 2.54),
    "bc03": ("mangadap/data/spectral_templates/bc03_mpajhu/", 3.0),
}

_MIUSCAT_NAME = re.compile(r"Iun1\.30Z([mp])(\d+\.\d+)T(\d+\.\d+)\.fits$")
_M11_NAME = re.compile(r"_age_(\d+\.\d+)_z_(\d+\.\d+)\.fits$")
_BC03_NAME = re.compile(r"BC03_z(\d+\.\d+)_a(\d+\.\d+)\.fits$")
#: Metal mass fraction of the Sun adopted by Maraston & Strömbäck (2011) and by Bruzual & Charlot (2003).
M11_Z_SUN = 0.02


@dataclass(frozen=True)
class SSPLibrary:
    """A set of SSP spectra on one wavelength grid.

    Attributes
    ----------
    name : str
    wave_air : ndarray, (n_pix,)
        Air wavelength [Å].
    flux : ndarray, (n_ssp, n_pix)
        Luminosity density per unit initial stellar mass [L_sun Å⁻¹ M_sun⁻¹].
    age_gyr : ndarray, (n_ssp,)
        Age [Gyr].
    metallicity : ndarray, (n_ssp,)
        Total metallicity [M/H] [dex].
    fwhm : float
        Spectral resolution, FWHM [Å], constant in wavelength.
    """

    name: str
    wave_air: np.ndarray
    flux: np.ndarray
    age_gyr: np.ndarray
    metallicity: np.ndarray
    fwhm: float

    @property
    def ages(self) -> np.ndarray:
        """Distinct ages [Gyr], increasing."""
        return np.unique(self.age_gyr)

    @property
    def metallicities(self) -> np.ndarray:
        """Distinct metallicities [dex], increasing."""
        return np.unique(self.metallicity)

    def save(self, path: str | Path) -> None:
        with atomic_output(path) as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh,
                name=self.name,
                wave_air=self.wave_air,
                flux=self.flux.astype(np.float32),
                age_gyr=self.age_gyr,
                metallicity=self.metallicity,
                fwhm=self.fwhm,
            )


def load_library(path: str | Path) -> SSPLibrary:
    """Read a library written by :meth:`SSPLibrary.save`."""
    try:
        with np.load(path) as data:
            return SSPLibrary(
                str(data["name"]),
                data["wave_air"],
                data["flux"].astype(np.float64),
                data["age_gyr"],
                data["metallicity"],
                float(data["fwhm"]),
            )
    except (OSError, KeyError, ValueError) as err:
        raise InputError(f"{path}: not an img2spec template library ({err})") from err


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def pinned_wheel() -> tuple[str, str, str]:
    """(package, version, sha256) of the template wheel as the workflow's schema pins it (``templates``)."""
    section = validate_config({})["templates"]
    return section["package"], section["version"], section["sha256"]


def fetch_wheel(package: str, version: str, sha256: str, cache_dir: str | Path) -> Path:
    """Return a verified wheel of ``package==version``, downloading it with pip if not cached.

    Raises
    ------
    InputError
        If pip cannot fetch it or the file's SHA-256 differs from ``sha256``.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    pattern = f"{package.replace('-', '_')}-{version}-*.whl"
    found = sorted(cache_dir.glob(pattern))
    if not found:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        command += ["--dest", str(cache_dir), f"{package}=={version}"]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        found = sorted(cache_dir.glob(pattern))
        if result.returncode != 0 or not found:
            raise InputError(f"pip download {package}=={version} failed:\n{result.stderr[-2000:]}")
    wheel = found[0]
    actual = sha256_of(wheel)
    if actual != sha256:
        raise InputError(f"{wheel}: SHA-256 {actual} differs from the pinned {sha256}; delete it and retry")
    return wheel


def _parse(name: str, filename: str) -> tuple[float, float] | None:
    """(age [Gyr], [M/H]) from a template file name."""
    if name == "miuscat":
        m = _MIUSCAT_NAME.search(filename)
        if m:
            sign = -1.0 if m.group(1) == "m" else 1.0
            return float(m.group(3)), sign * float(m.group(2))
    elif name == "bc03":
        m = _BC03_NAME.search(filename)
        if m:
            return float(m.group(2)), float(np.log10(float(m.group(1)) / M11_Z_SUN))
    else:
        m = _M11_NAME.search(filename)
        if m:
            return float(m.group(1)), float(np.log10(float(m.group(2)) / M11_Z_SUN))
    return None


def library_from_wheel(wheel: str | Path, name: str) -> SSPLibrary:
    """Read one SSP library's FITS spectra straight out of the mangadap wheel."""
    folder, fwhm = LIBRARIES[name]
    ages, metals, spectra, grids = [], [], [], []
    with zipfile.ZipFile(wheel) as archive:
        members = sorted(m for m in archive.namelist() if m.startswith(folder) and m.endswith(".fits"))
        if not members:
            raise InputError(f"{wheel}: no {name} spectra under {folder}")
        for member in members:
            parsed = _parse(name, member)
            if parsed is None:
                raise InputError(f"{wheel}: cannot read age and metallicity from {member}")
            with fits.open(_io.BytesIO(archive.read(member))) as hdul:
                header = hdul[0].header
                data = np.asarray(hdul[0].data, dtype=np.float64)
            pix = np.arange(data.size) + 1 - header.get("CRPIX1", 1.0)
            grids.append(header["CRVAL1"] + header["CDELT1"] * pix)
            spectra.append(data)
            ages.append(parsed[0])
            metals.append(parsed[1])
    wave = grids[0]
    for member, grid in zip(members, grids):
        if grid.size != wave.size or np.max(np.abs(grid - wave)) > 1e-6:
            raise InputError(f"{wheel}: {member} is not on the library's common wavelength grid")
    order = np.lexsort((ages, metals))
    return SSPLibrary(
        name,
        wave,
        np.asarray(spectra)[order],
        np.asarray(ages)[order],
        np.asarray(metals)[order],
        fwhm,
    )


#: Optical range [Å] over which the FWHM of a ppxf-format library is taken (E-MILES: 2.51 Å there).
SPS_FWHM_RANGE = (3500.0, 7500.0)


def library_from_sps_npz(path: str | Path, name: str) -> SSPLibrary:
    """Read an SSP library in the format of pPXF's ``sps_util`` (e.g. E-MILES from the ppxf data repository).

    The file holds ``templates`` (n_pix, n_age, n_met) [L_sun/Å per M_sun], ``lam`` [Å, air],
    ``fwhm`` (n_pix) [Å], ``ages`` [Gyr] and ``metals`` [dex].  The library's constant FWHM is the
    largest FWHM inside :data:`SPS_FWHM_RANGE`, and the spectra are cut to that range, which holds
    every fit of img2spec.

    Raises
    ------
    InputError
        Naming the file, if it is not such an archive or its arrays disagree in shape.
    """
    try:
        with np.load(path) as data:
            templates, lam, fwhm = data["templates"], data["lam"], np.broadcast_to(data["fwhm"], data["lam"].shape)
            ages, metals = data["ages"], data["metals"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise InputError(f"{path}: not a ppxf sps_util template archive ({err})") from err
    if templates.shape != (lam.size, ages.size, metals.size):
        raise InputError(
            f"{path}: templates {templates.shape} do not match lam {lam.shape}, ages {ages.shape}, metals {metals.shape}"
        )
    keep = (lam >= SPS_FWHM_RANGE[0]) & (lam <= SPS_FWHM_RANGE[1])
    if keep.sum() < 100:
        raise InputError(f"{path}: fewer than 100 pixels inside {SPS_FWHM_RANGE} Å")
    age_grid, metal_grid = np.meshgrid(ages, metals, indexing="ij")
    flux = templates[keep].reshape(keep.sum(), -1).T
    order = np.lexsort((age_grid.ravel(), metal_grid.ravel()))
    return SSPLibrary(
        name, lam[keep], flux[order], age_grid.ravel()[order], metal_grid.ravel()[order], float(fwhm[keep].max())
    )


def fetch_sps_library(
    url: str, target: str | Path, name: str, retries: int = 5, backoff: float = 1.0, timeout: float = 120.0
) -> SSPLibrary:
    """Download a ppxf-format SSP archive from ``url`` and save it as an img2spec library at ``target``.

    Uses the retrying download of :mod:`img2spec.download` (``retries`` after the first attempt, back-off
    from ``backoff`` s); the archive is validated before it is kept.
    """
    target = Path(target)
    raw = target.with_name(target.stem + ".download.npz")

    def validate(path: Path) -> str | None:
        try:
            library_from_sps_npz(path, name)
        except InputError as err:
            return str(err)
        return None

    policy = RetryPolicy(retries=retries, backoff=backoff, timeout=timeout)
    failure, attempts = fetch_with_retries(url, raw, validate, policy, RateLimiter(1.0))
    if failure is not None:
        raise InputError(f"{url}: download failed after {attempts} attempt(s): {failure}")
    library = library_from_sps_npz(raw, name)
    library.save(target)
    raw.unlink()
    return library


#: Windows [Å] whose mean fluxes set the power-law slopes of the extensions: both below the Balmer
#: limit in the blue, both avoiding the Ca II triplet in the red.
BLUE_WINDOWS = ((3500.0, 3560.0), (3560.0, 3620.0))
RED_WINDOWS = ((8800.0, 9000.0), (9100.0, 9400.0))


def _window_slope(wave, flux, windows, clip):
    """Power-law index d ln F / d ln λ between two windows' mean fluxes, and the first window's mean."""
    means, centres = [], []
    for lo, hi in windows:
        inside = (wave >= lo) & (wave < hi)
        means.append(np.maximum(flux[:, inside].mean(axis=1), 1e-30))
        centres.append(np.log(0.5 * (lo + hi)))
    slope = np.clip(np.log(means[1] / means[0]) / (centres[1] - centres[0]), *clip)
    return slope, means, centres


def extend_with_power_laws(wave: np.ndarray, flux: np.ndarray, new_wave: np.ndarray) -> np.ndarray:
    """Spectra (n, n_pix) on ``new_wave``, continued by power laws below 3500 Å and above 9400 Å.

    No SSP library at hand covers the whole u and z filters for 0.05 < z < 0.15; the continuation
    follows the slope between two continuum windows next to each edge (index clipped to [−2, 8] in
    the blue and [−4, 1] in the red).
    """
    out = np.array([np.interp(new_wave, wave, row) for row in flux])
    blue = new_wave < BLUE_WINDOWS[0][0]
    slope, means, centres = _window_slope(wave, flux, BLUE_WINDOWS, (-2.0, 8.0))
    out[:, blue] = means[0][:, None] * np.exp(slope[:, None] * (np.log(new_wave[blue]) - centres[0]))
    red = new_wave > RED_WINDOWS[1][1]
    slope, means, centres = _window_slope(wave, flux, RED_WINDOWS, (-4.0, 1.0))
    out[:, red] = means[1][:, None] * np.exp(slope[:, None] * (np.log(new_wave[red]) - centres[1]))
    return out
