"""Figures of the pipeline, one function per figure; each writes a PNG and returns nothing."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .mock.population import kauffmann03, kewley01  # noqa: E402


def gri_composite(cube: np.ndarray, scale: float | None = None) -> np.ndarray:
    """RGB image (64, 64, 3) from a (5, 64, 64) ugriz cube: i, r, g as red, green, blue, asinh-stretched."""
    rgb = np.stack([cube[3], cube[2], cube[1]], axis=-1)
    scale = scale if scale is not None else max(np.percentile(rgb, 99.5), 1e-3)
    return np.clip(np.arcsinh(rgb / (0.1 * scale)) / np.arcsinh(10.0), 0, 1)


def dataset_examples(
    images: np.ndarray,
    wave: np.ndarray,
    flux: np.ndarray,
    wave_lowres: np.ndarray,
    flux_lowres: np.ndarray,
    labels: list[str],
    path: str | Path,
) -> None:
    """Image and spectrum pairs as the networks see them: gri composite, log flux, low-res target."""
    n = len(labels)
    fig, axes = plt.subplots(n, 2, figsize=(11, 2.1 * n), gridspec_kw={"width_ratios": [1, 4]}, squeeze=False)
    for row, label in enumerate(labels):
        axes[row, 0].imshow(gri_composite(images[row]), origin="lower")
        axes[row, 0].set_axis_off()
        axes[row, 1].plot(wave, flux[row], lw=0.5, color="0.3", label="log flux, 1 Å")
        axes[row, 1].plot(wave_lowres, flux_lowres[row], lw=1.0, color="C1", label="low-res target, 8 Å")
        axes[row, 1].set_ylabel("ln F / F(6900–6950)")
        axes[row, 1].set_title(label, fontsize=8, loc="left")
    axes[0, 1].legend(fontsize=7, loc="lower right")
    axes[-1, 1].set_xlabel("observed wavelength [Å]")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def colour_mass(logmass: np.ndarray, u_minus_r: np.ndarray, quenched: np.ndarray, path: str | Path) -> None:
    """u − r colour against stellar mass, with the histogram of u − r (the red sequence and blue cloud)."""
    fig, (ax, hist) = plt.subplots(1, 2, figsize=(9, 3.8), gridspec_kw={"width_ratios": [3, 1]}, sharey=True)
    ax.scatter(logmass[~quenched], u_minus_r[~quenched], s=3, alpha=0.5, color="C0", label="star-forming (truth)")
    ax.scatter(logmass[quenched], u_minus_r[quenched], s=3, alpha=0.5, color="C3", label="quenched (truth)")
    ax.set_xlabel("log stellar mass formed [M$_\\odot$]")
    ax.set_ylabel("u − r (model magnitudes)")
    ax.legend(fontsize=8, markerscale=3)
    hist.hist(u_minus_r, bins=40, orientation="horizontal", color="0.4")
    hist.set_xlabel("galaxies")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bpt_diagram(log_nii_ha: np.ndarray, log_oiii_hb: np.ndarray, classes: np.ndarray, path: str | Path, title: str = "") -> None:
    """[N II]/Hα versus [O III]/Hβ with the Kauffmann et al. (2003) and Kewley et al. (2001) lines."""
    fig, ax = plt.subplots(figsize=(5, 4.2))
    for name, colour in (("star-forming", "C0"), ("AGN", "C3"), ("composite", "C2"), ("passive", "0.6")):
        sel = classes == name
        if sel.any():
            ax.scatter(log_nii_ha[sel], log_oiii_hb[sel], s=4, alpha=0.6, color=colour, label=f"{name} ({sel.sum()})")
    x = np.linspace(-2.0, 0.0, 200)
    ax.plot(x, kauffmann03(x), "k--", lw=1, label="Kauffmann+03")
    x = np.linspace(-2.0, 0.4, 200)
    ax.plot(x, kewley01(x), "k-", lw=1, label="Kewley+01")
    ax.set_xlim(-1.6, 0.6)
    ax.set_ylim(-1.4, 1.4)
    ax.set_xlabel("log [N II]6584 / Hα")
    ax.set_ylabel("log [O III]5007 / Hβ")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def mock_examples(
    cubes: np.ndarray, spectra: list[tuple[np.ndarray, np.ndarray, np.ndarray]], truth: pd.DataFrame, path: str | Path
) -> None:
    """Mock galaxies as observed: gri composite and fiber spectrum with its noiseless model."""
    n = len(spectra)
    fig, axes = plt.subplots(n, 2, figsize=(11, 2.1 * n), gridspec_kw={"width_ratios": [1, 4]}, squeeze=False)
    for row, ((wave, flux, model), (_, t)) in enumerate(zip(spectra, truth.iterrows())):
        axes[row, 0].imshow(gri_composite(cubes[row]), origin="lower")
        axes[row, 0].set_axis_off()
        axes[row, 1].plot(wave, flux, lw=0.4, color="0.5", label="observed")
        axes[row, 1].plot(wave, model, lw=0.7, color="C3", label="noiseless model")
        top = np.percentile(model, 99.5) * 1.3
        axes[row, 1].set_ylim(min(0, np.percentile(flux, 0.5)), top)
        axes[row, 1].set_title(
            f"z={t.z:.3f}  {t.morphology}  {t.bpt_class}  log age={t.age_lw:.2f}  [M/H]={t.metallicity_lw:+.2f}  "
            f"E(B−V)={t.ebv:.2f}  σ*={t.sigma_star:.0f} km/s",
            fontsize=8,
            loc="left",
        )
        axes[row, 1].set_ylabel("F$_\\lambda$ [10$^{-17}$ cgs]")
    axes[0, 1].legend(fontsize=7, loc="upper right")
    axes[-1, 1].set_xlabel("observed wavelength [Å]")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def loss_curve(metrics_csv: str | Path, network: str, path: str | Path) -> None:
    """Training loss and validation metrics of one network against step, from Lightning's metrics.csv."""
    metrics = pd.read_csv(metrics_csv)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    train = metrics.dropna(subset=["train_loss"]) if "train_loss" in metrics else metrics.iloc[:0]
    ax.plot(train["step"], train["train_loss"], lw=0.8, color="0.5", label="train loss")
    for column, colour in (("val_loss", "C0"), ("val_mse", "C3"), ("val_top1", "C2")):
        if column in metrics:
            rows = metrics.dropna(subset=[column])
            ax.plot(rows["step"], rows[column], "o-", color=colour, label=column)
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_title(network)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def prediction_examples(wave: np.ndarray, observed: np.ndarray, predicted: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                        images: np.ndarray, labels: list[str], path: str | Path) -> None:
    """Predicted against observed spectra, like Figure 2 of Doorenbos, Sextl et al. (2024)."""
    n = len(labels)
    fig, axes = plt.subplots(n, 2, figsize=(11, 2.1 * n), gridspec_kw={"width_ratios": [1, 4]}, squeeze=False)
    for row, label in enumerate(labels):
        axes[row, 0].imshow(gri_composite(images[row]), origin="lower")
        axes[row, 0].set_axis_off()
        ax = axes[row, 1]
        ax.fill_between(wave, np.exp(lower[row]), np.exp(upper[row]), color="C0", alpha=0.3, lw=0, label="16–84% of candidates")
        ax.plot(wave, np.exp(observed[row]), lw=0.5, color="k", label="observed")
        ax.plot(wave, np.exp(predicted[row]), lw=0.6, color="C3", label="predicted")
        ax.set_title(label, fontsize=8, loc="left")
        ax.set_ylabel("F / F(6900–6950)")
    axes[0, 1].legend(fontsize=7, loc="lower right")
    axes[-1, 1].set_xlabel("observed wavelength [Å]")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def deviation_histograms(table: pd.DataFrame, group: str, path: str | Path) -> None:
    """Histograms of Δ̄ and MSE per morphology group, like Figure 5 of Doorenbos, Sextl et al. (2024)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for column, ax, label in (("mean_relative_deviation", axes[0], "Δ̄ (mean relative deviation)"), ("mse", axes[1], "MSE of ln flux")):
        values = table[column]
        bins = np.linspace(0, np.nanpercentile(values, 99), 30)
        for name in sorted(table[group].unique()):
            sel = table[group] == name
            ax.hist(values[sel], bins=bins, histtype="step", lw=1.5, label=f"{name} ({sel.sum()}, median {values[sel].median():.3f})")
        ax.set_xlabel(label)
        ax.set_ylabel("galaxies")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
