"""Predicting spectra from images: candidates, contrastive selection and uncertainty bands.

The paper's procedure (Doorenbos, Sextl et al. 2024, Sect. 3.3): draw ``k_lr`` low-resolution
spectra per galaxy with CDM_lr, keep the ``keep_lr`` most similar to the image under
contrastive_lr, draw ``k_sr`` full-resolution spectra from each with CDM_sr, and keep the one most
similar to the image under contrastive_sr.  All full-resolution candidates give per-pixel
percentiles, an uncertainty band the paper left as future work.

Every candidate's noise comes from its own generator, seeded by (seed, galaxy id, candidate), so
results do not depend on batch sizes or on which other galaxies are predicted alongside.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from astropy.io import fits

from .config import settings_from_section
from .cubes import image_problem
from .dataset import DatasetFile
from .io import BANDS, InputError, atomic_output
from .metrics import band_coverage
from .networks import network
from .outliers import OutlierModel, outlier_model_of_dataset
from .predictions import MEDIAN, PredictionWriter, band_key
from .preprocessing import move_spectra, shift_to_redshift
from .tasks import ContrastiveTask, DiffusionTask, load_task
from .upsampling import linear_upsampling, lowres_to_fullres


@dataclass(frozen=True)
class InferenceSettings:
    """Counts, sampler and batching of the prediction.

    Attributes
    ----------
    k_lr, keep_lr, k_sr : int
        Low-resolution candidates per galaxy, how many of them are upsampled, and full-resolution
        candidates drawn per kept one (paper: "several", 3, 5; Sect. 3.3).
    sampler : str
        ``ancestral`` (all T steps), ``ddim`` or ``dpmpp_2m``.
    steps : int
        Network evaluations of the fast samplers.
    spacing : str
        Steps the fast samplers visit: ``leading``, ``trailing`` or ``auto`` (trailing for x0- and
        v-prediction models, leading for ε-prediction; see :meth:`NoiseSchedule.step_sequence`).
    percentiles : tuple of float
        Per-pixel percentiles of the pooled candidates; 50 and a pair about it (e.g. 16, 84).
    calibration_galaxies : int
        Validation galaxies on which the band is calibrated (:func:`band_scale`); 0 leaves it as drawn.
    batch_galaxies : int
        Galaxies processed together.
    seed : int
    ood_quantile : float
        Quantile of the validation galaxies' out-of-distribution scores above which a galaxy is flagged
        (:mod:`img2spec.outliers`); in-distribution galaxies are flagged at the rate 1 − ood_quantile.
    """

    k_lr: int = 15
    keep_lr: int = 3
    k_sr: int = 5
    sampler: str = "ddim"
    steps: int = 10
    spacing: str = "auto"
    percentiles: tuple[float, ...] = (16.0, 50.0, 84.0)
    calibration_galaxies: int = 128
    batch_galaxies: int = 16
    seed: int = 0
    ood_quantile: float = 0.98

    @classmethod
    def from_config(cls, section: dict) -> InferenceSettings:
        """Settings of the workflow's ``inference`` section (``device`` and ``threads`` are the caller's)."""
        return settings_from_section(cls, section, ignore=("device", "threads"))


@dataclass(frozen=True)
class SpectrumGrids:
    """Where the networks' spectra live and where predictions are delivered.

    Attributes
    ----------
    wave, wave_lowres : ndarray
        Observed-frame grids [Å] of the delivered predictions (those of the observed spectra).
    network_wave, network_wave_lowres : ndarray
        Grids [Å] of the spectra the networks draw: the observed ones, or rest-frame ones.
    frame : {'observed', 'rest'}
        Frame of the networks' spectra.
    z_range : tuple of float
        Redshifts at which rest-frame spectra cover the observed grids, full and low resolution
        (:attr:`img2spec.dataset.DatasetFile.delivery_z_range`); predicted redshifts are clipped to it.
    window, window_frame
        The normalisation window [Å] and its frame (preprocessing's).
    """

    wave: np.ndarray
    wave_lowres: np.ndarray
    network_wave: np.ndarray
    network_wave_lowres: np.ndarray
    frame: str
    z_range: tuple[float, float]
    window: tuple[float, float]
    window_frame: str

    @classmethod
    def of_dataset(cls, dataset_h5: str | Path, frame: str) -> SpectrumGrids:
        with DatasetFile(dataset_h5) as data:
            window, window_frame = data.normalisation
            return cls(
                data.wave,
                data.wave_lowres,
                data.wave_of(frame),
                data.wave_of(frame, lowres=True),
                frame,
                data.delivery_z_range,
                window,
                window_frame,
            )


@dataclass
class TrainedModels:
    """The four trained networks in evaluation mode (the diffusion models' EMA weights).

    Each network carries its own image and spectrum standardisation (saved in its checkpoint).
    """

    cdm_lr: DiffusionTask
    contrastive_lr: ContrastiveTask
    cdm_sr: DiffusionTask
    contrastive_sr: ContrastiveTask
    grids: SpectrumGrids

    @staticmethod
    def load_tasks(checkpoints: dict[str, str | Path], device: str = "cpu") -> dict:
        """The networks of ``checkpoints`` (name → path), which must share one frame."""
        tasks = {}
        for name, path in checkpoints.items():
            task = load_task(path, device).eval()
            if task.network != network(name).name:
                raise ValueError(f"{path}: a checkpoint of {task.network}, given as {name}")
            tasks[name] = task
        frames = {name: task.frame for name, task in tasks.items()}
        if len(set(frames.values())) > 1:
            raise ValueError(f"the networks were trained in different frames: {frames}")
        return tasks

    @classmethod
    def from_dataset(
        cls, checkpoints: dict[str, str | Path], dataset_h5: str | Path, device: str = "cpu"
    ) -> TrainedModels:
        """The networks with the wavelength grids of the dataset they were trained on."""
        tasks = cls.load_tasks(checkpoints, device)
        return cls(**tasks, grids=SpectrumGrids.of_dataset(dataset_h5, tasks["cdm_lr"].frame))

    @property
    def wave(self) -> np.ndarray:
        """Observed-frame grid [Å] of the delivered full-resolution predictions."""
        return self.grids.wave

    @property
    def wave_lowres(self) -> np.ndarray:
        return self.grids.wave_lowres

    @property
    def device(self) -> torch.device:
        return self.cdm_lr.device


def network_input(task, images: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A network's standardised images and photometric features (None without)."""
    pixels = torch.from_numpy(task.image_stats.apply(images)).to(device)
    features = task.image_stats.features(images)
    return pixels, None if features is None else torch.from_numpy(features).to(device)


def _generators(seed: int, ids: np.ndarray, stage: int, count: int, device) -> list[torch.Generator]:
    """One generator per (galaxy, candidate), seeded independently of the batch."""
    generators = []
    for galaxy in ids:
        for candidate in range(count):
            entropy = np.random.SeedSequence([seed, int(galaxy), stage, candidate]).generate_state(1, np.uint64)[0]
            generators.append(torch.Generator(device=device).manual_seed(int(entropy) & 0x7FFFFFFFFFFFFFFF))
    return generators


def check_images(images: np.ndarray, source: str) -> dict[int, str]:
    """Why each unusable cube of (N, 5, 64, 64) cannot be used (:func:`img2spec.cubes.image_problem`), by index.

    Raises
    ------
    InputError
        Naming ``source``, for an array of the wrong shape.
    """
    if images.ndim != 4 or images.shape[1:] != (len(BANDS), 64, 64):
        raise InputError(f"{source}: images have shape {images.shape}; expected (N, 5, 64, 64) ugriz")
    problems = {i: image_problem(cube) for i, cube in enumerate(images)}
    return {i: problem for i, problem in problems.items() if problem}


@torch.no_grad()
def predict_spectra(
    models: TrainedModels,
    images: np.ndarray,
    ids: np.ndarray,
    settings: InferenceSettings,
    log: Callable[[str], None] = lambda message: None,
    keep_candidates: bool = False,
) -> dict[str, np.ndarray]:
    """Predict spectra for cubes ``images`` (N, 5, 64, 64) [nanomaggies] of galaxies ``ids``.

    Networks working in the rest frame draw and rank rest-frame spectra; CDM_lr's redshift head
    gives each galaxy's redshift (clipped to the range the rest-frame grid covers), and every
    delivered spectrum is moved there (:func:`img2spec.preprocessing.move_spectra`).

    Returns
    -------
    dict
        ``flux`` (N, 4500) best candidate, natural log of normalised flux; ``flux_p{p}`` per-pixel
        percentiles of the pooled candidates (:func:`pooled_candidates`); ``flux_lowres`` (N, 563) the best
        low-resolution candidate; all on the observed-frame grids.  ``flux_drawn`` (N, L) the best
        candidate as the networks drew it, in their frame (``grids.network_wave``).  ``z`` (N,) the
        redshift the spectra are placed at (NaN for observed-frame networks, whose spectra carry their own);
        ``score_lr`` (N, k_lr) and ``score_sr`` (N, keep_lr·k_sr)
        cosine similarities; ``kept_lr`` (N, keep_lr) indices of the kept low-resolution candidates;
        ``best_sr`` (N,) index of the selected full-resolution candidate.  With ``keep_candidates``,
        ``candidates`` (N, keep_lr·k_sr, L): every full-resolution candidate as drawn, in the networks'
        frame (for studies of the selection; ``tests/benchmarks/line_hypotheses.py``).
    """
    s = settings
    if s.keep_lr > s.k_lr:
        raise ValueError(f"keep_lr={s.keep_lr} exceeds k_lr={s.k_lr}")
    device = models.device
    cdm_lr, cdm_sr = models.cdm_lr, models.cdm_sr
    condition_stats = cdm_sr.lowres_stats
    if condition_stats is None:
        raise ValueError(
            "cdm_sr has no statistics of its low-resolution condition; it was not trained as the upsampler"
        )
    spacing = None if s.spacing == "auto" else s.spacing
    grids = models.grids
    interp = torch.from_numpy(lowres_to_fullres(grids.network_wave_lowres, grids.network_wave).astype(np.float32))
    interp = interp.to(device)
    # the map cdm_sr's residual is taken on; the candidates' fine structure is what it adds to it
    upsampling = cdm_sr.statistics.upsampling or linear_upsampling(grids.network_wave_lowres, grids.network_wave)
    n_low, n_full = grids.network_wave_lowres.size, grids.network_wave.size
    keys = ("flux", "flux_lowres", "flux_drawn", "z", "score_lr", "score_sr", "kept_lr", "best_sr", "percentiles")
    out: dict[str, list] = {key: [] for key in keys}
    for start in range(0, len(ids), s.batch_galaxies):
        chunk_ids = ids[start : start + s.batch_galaxies]
        b = chunk_ids.size
        raw = images[start : start + b]

        # low resolution: k_lr candidates per galaxy, ranked by contrastive_lr
        # the images are encoded once, for the draws and for the redshift
        pixels, features = network_input(cdm_lr, raw, device)
        image_condition = cdm_lr.ema.conditioned(pixels, None, features)
        lowres = cdm_lr.draw(
            image_condition.repeated(s.k_lr),
            s.sampler,
            s.steps,
            _generators(s.seed, chunk_ids, 0, s.k_lr, device),
            spacing,
        )
        lowres_ln = cdm_lr.stats.restore(lowres)
        lowres_full = upsampling.apply(lowres_ln).view(b, s.k_lr, n_full)
        ranker = models.contrastive_lr
        image_embedding = ranker.model.embed_images(*network_input(ranker, raw, device))
        spectra_embedding = ranker.model.embed_spectra(ranker.stats.standardise(lowres_ln)).view(b, s.k_lr, -1)
        score_lr = torch.einsum("bd,bkd->bk", image_embedding, spectra_embedding)
        kept = score_lr.argsort(dim=1, descending=True)[:, : s.keep_lr]
        kept_ln = torch.gather(lowres_ln.view(b, s.k_lr, n_low), 1, kept[..., None].expand(-1, -1, n_low))

        # full resolution: k_sr candidates from each kept low-resolution spectrum
        condition = (condition_stats.standardise(kept_ln).reshape(-1, n_low) @ interp).repeat_interleave(s.k_sr, dim=0)
        full = cdm_sr.sample(
            *network_input(cdm_sr, raw, device),
            condition,
            s.sampler,
            s.steps,
            _generators(s.seed, chunk_ids, 1, s.keep_lr * s.k_sr, device),
            spacing,
            repeats=s.keep_lr * s.k_sr,
        )
        parents = (
            torch.gather(lowres_full, 1, kept[..., None].expand(-1, -1, n_full))
            .repeat_interleave(s.k_sr, dim=1)
            .view(-1, n_full)
        )
        full_ln = cdm_sr.stats.restore(full)
        if cdm_sr.residual:
            full_ln = full_ln + parents
        full_ln = full_ln.view(b, s.keep_lr * s.k_sr, n_full)
        ranker = models.contrastive_sr
        image_embedding = ranker.model.embed_images(*network_input(ranker, raw, device))
        spectra_embedding = ranker.model.embed_spectra(ranker.stats.standardise(full_ln.reshape(-1, n_full)))
        score_sr = torch.einsum(
            "bd,bkd->bk", image_embedding, spectra_embedding.view(b, -1, spectra_embedding.shape[-1])
        )
        best = score_sr.argmax(dim=1)
        rows = torch.arange(b, device=device)
        flux = full_ln[rows, best].cpu().numpy()
        flux_lowres = kept_ln[rows, best // s.k_sr].cpu().numpy()
        pool = pooled_candidates(lowres_full, full_ln - parents.view(b, -1, n_full))
        # numpy, not torch.quantile, which caps at 2**24 values
        percentiles = np.percentile(pool.cpu().numpy(), s.percentiles, axis=1).transpose(1, 0, 2)
        out["flux_drawn"].append(flux)
        if keep_candidates:
            out.setdefault("candidates", []).append(full_ln.cpu().numpy())
        z = np.full(b, np.nan)
        if grids.frame == "rest":
            # in float64: a float32 clip could round back past the covered range
            z = np.clip(cdm_lr.redshift(image_condition).cpu().numpy().astype(np.float64), *grids.z_range)
            flux, flux_lowres, percentiles = _placed_at(grids, z, flux, flux_lowres, percentiles)
        out["flux"].append(flux)
        out["flux_lowres"].append(flux_lowres)
        out["percentiles"].append(percentiles)
        out["z"].append(z)
        out["score_lr"].append(score_lr.cpu().numpy())
        out["score_sr"].append(score_sr.cpu().numpy())
        out["kept_lr"].append(kept.cpu().numpy())
        out["best_sr"].append(best.cpu().numpy())
        log(f"predicted {start + b}/{len(ids)} galaxies")
    result = {key: np.concatenate(value) for key, value in out.items()}
    for i, p in enumerate(s.percentiles):
        result[band_key(p)] = result["percentiles"][:, i].astype(np.float32)
    del result["percentiles"]
    return result


def _placed_at(
    grids: SpectrumGrids, z: np.ndarray, flux: np.ndarray, flux_lowres: np.ndarray, percentiles: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rest-frame spectra (B, L), (B, L_low) and percentiles (B, P, L) moved to redshifts ``z`` on the observed grids."""

    def move(values: np.ndarray, wave_from: np.ndarray, wave_to: np.ndarray) -> np.ndarray:
        moved, invalid = move_spectra(
            wave_from, values, np.zeros(len(values)), wave_to, z, grids.window, grids.window_frame
        )
        if invalid.any():  # the rest-frame grid covers the observed one at every z of grids.z_range
            raise RuntimeError(f"rest-frame prediction does not cover the observed grid at z = {z}")
        return moved.astype(np.float32)

    n_levels = percentiles.shape[1]
    levels = [move(percentiles[:, i], grids.network_wave, grids.wave) for i in range(n_levels)]
    # each level is interpolated and renormalised on its own, which can swap close levels by up to
    # ~0.01 in ln flux; percentiles of the moved candidates are ordered, so the levels are sorted back
    return (
        move(flux, grids.network_wave, grids.wave),
        move(flux_lowres, grids.network_wave_lowres, grids.wave_lowres),
        np.sort(np.stack(levels, axis=1), axis=1),
    )


def pooled_candidates(lowres: torch.Tensor, fine_structure: torch.Tensor) -> torch.Tensor:
    """Every low-resolution candidate with every full-resolution candidate's fine structure, (B, K·M, L).

    ``lowres`` (B, K, L): all K low-resolution candidates upsampled to the full grid (CDM_sr's
    :class:`img2spec.upsampling.Upsampling`); ``fine_structure`` (B, M, L): each full-resolution candidate
    minus the upsampling of the low-resolution candidate it was drawn from.  The paper's selection
    upsamples only the ``keep_lr`` best low-resolution candidates, so percentiles of its M
    full-resolution candidates see 3 draws of the continuum and understate its spread; the pool spans
    all K draws of the continuum and of the lines their bins carry, with all M draws of the structure
    below the bins' scale, and its per-pixel median estimates the conditional median spectrum.
    """
    return (lowres[:, :, None, :] + fine_structure[:, None, :, :]).flatten(1, 2)


def band_scale(bands: dict[float, np.ndarray], observed_ln: np.ndarray, mask: np.ndarray) -> float:
    """Factor for the bands' distances from the median that makes the outer band hold its nominal share.

    Each good observed pixel above the median is measured in units of the distance from the median
    to the highest percentile, each below it in units of the distance to the lowest; the factor is
    the quantile of those distances at the nominal coverage (0.68 for 16–84%).  This is split
    conformal calibration of a scaled band (Angelopoulos & Bates 2021, Sect. 2.3): fitted on galaxies
    the networks were not trained on, it makes the band hold its nominal share of pixels of new
    galaxies drawn alike, whatever the spread of the diffusion models' samples.

    Parameters
    ----------
    bands : dict
        Percentile → (N, L) natural-log flux; must hold 50 and at least one percentile on each side.
    observed_ln, mask : (N, L)
        Observed natural-log flux and its bad-pixel mask.
    """
    levels = sorted(bands)
    if 50.0 not in bands or levels[0] >= 50 or levels[-1] <= 50:
        raise ValueError(
            f"inference.percentiles {levels}: calibrating the band needs 50 and one percentile on each side of it"
        )
    median, lower, upper = bands[50.0], bands[levels[0]], bands[levels[-1]]
    above = observed_ln >= median
    width = np.where(above, upper - median, median - lower)
    distance = np.abs(observed_ln - median) / np.maximum(width, 1e-6)
    return float(np.quantile(distance[~mask], (levels[-1] - levels[0]) / 100))


def bands_at_redshift(
    grids: SpectrumGrids, bands: dict[float, np.ndarray], z_from: np.ndarray, z_to: np.ndarray
) -> tuple[dict[float, np.ndarray], np.ndarray]:
    """Bands (percentile → (N, L) ln flux) moved from the redshifts they were placed at to ``z_to``, and the
    (N, L) pixels the move leaves uncovered.

    The frame a user compares a band in: at the observed spectrum's redshift, as the evaluation moves
    every prediction (paper Sect. 5.1).  Observed-frame networks' bands (``z_from`` NaN) stay as they are.
    """
    z_from = np.asarray(z_from, np.float64)
    if not np.isfinite(z_from).any():
        return bands, np.zeros(next(iter(bands.values())).shape, bool)
    moved = {}
    uncovered = np.zeros(next(iter(bands.values())).shape, bool)
    for level, band in bands.items():
        moved[level], missing = shift_to_redshift(grids.wave, band, z_from, z_to, grids.window, grids.window_frame)
        uncovered |= missing
    # each level is renormalised on its own (see _placed_at): sorted back into order
    levels = sorted(moved)
    ordered = np.sort(np.stack([np.nan_to_num(moved[p]) for p in levels]), axis=0)
    return {p: ordered[i].astype(np.float32) for i, p in enumerate(levels)}, uncovered


def scale_bands(bands: dict[float, np.ndarray], factor: float) -> dict[float, np.ndarray]:
    """Bands with their distances from the median (percentile 50) multiplied by ``factor``."""
    median = bands[50.0]
    return {p: (median + factor * (band - median)).astype(band.dtype) for p, band in bands.items()}


def _bands(result: dict[str, np.ndarray], percentiles: tuple[float, ...]) -> dict[float, np.ndarray]:
    return {float(p): result[band_key(p)] for p in percentiles}


def _apply_band_scale(result: dict[str, np.ndarray], settings: InferenceSettings, factor: float) -> None:
    for p, band in scale_bands(_bands(result, settings.percentiles), factor).items():
        result[band_key(p)] = band


def calibrate_bands(
    dataset_path, checkpoints: dict, settings: InferenceSettings, out_json, device: str = "cpu"
) -> dict:
    """Predict the first ``settings.calibration_galaxies`` validation galaxies and write the band's scale factor.

    The factor is fitted where a user compares the band with a spectrum: after the move from the
    predicted redshift to the observed one (:func:`bands_at_redshift`), so that it measures the
    spread of the spectra, not the redshift errors.  The JSON holds ``band_scale`` (1 when no galaxy
    is to be used), the galaxies used and the 16–84%-style band's coverage of their observed pixels
    before and after scaling.
    """
    import json

    summary = {
        "split": "val",
        "n_galaxies": 0,
        "band_scale": 1.0,
        "percentiles": list(settings.percentiles),
        "frame": "moved to the observed redshift",
    }
    if settings.calibration_galaxies > 0:
        with DatasetFile(dataset_path) as data:
            rows = data.rows("val")[: settings.calibration_galaxies]
            images, observed, mask, z_spec = (data.read(key, rows) for key in ("images", "flux", "mask", "z_spec"))
            ids = data.specobjid[rows]
        if rows.size == 0:
            raise InputError(f"{dataset_path}: no validation galaxies to calibrate the uncertainty band on")
        models = TrainedModels.from_dataset(checkpoints, dataset_path, device)
        result = predict_spectra(models, images, ids, settings)
        bands, uncovered = bands_at_redshift(models.grids, _bands(result, settings.percentiles), result["z"], z_spec)
        factor = band_scale(bands, observed, mask | uncovered)
        low, high = min(settings.percentiles), max(settings.percentiles)
        scaled = scale_bands(bands, factor)
        summary.update(
            n_galaxies=int(rows.size),
            band_scale=factor,
            coverage_before=band_coverage(bands[low], bands[high], observed, mask | uncovered),
            coverage_after=band_coverage(scaled[low], scaled[high], observed, mask | uncovered),
        )
    with atomic_output(out_json) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2))
    return summary


def read_band_scale(calibration_json: str | Path) -> float:
    """The band's scale factor from a :func:`calibrate_bands` file."""
    import json

    return float(json.loads(Path(calibration_json).read_text())["band_scale"])


def write_prediction_fits(
    path: str | Path,
    specobjid: int,
    wave: np.ndarray,
    flux_ln: np.ndarray,
    bands: dict[str, np.ndarray],
    meta: dict | None = None,
) -> None:
    """One predicted spectrum as a FITS binary table readable by any spectroscopic tool.

    Columns: ``WAVELENGTH`` [Å, vacuum, observed frame], ``FLUX`` (normalised to mean 1 in
    6900–6950 Å, linear), and ``FLUX_P16`` etc. for the percentile bands.
    """
    columns = [
        fits.Column("WAVELENGTH", "D", unit="Angstrom", array=wave),
        fits.Column("FLUX", "E", unit="normalised", array=np.exp(flux_ln)),
    ]
    for name, values in bands.items():
        columns.append(fits.Column(name.upper(), "E", unit="normalised", array=np.exp(values)))
    table = fits.BinTableHDU.from_columns(columns, name="PREDICTION")
    header = fits.Header()
    header["SPECOBJ"] = (str(int(specobjid)), "specObjID of the galaxy")
    header["CREATOR"] = "img2spec"
    for key, value in (meta or {}).items():
        header[key[:8].upper()] = value
    with atomic_output(path) as tmp:
        fits.HDUList([fits.PrimaryHDU(header=header), table]).writeto(tmp)


def network_evaluations(settings: InferenceSettings, timesteps: int) -> int:
    """Denoiser evaluations per galaxy: (k_lr + keep_lr·k_sr) candidates × steps per sample."""
    per_sample = timesteps if settings.sampler == "ancestral" else settings.steps
    return (settings.k_lr + settings.keep_lr * settings.k_sr) * per_sample


def predict_dataset(
    dataset_path,
    checkpoints: dict,
    settings: InferenceSettings,
    out_h5,
    fits_dir,
    summary_json,
    figure_png,
    device: str = "cpu",
    band_factor: float = 1.0,
) -> dict:
    """Predict the test split of ``dataset.h5``; write predictions, per-galaxy FITS, summary and figure.

    ``band_factor`` scales the bands' distances from the median (from :func:`calibrate_bands`); the
    summary gives the test galaxies' band coverage before and after it.  Its agreement numbers
    (Δ̄, MSE) compare the spectra where they are placed, at the predicted redshift, and say so in
    their keys; the evaluation's headline compares them after the move to the observed redshift.
    """
    import json
    import time

    from . import metrics, plots

    with DatasetFile(dataset_path) as data:
        rows = data.rows("test")
        images, observed, mask, z_spec = (data.read(key, rows) for key in ("images", "flux", "mask", "z_spec"))
        ids, morphology = data.specobjid[rows], data.morphology(rows)
    models = TrainedModels.from_dataset(checkpoints, dataset_path, device)
    start = time.perf_counter()
    result = predict_spectra(models, images, ids, settings, log=lambda message: print(message, flush=True))
    seconds = time.perf_counter() - start
    lo, hi = band_key(min(settings.percentiles)), band_key(max(settings.percentiles))
    low, high = float(min(settings.percentiles)), float(max(settings.percentiles))
    coverage_as_drawn = band_coverage(result[lo], result[hi], observed, mask)
    _apply_band_scale(result, settings, band_factor)
    moved, uncovered = bands_at_redshift(models.grids, _bands(result, settings.percentiles), result["z"], z_spec)
    compared = mask | uncovered
    outliers = outlier_model_of_dataset(dataset_path, settings.ood_quantile, log=print)
    result["ood_score"] = outliers.score(images).astype(np.float32)
    result["ood_flag"] = outliers.flag(result["ood_score"])
    with PredictionWriter(out_h5, models.grids, settings, band_factor) as writer:
        writer.append(ids, result)
        writer.h5_attrs(ood_threshold=outliers.threshold, ood_quantile=outliers.quantile)
    Path(fits_dir).mkdir(parents=True, exist_ok=True)
    for i, sid in enumerate(ids):
        bands = {band_key(p): result[band_key(p)][i] for p in settings.percentiles}
        write_prediction_fits(
            Path(fits_dir) / f"{int(sid)}.fits",
            sid,
            models.wave,
            result["flux"][i],
            bands,
            {"SAMPLER": settings.sampler, "STEPS": settings.steps}
            | _ood_header(result, i, outliers)
            | ({"Z": float(result["z"][i])} if np.isfinite(result["z"][i]) else {}),
        )
    deviation = metrics.mean_relative_deviation(result["flux"], observed, mask)
    squared = metrics.mse(result["flux"], observed, mask)
    summary = {
        "n_galaxies": int(ids.size),
        "sampler": settings.sampler,
        "steps": settings.steps,
        "network_evaluations_per_galaxy": network_evaluations(settings, models.cdm_lr.schedule.timesteps),
        "seconds": round(seconds, 2),
        "galaxies_per_second": round(ids.size / seconds, 3),
        "median_mean_relative_deviation_at_predicted_redshift": float(np.median(deviation)),
        "fraction_mean_relative_deviation_below_10pct_at_predicted_redshift": float(np.mean(deviation < 0.1)),
        "median_mse_at_predicted_redshift": float(np.median(squared)),
        "median_mean_relative_deviation_of_candidates_median_at_predicted_redshift": float(
            np.median(metrics.mean_relative_deviation(result[MEDIAN], observed, mask))
        )
        if 50.0 in settings.percentiles
        else None,
        "band_scale": band_factor,
        "ood_threshold": outliers.threshold,
        "ood_nominal_flag_rate": round(1.0 - outliers.quantile, 6),
        "ood_flag_rate": float(np.mean(result["ood_flag"])),
        "coverage_of_16_84_band_as_drawn": coverage_as_drawn,
        "coverage_of_16_84_band_at_predicted_redshift": band_coverage(result[lo], result[hi], observed, mask),
        "coverage_of_16_84_band": band_coverage(moved[low], moved[high], observed, compared),
        "coverage_of_16_84_band_by_morphology": {
            m: band_coverage(
                moved[low][morphology == m],
                moved[high][morphology == m],
                observed[morphology == m],
                compared[morphology == m],
            )
            for m in sorted(set(morphology))
        },
        "median_mean_relative_deviation_by_morphology_at_predicted_redshift": {
            m: float(np.median(deviation[morphology == m])) for m in sorted(set(morphology))
        },
    }
    Path(summary_json).write_text(json.dumps(summary, indent=2))
    picks = []
    for name in ("elliptical", "spiral", "uncertain"):
        picks += list(np.flatnonzero(morphology == name)[:2])
    picks = picks[:6] or list(range(min(4, ids.size)))
    labels = [f"specObjID {ids[i]}  {morphology[i]}  Δ̄ = {100 * deviation[i]:.1f}%" for i in picks]
    plots.prediction_examples(
        models.wave,
        observed[picks],
        result["flux"][picks],
        result[lo][picks],
        result[hi][picks],
        images[picks],
        labels,
        figure_png,
    )
    return summary


def _ood_header(result: dict[str, np.ndarray], i: int, outliers: OutlierModel) -> dict:
    """FITS header cards of galaxy ``i``'s out-of-distribution score and flag."""
    return {
        "OODSCORE": float(result["ood_score"][i]),
        "OODFLAG": bool(result["ood_flag"][i]),
        "OODTHRES": outliers.threshold,
    }


def predict_isolated(
    models: TrainedModels, images: np.ndarray, ids: np.ndarray, settings: InferenceSettings
) -> tuple[dict[str, np.ndarray], dict[int, str]]:
    """:func:`predict_spectra`, one galaxy at a time if the batch fails, so that one galaxy never costs the others.

    Returns the predictions of the galaxies that succeeded and, by position in ``ids``, why the others
    failed.  Prediction does not depend on batching, so the results equal a whole-batch run's.
    """
    try:
        return predict_spectra(models, images, ids, settings), {}
    except (RuntimeError, ValueError, InputError):
        if len(ids) == 1:
            raise
    parts, failures = [], {}
    for i in range(len(ids)):
        try:
            parts.append(predict_spectra(models, images[i : i + 1], ids[i : i + 1], settings))
        except (RuntimeError, ValueError, InputError) as err:
            failures[i] = f"prediction failed: {err}"
    if not parts:
        return {}, failures
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}, failures


def predict_cube_file(
    cubes_path,
    dataset_path,
    checkpoints: dict,
    settings: InferenceSettings,
    out_h5,
    rejects_csv,
    device: str = "cpu",
    band_factor: float = 1.0,
    chunk_galaxies: int = 512,
    log: Callable[[str], None] = lambda message: None,
) -> int:
    """Predict spectra for every usable cube of a cube file, ``chunk_galaxies`` cubes at a time.

    Each galaxy stands alone: a cube that cannot be used (:func:`img2spec.cubes.image_problem`: non-finite
    pixels, a missing band, not sky-subtracted flux in nanomaggies), a repeated specObjID, or a galaxy
    whose prediction fails is listed in ``rejects_csv`` (specObjID, position in the file, reason, file)
    and the others are delivered.  Every delivered galaxy carries its out-of-distribution score and
    flag (:mod:`img2spec.outliers`).  Memory is bounded by the chunk, not by the file.

    ``dataset_path`` provides the training image statistics and wavelength grids; ``band_factor``
    the band calibration (:func:`calibrate_bands`).  Returns the number of galaxies predicted.

    Raises
    ------
    InputError
        For a file with the wrong shape or band order (see :func:`img2spec.cubes.open_cube_file`), or
        when no cube could be predicted (the rejects file is written first).
    """
    import pandas as pd

    from .cubes import open_cube_file

    models = TrainedModels.from_dataset(checkpoints, dataset_path, device)
    outliers = outlier_model_of_dataset(dataset_path, settings.ood_quantile, log=log)
    rejects: list[tuple[int, int, str]] = []
    first_position: dict[int, int] = {}

    def write_rejects() -> None:
        table = pd.DataFrame(rejects, columns=["specObjID", "position", "reason"]).assign(file=str(cubes_path))
        with atomic_output(rejects_csv) as tmp:
            table.to_csv(tmp, index=False)

    try:
        with (
            open_cube_file(cubes_path) as cubes,
            PredictionWriter(out_h5, models.grids, settings, band_factor) as writer,
        ):
            for start in range(0, len(cubes), chunk_galaxies):
                images = cubes.read(slice(start, start + chunk_galaxies))
                ids = cubes.specobjid[start : start + len(images)]
                problems = check_images(images, str(cubes_path))
                for i, sid in enumerate(ids.tolist()):
                    if sid in first_position:
                        problems.setdefault(i, f"duplicate specObjID (first at position {first_position[sid]})")
                    else:
                        first_position[sid] = start + i
                usable = np.array([i for i in range(len(ids)) if i not in problems], dtype=int)
                result, failures = (
                    predict_isolated(models, images[usable], ids[usable], settings) if usable.size else ({}, {})
                )
                problems.update({int(usable[i]): reason for i, reason in failures.items()})
                rejects.extend((int(ids[i]), start + i, problems[i]) for i in sorted(problems))
                done = np.array([i for i in usable if i not in problems], dtype=int)
                if done.size:
                    _apply_band_scale(result, settings, band_factor)
                    result["ood_score"] = outliers.score(images[done]).astype(np.float32)
                    result["ood_flag"] = outliers.flag(result["ood_score"])
                    writer.append(ids[done], result)
                log(f"{start + len(images)}/{len(cubes)} cubes: {writer.n_written} predicted, {len(rejects)} rejected")
            writer.h5_attrs(ood_threshold=outliers.threshold, ood_quantile=outliers.quantile)
            if writer.n_written == 0:
                position, sid, reason = rejects[0][1], rejects[0][0], rejects[0][2]
                raise InputError(
                    f"{cubes_path}: no usable cube (e.g. specObjID {sid} at position {position}: {reason})"
                )
            return writer.n_written
    finally:
        write_rejects()
