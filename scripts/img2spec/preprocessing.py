"""Spectrum preprocessing as in Doorenbos, Sextl et al. (2024), Sect. 2.

Every SDSS spectrum is (1) cleaned of bad pixels, which are interpolated and remembered in a mask;
(2) degraded from R≈2000 to R≈1500; (3) resampled, conserving flux, onto 1 Å pixels over
4000–8499 Å in the observed frame; (4) divided by its mean in 6900–6950 Å; and (5) turned into the
natural log that the networks learn.  A 563-pixel low-resolution version, the target of the first
diffusion model, is made from the same normalised spectrum.

All spectra share the SDSS grid of constant Δlog10 λ = 1e-4, so a batch is placed on one common
log-λ grid and processed as a 2-D array.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike
from scipy import sparse
from scipy.interpolate import make_interp_spline

from .io import Spectrum
from .settings import Settings
from .spectral import FWHM_PER_SIGMA, LOG10_STEP, PIXEL_KMS
from .units import C_KMS

#: Wavelength window [Å] whose mean flux every spectrum is divided by (the paper's Sect. 2).
NORMALISATION_WINDOW = (6900.0, 6950.0)
#: What the stored spectra are, as the HDF5 files written from them say.
FLUX_UNIT = "natural log of flux normalised to mean 1 in {:g}-{:g} A".format(*NORMALISATION_WINDOW)


@dataclass(frozen=True, kw_only=True)
class PreprocessingSettings(Settings):
    """Preprocessing parameters; defaults are the paper's.

    Attributes
    ----------
    r_in, r_out : float
        Resolving power λ/FWHM of the input spectra and of the output, both quoted at 5000 Å.
    wave_min, wave_max, dwave : float
        First and last pixel centre and pixel size of the output grid [Å, observed frame].
    norm_window : tuple of float
        Wavelength range whose mean flux is set to 1 [Å].
    norm_frame : {"observed", "rest"}
        Frame of ``norm_window``: ``"observed"`` as the published code (the default, which the
        networks of every preset were measured with), ``"rest"`` as the paper's Sect. 2 states
        (the window moves with each spectrum's catalog redshift).
    lowres_factor : int
        Output pixels averaged into one low-resolution pixel (8 → 563 pixels of 8 Å).
    log_floor : float
        Normalised fluxes below this are raised to it before the log (and masked).
    max_bad_fraction : float
        Spectra with more masked output pixels than this are rejected.
    max_bad_norm_fraction : float
        Spectra whose normalisation window is masked beyond this fraction are rejected.
    bad_bits : int
        SDSS ``and_mask`` bits that mark a pixel bad.
    """

    SECTION: ClassVar[str] = "preprocessing"
    CALLERS_KEYS: ClassVar[tuple[str, ...]] = ("chunk_size",)

    r_in: float
    r_out: float
    wave_min: float
    wave_max: float
    dwave: float
    norm_window: tuple[float, float]
    norm_frame: str
    lowres_factor: int
    log_floor: float
    max_bad_fraction: float
    max_bad_norm_fraction: float
    bad_bits: int

    @property
    def wave(self) -> np.ndarray:
        """Output pixel centres [Å]."""
        n = round((self.wave_max - self.wave_min) / self.dwave) + 1
        return self.wave_min + self.dwave * np.arange(n)

    @property
    def wave_lowres(self) -> np.ndarray:
        """Low-resolution pixel centres [Å]: the mean wavelength of the pixels each one averages."""
        return lowres_bin_means(self.wave[None, :], self.lowres_factor)[0]


def lsf_kernel_sigma_kms(r_in: float, r_out: float) -> float:
    """Gaussian σ [km/s] that degrades resolving power ``r_in`` to ``r_out``.

    The line-spread function is taken as a Gaussian of constant resolving power, i.e. constant
    width in velocity and in log λ: FWHM(λ) = λ / R, so the quoted R at 5000 Å holds at every λ and
    the degradation kernel has FWHM_k(λ) = λ √(1/R_out² − 1/R_in²) (2.20 Å at 5000 Å for
    2000 → 1500), the same in every pixel of the log-λ grid.
    """
    if r_out >= r_in:
        raise ValueError(f"r_out={r_out} must be below r_in={r_in} to degrade the resolution")
    return C_KMS * np.sqrt(1.0 / r_out**2 - 1.0 / r_in**2) / FWHM_PER_SIGMA


def gaussian_smooth(flux: np.ndarray, sigma_pix: float) -> np.ndarray:
    """Convolve each row with a Gaussian of ``sigma_pix`` pixels (edges padded with edge values).

    Done in Fourier space with the analytic transfer function exp(−2π²σ²f²), so the added
    variance is exactly σ² even for kernels narrower than a pixel, where a sampled kernel is not.
    Cutting the transfer function at the Nyquist frequency leaves ringing of relative amplitude
    ~exp(−π²σ²/2), 1e-5 of the flux for the 1.2-pixel kernel of R 2000 → 1500.
    """
    flux = np.atleast_2d(flux)
    pad = int(np.ceil(6 * sigma_pix)) + 1
    padded = np.pad(flux, ((0, 0), (pad, pad)), mode="edge")
    n_fft = int(2 ** np.ceil(np.log2(padded.shape[1])))
    freq = np.fft.rfftfreq(n_fft)
    transfer = np.exp(-2.0 * np.pi**2 * sigma_pix**2 * freq**2)
    smoothed = np.fft.irfft(np.fft.rfft(padded, n_fft, axis=1) * transfer, n_fft, axis=1)
    return smoothed[:, pad : pad + flux.shape[1]]


def smoothing_matrix(n_pix: int, sigma_pix: float) -> sparse.csr_matrix:
    """Banded (n_pix, n_pix) matrix of the discrete kernel that :func:`gaussian_smooth` applies.

    Used to carry variances through smoothing and rebinning together: an output pixel is
    Σ_k M_kj f_k with M = S·W, so for independent input pixels its variance is Σ_k M_kj² var_k.
    Smoothing first and then treating the smoothed pixels as independent would miss their
    correlation (about 30% of the variance after rebinning onto 1 Å pixels).
    """
    pad = int(np.ceil(6 * sigma_pix)) + 1
    n_fft = int(2 ** np.ceil(np.log2(4 * pad + 2)))
    freq = np.fft.rfftfreq(n_fft)
    kernel = np.fft.irfft(np.exp(-2.0 * np.pi**2 * sigma_pix**2 * freq**2), n_fft)
    taps = np.concatenate([kernel[-pad:], kernel[: pad + 1]])
    return sparse.diags(list(taps), list(range(-pad, pad + 1)), shape=(n_pix, n_pix), format="csr")


def rebin_matrix(in_edges: np.ndarray, out_edges: np.ndarray) -> sparse.csr_matrix:
    """Sparse (n_in, n_out) overlap lengths between input and output pixels [Å].

    ``flux_in @ W / W.sum(0)`` is the flux-conserving mean flux density in each output pixel.
    """
    first = np.clip(np.searchsorted(in_edges, out_edges[:-1], side="right") - 1, 0, in_edges.size - 2)
    last = np.clip(np.searchsorted(in_edges, out_edges[1:], side="left") - 1, 0, in_edges.size - 2)
    rows, cols, lengths = [], [], []
    for offset in range(int((last - first).max()) + 1):
        i = first + offset
        j = np.flatnonzero(i <= last)
        i = i[j]
        overlap = np.minimum(in_edges[i + 1], out_edges[j + 1]) - np.maximum(in_edges[i], out_edges[j])
        keep = overlap > 0
        rows.append(i[keep])
        cols.append(j[keep])
        lengths.append(overlap[keep])
    shape = (in_edges.size - 1, out_edges.size - 1)
    return sparse.csr_matrix((np.concatenate(lengths), (np.concatenate(rows), np.concatenate(cols))), shape=shape)


def lowres_bin_means(values: np.ndarray, factor: int) -> np.ndarray:
    """Mean of each run of ``factor`` consecutive pixels along the last axis (last run may be shorter)."""
    starts = np.arange(0, values.shape[-1], factor)
    counts = np.diff(np.append(starts, values.shape[-1]))
    return np.add.reduceat(values, starts, axis=-1) / counts


def normalisation_window(window: tuple[float, float], frame: str, z: np.ndarray | float) -> np.ndarray:
    """Observed-frame normalisation window [Å] per spectrum, (N, 2).

    ``frame="observed"`` uses ``window`` as it is for every spectrum (the published code);
    ``frame="rest"`` places the rest-frame ``window`` at each spectrum's redshift ``z``, as the
    paper's Sect. 2 describes (6900–6950 Å rest frame).
    """
    z = np.atleast_1d(np.asarray(z, dtype=np.float64))
    if frame == "observed":
        return np.broadcast_to(np.asarray(window, dtype=np.float64), (z.size, 2)).copy()
    if frame == "rest":
        return np.asarray(window, dtype=np.float64)[None, :] * (1.0 + z[:, None])
    raise ValueError(f"normalisation frame must be 'observed' or 'rest', got {frame!r}")


def shift_to_redshift(
    wave: np.ndarray,
    log_flux: np.ndarray,
    z_from: ArrayLike,
    z_to: ArrayLike,
    window: tuple[float, float] = NORMALISATION_WINDOW,
    frame: str = "observed",
) -> tuple[np.ndarray, np.ndarray]:
    """Move normalised log spectra from redshift ``z_from`` to ``z_to`` on the same wavelength grid.

    What the paper does before comparing a predicted spectrum with the observed one pixel by pixel
    (Sect. 5.1: "we shift the anticipated redshift of the artificial spectra to match the true
    redshift"): :func:`move_spectra` with ``wave`` (observed frame [Å]) as input and output grid,
    whose parameters and returns it has.
    """
    return move_spectra(wave, log_flux, z_from, wave, z_to, window, frame)


def move_spectra(
    wave_from: np.ndarray,
    log_flux: np.ndarray,
    z_from: ArrayLike,
    wave_to: np.ndarray,
    z_to: ArrayLike,
    window: tuple[float, float] = NORMALISATION_WINDOW,
    frame: str = "observed",
) -> tuple[np.ndarray, np.ndarray]:
    """Move normalised log spectra at redshift ``z_from`` on ``wave_from`` to redshift ``z_to`` on ``wave_to``.

    The flux at wavelength λ of ``wave_to`` becomes the input's at λ (1 + z_from)/(1 + z_to),
    interpolated with a cubic spline in ln flux.  The result is then scaled so that its mean in the
    normalisation window (:func:`normalisation_window` at ``z_to``, on ``wave_to``) is the input's
    mean in its own window (at ``z_from``, on ``wave_from``): the move neither creates nor hides an
    error of the input's normalisation, and a spectrum normalised by preprocessing at ``z_from``
    comes out as preprocessing would normalise it at ``z_to``.  With ``z_to = 0`` this is the move
    to the rest frame, normalised in the rest-frame window (the paper's Sect. 2 normalisation).

    Parameters
    ----------
    wave_from, wave_to : ndarray, (L_from,), (L_to,)
        Wavelength grids [Å] of input and output, increasing.
    log_flux : ndarray, (N, L_from)
        Natural log of normalised flux.
    z_from, z_to : ndarray, (N,)
        Redshift each spectrum is at, and the one to move it to.  A non-finite one gives a row that
        is all invalid.
    window, frame
        The normalisation window [Å] and its frame, as in :class:`PreprocessingSettings`.

    Returns
    -------
    moved : ndarray, (N, L_to)
        Natural log of the moved, renormalised flux; NaN where invalid.
    invalid : ndarray of bool, (N, L_to)
        True where the source wavelength falls outside ``wave_from``, where the target window is not
        covered, or where a redshift is not finite.
    """
    log_flux = np.atleast_2d(np.asarray(log_flux, dtype=np.float64))
    n = log_flux.shape[0]
    z_from = np.broadcast_to(np.asarray(z_from, dtype=np.float64), (n,))
    z_to = np.broadcast_to(np.asarray(z_to, dtype=np.float64), (n,))
    moved = np.full((n, wave_to.size), np.nan)
    invalid = np.ones((n, wave_to.size), dtype=bool)
    usable = np.isfinite(z_from) & np.isfinite(z_to)
    source_windows = normalisation_window(window, frame, np.where(usable, z_from, 0.0))
    target_windows = normalisation_window(window, frame, np.where(usable, z_to, 0.0))
    for row in np.flatnonzero(usable):
        source = wave_to * (1.0 + z_from[row]) / (1.0 + z_to[row])
        inside = (source >= wave_from[0]) & (source <= wave_from[-1])
        values = make_interp_spline(wave_from, log_flux[row], k=3)(source[inside])
        in_source = (wave_from >= source_windows[row, 0]) & (wave_from <= source_windows[row, 1])
        in_target = (wave_to[inside] >= target_windows[row, 0]) & (wave_to[inside] <= target_windows[row, 1])
        if not (in_source.any() and in_target.any()):
            continue
        level = np.log(np.mean(np.exp(log_flux[row, in_source])) / np.mean(np.exp(values[in_target])))
        moved[row, inside] = values + level
        invalid[row] = ~inside
    return moved, invalid


def rest_frame_wave(observed_wave: np.ndarray, z_range: tuple[float, float]) -> np.ndarray:
    """Rest-frame grid [Å] holding every part of ``observed_wave`` seen at a redshift in ``z_range``.

    Same pixel size as ``observed_wave``, from its first pixel at the highest redshift to its last at
    the lowest, rounded outwards to whole pixels: 3478–8095 Å for 4000–8499 Å and 0.05 < z ≤ 0.15.
    """
    step = float(observed_wave[1] - observed_wave[0])
    low = np.floor(observed_wave[0] / (1.0 + z_range[1]) / step) * step
    high = np.ceil(observed_wave[-1] / (1.0 + z_range[0]) / step) * step
    return low + step * np.arange(round((high - low) / step) + 1)


def covering_z_range(rest_wave: np.ndarray, observed_wave: np.ndarray) -> tuple[float, float]:
    """Redshifts at which ``rest_wave`` placed at z holds every pixel of ``observed_wave``.

    A spectrum on ``rest_wave`` moved to such a redshift (:func:`move_spectra`) has no invalid pixel on
    ``observed_wave``.  The bounds are pulled in by one part in 10⁹ so that rounding never puts an
    edge pixel outside.
    """
    margin = 1e-9
    low = observed_wave[-1] / rest_wave[-1] * (1.0 + margin) - 1.0
    high = observed_wave[0] / rest_wave[0] * (1.0 - margin) - 1.0
    return float(low), float(high)


def lowres_spectra(
    linear: np.ndarray, mask: np.ndarray, factor: int, log_floor: float
) -> tuple[np.ndarray, np.ndarray]:
    """Low-resolution natural-log spectra and masks: means of ``factor`` pixels of linear normalised flux.

    A low-resolution pixel is masked when most of its pixels are, or when it falls below ``log_floor``.
    """
    lowres = lowres_bin_means(linear, factor)
    mask_lowres = (lowres_bin_means(mask.astype(np.float64), factor) > 0.5) | (lowres < log_floor)
    return np.log(np.maximum(lowres, log_floor)).astype(np.float32), mask_lowres


def rest_frame_spectra(
    wave: np.ndarray,
    log_flux: np.ndarray,
    mask: np.ndarray,
    z: np.ndarray,
    rest_wave: np.ndarray,
    lowres_factor: int,
    log_floor: float,
    window: tuple[float, float] = NORMALISATION_WINDOW,
    frame: str = "observed",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Observed normalised log spectra at redshifts ``z`` moved to the rest frame, at full and low resolution.

    :func:`move_spectra` to ``z = 0`` on ``rest_wave``, renormalised in the rest-frame window.  A
    rest-frame pixel is masked where the spectrum does not reach it at its redshift or where an
    observed pixel it is interpolated from is masked; pixels beyond the covered range hold the
    nearest covered value, so a network sees a continuous spectrum while its loss ignores them.

    Returns
    -------
    flux_rest, mask_rest : ndarray, (N, L_rest)
    flux_lowres_rest, mask_lowres_rest : ndarray, (N, L_rest / lowres_factor)
    """
    moved, invalid = move_spectra(wave, log_flux, z, rest_wave, np.zeros(len(log_flux)), window, frame)
    source = rest_wave[None, :] * (1.0 + np.asarray(z, dtype=np.float64)[:, None])
    touched = np.stack(
        [np.interp(row_source, wave, row_mask.astype(np.float64)) for row_source, row_mask in zip(source, mask)]
    )
    mask_rest = invalid | (touched > 0)
    pixels = np.arange(rest_wave.size)
    for row in range(len(moved)):
        covered = np.flatnonzero(~invalid[row])
        moved[row] = np.interp(pixels, covered, moved[row, covered]) if covered.size else 0.0
    flux_lowres, mask_lowres = lowres_spectra(np.exp(moved), mask_rest, lowres_factor, log_floor)
    return moved.astype(np.float32), mask_rest, flux_lowres, mask_lowres


@dataclass
class PreprocessedSpectra:
    """Output of :func:`preprocess_spectra` for the accepted spectra.

    Attributes
    ----------
    index : ndarray of int
        Position of each accepted spectrum in the input sequence.
    wave : ndarray
        Output pixel centres [Å, observed frame, vacuum].
    flux : ndarray, (N, n_pix) float32
        Natural log of the normalised flux.
    ivar : ndarray, (N, n_pix) float32
        Inverse variance of the normalised (linear) flux; 0 where masked.
    mask : ndarray, (N, n_pix) bool
        True where the value is not a measurement (interpolated bad pixel, or raised to the floor).
    wave_lowres, flux_lowres, mask_lowres : ndarray
        The same on the low-resolution grid.
    norm : ndarray, (N,)
        Mean flux in the normalisation window [1e-17 erg/s/cm²/Å].
    """

    index: np.ndarray
    wave: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    mask: np.ndarray
    wave_lowres: np.ndarray
    flux_lowres: np.ndarray
    mask_lowres: np.ndarray
    norm: np.ndarray


def _interpolate_bad(flux: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Linearly interpolate each row across its bad pixels (constant beyond the last good one)."""
    out = flux.copy()
    x = np.arange(flux.shape[1])
    for row in np.flatnonzero(bad.any(axis=1)):
        good = ~bad[row]
        out[row, ~good] = np.interp(x[~good], x[good], flux[row, good])
    return out


def preprocess_spectra(
    spectra: Sequence[Spectrum], settings: PreprocessingSettings | None = None
) -> tuple[PreprocessedSpectra, list[tuple[int, str]]]:
    """Preprocess a batch of SDSS spectra.

    Parameters
    ----------
    spectra : sequence of Spectrum
        Spectra on the SDSS grid (Δlog10 λ = 1e-4), e.g. from :func:`img2spec.io.read_sdss_spectrum`.
    settings : PreprocessingSettings, optional
        The workflow schema's defaults (the paper's) when not given.

    Returns
    -------
    result : PreprocessedSpectra
        The accepted spectra.
    rejects : list of (int, str)
        Input position and reason for each rejected spectrum.
    """
    s = settings or PreprocessingSettings.defaults()
    wave_out = s.wave
    out_edges = np.append(wave_out - s.dwave / 2, wave_out[-1] + s.dwave / 2)
    sigma_pix = lsf_kernel_sigma_kms(s.r_in, s.r_out) / PIXEL_KMS
    pad = int(np.ceil(6 * sigma_pix)) + 2
    k_lo = int(np.floor(np.log10(out_edges[0]) / LOG10_STEP)) - pad
    k_hi = int(np.ceil(np.log10(out_edges[-1]) / LOG10_STEP)) + pad
    n_common = k_hi - k_lo + 1

    rejects: list[tuple[int, str]] = []
    kept: list[int] = []
    flux = np.zeros((len(spectra), n_common))
    ivar = np.zeros((len(spectra), n_common))
    bad = np.ones((len(spectra), n_common), dtype=bool)
    for i, spec in enumerate(spectra):
        position = np.log10(spec.wave) / LOG10_STEP
        k = np.rint(position).astype(np.int64)
        if np.max(np.abs(position - k)) > 0.05 or np.any(np.diff(k) != 1):
            rejects.append((i, "not on the SDSS grid of constant log10-wavelength step 1e-4"))
            continue
        lo, hi = max(k[0], k_lo), min(k[-1], k_hi)
        if hi <= lo:
            rejects.append((i, f"no wavelength coverage in {s.wave_min:g}-{s.wave_max:g} A"))
            continue
        row = len(kept)
        src = slice(lo - k[0], hi - k[0] + 1)
        dst = slice(lo - k_lo, hi - k_lo + 1)
        flux[row, dst] = spec.flux[src]
        ivar[row, dst] = spec.ivar[src]
        bad[row, dst] = spec.bad[src]
        kept.append(i)

    n = len(kept)
    flux, ivar, bad = flux[:n], ivar[:n], bad[:n]
    var = np.divide(1.0, ivar, out=np.zeros_like(ivar), where=ivar > 0)
    all_bad = np.asarray(bad.all(axis=1))
    flux[~all_bad] = _interpolate_bad(flux[~all_bad], bad[~all_bad])
    var[~all_bad] = _interpolate_bad(var[~all_bad], bad[~all_bad])  # so smoothing does not pull in zeros
    flux = gaussian_smooth(flux, sigma_pix)

    in_edges = 10.0 ** ((np.arange(k_lo, k_hi + 2) - 0.5) * LOG10_STEP)
    weights = rebin_matrix(in_edges, out_edges)
    width = np.asarray(weights.sum(axis=0)).ravel()
    weights_t = weights.T.tocsr()
    flux_out = (weights_t @ flux.T).T / width
    propagation = (smoothing_matrix(n_common, sigma_pix) @ weights).T.tocsr().power(2)
    var_out = (propagation @ var.T).T / width**2
    mask = (weights_t @ bad.T.astype(np.float64)).T > 0

    z = np.array([float(spectra[i].meta.get("z", np.nan)) for i in kept]) if s.norm_frame == "rest" else np.zeros(n)
    windows = normalisation_window(s.norm_window, s.norm_frame, z)
    in_window = (wave_out[None, :] >= windows[:, :1]) & (wave_out[None, :] <= windows[:, 1:])
    n_window = np.maximum(in_window.sum(axis=1), 1)
    norm = np.where(in_window, flux_out, 0.0).sum(axis=1) / n_window
    bad_window = np.where(in_window, mask, False).sum(axis=1) / n_window
    accept = np.ones(n, dtype=bool)
    for row in range(n):
        reason = None
        if all_bad[row]:
            reason = f"no good pixel in {s.wave_min:g}-{s.wave_max:g} A"
        elif not np.isfinite(z[row]):
            reason = "no redshift in the file, which the rest-frame normalisation window needs"
        elif not in_window[row].any():
            reason = (
                f"normalisation window {windows[row, 0]:.0f}-{windows[row, 1]:.0f} A is outside the wavelength grid"
            )
        elif bad_window[row] > s.max_bad_norm_fraction:
            reason = (
                f"normalisation window {windows[row, 0]:.0f}-{windows[row, 1]:.0f} A is "
                f"{100 * bad_window[row]:.0f}% masked"
            )
        elif not np.isfinite(norm[row]) or norm[row] <= 0:
            reason = f"mean flux in normalisation window is {norm[row]:.3g}, not positive"
        elif mask[row].mean() > s.max_bad_fraction:
            reason = f"{100 * mask[row].mean():.0f}% of pixels masked (limit {100 * s.max_bad_fraction:.0f}%)"
        if reason:
            rejects.append((kept[row], reason))
            accept[row] = False

    norm = norm[accept]
    linear = flux_out[accept] / norm[:, None]
    var_norm = var_out[accept] / norm[:, None] ** 2
    mask = mask[accept]
    floored = linear < s.log_floor
    ivar = np.divide(1.0, var_norm, out=np.zeros_like(var_norm), where=~mask & (var_norm > 0))
    flux_lowres, mask_lowres = lowres_spectra(linear, mask, s.lowres_factor, s.log_floor)
    rejects.sort()
    return (
        PreprocessedSpectra(
            index=np.asarray(kept, dtype=np.int64)[accept],
            wave=wave_out,
            flux=np.log(np.maximum(linear, s.log_floor)).astype(np.float32),
            ivar=ivar.astype(np.float32),
            mask=mask | floored,
            wave_lowres=s.wave_lowres,
            flux_lowres=flux_lowres,
            mask_lowres=mask_lowres,
            norm=norm,
        ),
        rejects,
    )
