"""Predicting spectra from images: candidates, contrastive selection and uncertainty bands (the method).

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
from typing import ClassVar

import numpy as np
import torch

from ..cubes import image_problem
from ..dataset import DatasetFile
from ..io import BANDS, InputError
from ..networks import network
from ..predictions import FLUX, FLUX_CONTRASTIVE_BEST, FLUX_DRAWN, FLUX_LOWRES, REDSHIFT, band_key
from ..preprocessing import move_spectra
from ..settings import Settings
from ..tasks import ContrastiveTask, DiffusionTask, load_task
from ..upsampling import linear_upsampling, lowres_to_fullres


@dataclass(frozen=True, kw_only=True)
class InferenceSettings(Settings):
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
    final_noise_lr, final_noise_sr : float
        Noise variance, in each CDM's standardised units, at which its sampling ends with its x0
        estimate (:meth:`NoiseSchedule.final_step`; paper: 0, down to the clean end).  Both CDMs learn
        noisy observed spectra, so the last steps of a sample only draw observational noise (on 1 Å
        pixels correlated over a few pixels by the resolution matching): noise that made the selected
        candidate deviate from the noiseless truth more than the observation does, with troughs beside
        the lines (issue 25).
    typicality_sr : float
        Weight γ of the full-resolution candidates' atypicality (:func:`atypicality`) in their
        selection: the selected candidate maximises contrastive_sr's logit (cosine similarity over its
        temperature) minus γ × atypicality.  0 is the paper's selection, which is delivered beside it
        whatever γ (``flux_contrastive_best``).  An InfoNCE critic learns
        log p(s|x)/p(s) (Oord et al. 2018), so its argmax among draws from p(s|x) favours spectra rare
        overall, such as strong [O III] (issue 25); the atypicality, −log p(s|x) per pixel of a Gaussian
        fitted to the draws themselves, pulls the choice back toward what the image makes likely.
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

    SECTION: ClassVar[str] = "inference"
    CALLERS_KEYS: ClassVar[tuple[str, ...]] = ("device", "threads")

    k_lr: int
    keep_lr: int
    k_sr: int
    sampler: str
    steps: int
    spacing: str
    final_noise_lr: float
    final_noise_sr: float
    typicality_sr: float
    percentiles: tuple[float, ...]
    calibration_galaxies: int
    batch_galaxies: int
    seed: int
    ood_quantile: float


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
        ``flux`` (N, 4500) the selected candidate, natural log of normalised flux;
        ``flux_contrastive_best`` (N, 4500) the candidate contrastive_sr alone scores best (the
        paper's selection, Sect. 3.3; equal to ``flux`` when ``typicality_sr`` is 0); ``flux_p{p}`` per-pixel
        percentiles of the pooled candidates (:func:`pooled_candidates`); ``flux_lowres`` (N, 563) the best
        low-resolution candidate; all on the observed-frame grids.  ``flux_drawn`` (N, L) the best
        candidate as the networks drew it, in their frame (``grids.network_wave``).  ``z`` (N,) the
        redshift the spectra are placed at (NaN for observed-frame networks, whose spectra carry their own);
        ``score_lr`` (N, k_lr) and ``score_sr`` (N, keep_lr·k_sr)
        cosine similarities; ``atypicality_sr`` (N, keep_lr·k_sr) the full-resolution candidates'
        :func:`atypicality`; ``kept_lr`` (N, keep_lr) indices of the kept low-resolution candidates;
        ``best_sr`` (N,) index of the selected full-resolution candidate.  With ``keep_candidates``,
        ``candidates`` (N, keep_lr·k_sr, L): every full-resolution candidate as drawn, in the networks'
        frame, and ``candidate_parents`` (same shape): the upsampled low-resolution candidate each was
        drawn from (for studies of the selection and of CDM_sr; ``tests/benchmarks/line_hypotheses.py``,
        ``sr_headroom.py``).
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
    # the prediction file's datasets (img2spec.predictions) and the scores and choices behind them
    keys = (
        FLUX,
        FLUX_CONTRASTIVE_BEST,
        FLUX_LOWRES,
        FLUX_DRAWN,
        REDSHIFT,
        "score_lr",
        "score_sr",
        "atypicality_sr",
        "kept_lr",
        "best_sr",
        "percentiles",
    )
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
            s.final_noise_lr,
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
            final_noise=s.final_noise_sr,
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
        atypical = atypicality(full_ln)
        best = (score_sr / ranker.model.temperature - s.typicality_sr * atypical).argmax(dim=1)
        rows = torch.arange(b, device=device)
        flux = full_ln[rows, best].cpu().numpy()
        flux_contrastive_best = full_ln[rows, score_sr.argmax(dim=1)].cpu().numpy()
        flux_lowres = kept_ln[rows, best // s.k_sr].cpu().numpy()
        pool = pooled_candidates(lowres_full, full_ln - parents.view(b, -1, n_full))
        # numpy, not torch.quantile, which caps at 2**24 values
        percentiles = np.percentile(pool.cpu().numpy(), s.percentiles, axis=1).transpose(1, 0, 2)
        out[FLUX_DRAWN].append(flux)
        if keep_candidates:
            out.setdefault("candidates", []).append(full_ln.cpu().numpy())
            out.setdefault("candidate_parents", []).append(parents.view(b, -1, n_full).cpu().numpy())
        z = np.full(b, np.nan)
        if grids.frame == "rest":
            # in float64: a float32 clip could round back past the covered range
            z = np.clip(cdm_lr.redshift(image_condition).cpu().numpy().astype(np.float64), *grids.z_range)
            flux, flux_contrastive_best, flux_lowres, percentiles = _placed_at(
                grids, z, flux, flux_contrastive_best, flux_lowres, percentiles
            )
        out[FLUX].append(flux)
        out[FLUX_CONTRASTIVE_BEST].append(flux_contrastive_best)
        out[FLUX_LOWRES].append(flux_lowres)
        out["percentiles"].append(percentiles)
        out[REDSHIFT].append(z)
        out["score_lr"].append(score_lr.cpu().numpy())
        out["score_sr"].append(score_sr.cpu().numpy())
        out["atypicality_sr"].append(atypical.cpu().numpy())
        out["kept_lr"].append(kept.cpu().numpy())
        out["best_sr"].append(best.cpu().numpy())
        log(f"predicted {start + b}/{len(ids)} galaxies")
    result = {key: np.concatenate(value) for key, value in out.items()}
    for i, p in enumerate(s.percentiles):
        result[band_key(p)] = result["percentiles"][:, i].astype(np.float32)
    del result["percentiles"]
    return result


def _placed_at(
    grids: SpectrumGrids,
    z: np.ndarray,
    flux: np.ndarray,
    flux_contrastive_best: np.ndarray,
    flux_lowres: np.ndarray,
    percentiles: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rest-frame spectra (B, L), (B, L), (B, L_low) and percentiles (B, P, L) moved to redshifts ``z`` on the
    observed grids."""

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
        move(flux_contrastive_best, grids.network_wave, grids.wave),
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


def atypicality(candidates: torch.Tensor) -> torch.Tensor:
    """How far each of a galaxy's candidates lies from the others, (B, K), for ``candidates`` (B, K, L).

    The mean over pixels of the squared deviation from the candidates' per-pixel median (the lower of
    the middle two for an even K), in units of their per-pixel spread (1.4826 × median absolute
    deviation, the standard deviation for Gaussian draws).  A candidate drawn like the others from a
    Gaussian scores about 1 (1.3 among 15, whose spread is often estimated small); one whose lines or
    continuum few others share scores more.  Up to constants it is −log p(s|x) per pixel under a
    Gaussian fitted to the draws, which ignores that neighbouring pixels are correlated.
    """
    median = candidates.median(dim=1, keepdim=True).values
    spread = 1.4826 * (candidates - median).abs().median(dim=1, keepdim=True).values
    # pixels where the draws agree exactly (masked or clipped) carry no information on typicality
    spread = spread.clamp_min(1e-3)
    return ((candidates - median) / spread).square().mean(dim=-1)
