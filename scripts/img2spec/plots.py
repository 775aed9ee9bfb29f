"""Figures of the pipeline, one function per figure; each writes a PNG and returns nothing."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .fitresults import FITTERS, fit_column
from .preprocessing import NORMALISATION_WINDOW
from .spectral import bpt_ratios, kauffmann03, kewley01

#: The normalisation window as the axis labels write it.
WINDOW = "{:g}–{:g}".format(*NORMALISATION_WINDOW)


def _save(fig, path: str | Path) -> None:
    """Write ``fig`` to ``path`` (its folder made) and close it: every figure of the pipeline ends here."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def gri_composite(cube: np.ndarray, scale: float | None = None) -> np.ndarray:
    """RGB image (64, 64, 3) from a (5, 64, 64) ugriz cube: i, r, g as red, green, blue, asinh-stretched."""
    rgb = np.stack([cube[3], cube[2], cube[1]], axis=-1)
    scale = scale if scale is not None else max(np.percentile(rgb, 99.5), 1e-3)
    return np.clip(np.arcsinh(rgb / (0.1 * scale)) / np.arcsinh(10.0), 0, 1)


def _image_and_spectrum_rows(cubes: np.ndarray, n: int):
    """A figure of ``n`` rows: each galaxy's gri composite on the left, an axis for its spectrum on the right."""
    fig, axes = plt.subplots(n, 2, figsize=(11, 2.1 * n), gridspec_kw={"width_ratios": [1, 4]}, squeeze=False)
    for row in range(n):
        axes[row, 0].imshow(gri_composite(cubes[row]), origin="lower")
        axes[row, 0].set_axis_off()
    return fig, axes[:, 1]


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
    fig, spectrum_axes = _image_and_spectrum_rows(images, len(labels))
    for row, label in enumerate(labels):
        spectrum_axes[row].plot(wave, flux[row], lw=0.5, color="0.3", label="log flux, 1 Å")
        spectrum_axes[row].plot(wave_lowres, flux_lowres[row], lw=1.0, color="C1", label="low-res target, 8 Å")
        spectrum_axes[row].set_ylabel(f"ln F / F({WINDOW})")
        spectrum_axes[row].set_title(label, fontsize=8, loc="left")
    spectrum_axes[0].legend(fontsize=7, loc="lower right")
    spectrum_axes[-1].set_xlabel("observed wavelength [Å]")
    _save(fig, path)


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
    _save(fig, path)


def _bpt_frame(ax, title: str) -> None:
    """The [N II] BPT panel's demarcations (Kauffmann et al. 2003 dashed, Kewley et al. 2001 solid, as the
    paper's Figure 12), limits, labels and legend: one look for every BPT figure."""
    x = np.linspace(-2.0, 0.0, 200)
    ax.plot(x, kauffmann03(x), color="0.25", ls="--", lw=1.2, label="Kauffmann+03")
    x = np.linspace(-2.0, 0.4, 200)
    ax.plot(x, kewley01(x), color="0.25", ls="-", lw=1.2, label="Kewley+01")
    ax.set(xlim=(-1.6, 0.6), ylim=(-1.4, 1.4), xlabel="log [N II]6584 / Hα", ylabel="log [O III]5007 / Hβ")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower left")


def bpt_diagram(
    log_nii_ha: np.ndarray, log_oiii_hb: np.ndarray, classes: np.ndarray, path: str | Path, title: str = ""
) -> None:
    """[N II]/Hα versus [O III]/Hβ with the Kauffmann et al. (2003) and Kewley et al. (2001) lines."""
    fig, ax = plt.subplots(figsize=(5, 4.2))
    for name, colour in (("star-forming", "C0"), ("AGN", "C3"), ("composite", "C2"), ("passive", "0.6")):
        sel = classes == name
        if sel.any():
            ax.scatter(log_nii_ha[sel], log_oiii_hb[sel], s=4, alpha=0.6, color=colour, label=f"{name} ({sel.sum()})")
    _bpt_frame(ax, title)
    _save(fig, path)


def emission_classes(
    log_nii_ha: np.ndarray,
    log_oiii_hb: np.ndarray,
    log_mstar: np.ndarray,
    classes: np.ndarray,
    relation: tuple[np.ndarray, np.ndarray],
    path: str | Path,
    relation_label: str = "",
) -> None:
    """BPT density with the demarcation lines, and the fraction of each class against stellar mass.

    Parameters
    ----------
    log_nii_ha, log_oiii_hb : ndarray
        Line ratios of every galaxy (NaN where a line is missing; left out of the density).
    log_mstar : ndarray
        Present-day stellar mass [log M_sun].
    classes : ndarray of str
        :data:`img2spec.spectral.BPT_CLASSES` per galaxy.
    relation : (ndarray, ndarray)
        Stellar mass [log M_sun] and the literature AGN fraction drawn beside the measured one.
    """
    fig, (ax, frac_ax) = plt.subplots(1, 2, figsize=(10, 4.2))
    ok = np.isfinite(log_nii_ha) & np.isfinite(log_oiii_hb) & (classes != "passive")
    counts, xe, ye = np.histogram2d(log_nii_ha[ok], log_oiii_hb[ok], bins=(70, 70), range=((-1.6, 0.6), (-1.4, 1.4)))
    ax.imshow(
        np.log10(counts.T + 1), origin="lower", extent=(xe[0], xe[-1], ye[0], ye[-1]), aspect="auto", cmap="Greys"
    )
    _bpt_frame(ax, f"emission-line galaxies ({ok.sum()} of {classes.size}), log density")

    edges = np.arange(9.5, 11.76, 0.25)
    centres = 0.5 * (edges[1:] + edges[:-1])
    which = np.digitize(log_mstar, edges) - 1
    for name, colour in (("passive", "0.5"), ("star-forming", "C0"), ("AGN", "C3")):
        fraction = np.full(centres.size, np.nan)
        for b in range(centres.size):
            in_bin = which == b
            if in_bin.sum() >= 10:
                fraction[b] = np.mean(classes[in_bin] == name)
        total = np.mean(classes == name)
        frac_ax.plot(centres, fraction, "o-", color=colour, label=f"{name} ({total:.2f} of all)")
    frac_ax.plot(*relation, "k:", lw=1.5, label=relation_label or "literature AGN fraction")
    frac_ax.set_xlabel("log M* [M$_\\odot$]")
    frac_ax.set_ylabel("fraction of galaxies")
    frac_ax.set_ylim(0, 1)
    frac_ax.legend(fontsize=7, loc="center right")
    _save(fig, path)


def mock_examples(
    cubes: np.ndarray, spectra: list[tuple[np.ndarray, np.ndarray, np.ndarray]], truth: pd.DataFrame, path: str | Path
) -> None:
    """Mock galaxies as observed: gri composite and fiber spectrum with its noiseless model."""
    fig, spectrum_axes = _image_and_spectrum_rows(cubes, len(spectra))
    for row, ((wave, flux, model), (_, t)) in enumerate(zip(spectra, truth.iterrows())):
        spectrum_axes[row].plot(wave, flux, lw=0.4, color="0.5", label="observed")
        spectrum_axes[row].plot(wave, model, lw=0.7, color="C3", label="noiseless model")
        top = np.percentile(model, 99.5) * 1.3
        spectrum_axes[row].set_ylim(min(0, np.percentile(flux, 0.5)), top)
        spectrum_axes[row].set_title(
            f"z={t.z:.3f}  {t.morphology}  {t.bpt_class}  log age={t.age_lw:.2f}  [M/H]={t.metallicity_lw:+.2f}  "
            f"E(B−V)={t.ebv:.2f}  σ*={t.sigma_star:.0f} km/s",
            fontsize=8,
            loc="left",
        )
        spectrum_axes[row].set_ylabel("F$_\\lambda$ [10$^{-17}$ cgs]")
    spectrum_axes[0].legend(fontsize=7, loc="upper right")
    spectrum_axes[-1].set_xlabel("observed wavelength [Å]")
    _save(fig, path)


def loss_curve(metrics_csv: str | Path, network: str, path: str | Path) -> None:
    """Training loss and validation metrics of one network against step, from Lightning's metrics.csv."""
    metrics = pd.read_csv(metrics_csv)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    train = metrics.dropna(subset=["train_loss"]) if "train_loss" in metrics else metrics.iloc[:0]
    ax.plot(train["step"], train["train_loss"], lw=0.8, color="0.5", label="train loss")
    for column, colour, style in (
        ("val_loss", "C0", "o-"),
        ("val_mse", "C3", "o-"),
        ("val_top1", "C2", "o-"),
        ("val_regression_mse", "C1", "o-"),
        ("val_mean_mse", "C4", "o-"),
        ("val_upsampled_mse", "C4", "--"),  # the references of CDM_sr's conditional mean, constant in training
        ("val_reference_mse", "k", ":"),
    ):
        if column in metrics:
            rows = metrics.dropna(subset=[column])
            ax.plot(rows["step"], rows[column], style, color=colour, label=column)
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_title(network)
    ax.legend(fontsize=8)
    _save(fig, path)


def prediction_examples(
    wave: np.ndarray,
    observed: np.ndarray,
    predicted: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    images: np.ndarray,
    labels: list[str],
    path: str | Path,
) -> None:
    """Predicted against observed spectra, like Figure 2 of Doorenbos, Sextl et al. (2024)."""
    fig, spectrum_axes = _image_and_spectrum_rows(images, len(labels))
    for row, label in enumerate(labels):
        ax = spectrum_axes[row]
        ax.fill_between(
            wave, np.exp(lower[row]), np.exp(upper[row]), color="C0", alpha=0.3, lw=0, label="16–84% of candidates"
        )
        ax.plot(wave, np.exp(observed[row]), lw=0.5, color="k", label="observed")
        ax.plot(wave, np.exp(predicted[row]), lw=0.6, color="C3", label="predicted")
        ax.set_title(label, fontsize=8, loc="left")
        ax.set_ylabel(f"F / F({WINDOW})")
    spectrum_axes[0].legend(fontsize=7, loc="lower right")
    spectrum_axes[-1].set_xlabel("observed wavelength [Å]")
    _save(fig, path)


#: Rest-frame windows [Å] of :func:`line_zoom`: Hβ–[O III] and Hα–[N II].
ZOOM_WINDOWS = ((4835.0, 5020.0), (6530.0, 6600.0))


def line_zoom(
    wave: np.ndarray,
    z: np.ndarray,
    observed_ln: np.ndarray,
    predictors: dict[str, np.ndarray],
    labels: list[str],
    path: str | Path,
) -> None:
    """Hβ–[O III] and Hα–[N II] of example galaxies: observed spectrum and each predictor's, in the rest frame.

    Parameters
    ----------
    wave : ndarray, (L,)
        Observed wavelengths [Å].
    z : ndarray, (N,)
        Observed redshifts; every spectrum is at it.
    observed_ln : ndarray, (N, L)
    predictors : dict of ndarray
        Name → (N, L) natural-log spectra.
    labels : list of str
        A title per galaxy.
    """
    n = len(labels)
    fig, axes = plt.subplots(n, 2, figsize=(11, 1.9 * n + 0.6), squeeze=False)
    for i in range(n):
        rest = wave / (1 + z[i])
        for j, (lo, hi) in enumerate(ZOOM_WINDOWS):
            ax = axes[i, j]
            inside = (rest >= lo) & (rest <= hi)
            ax.plot(rest[inside], np.exp(observed_ln[i, inside]), color="0.4", lw=1.6, label="observed")
            for k, (name, spectra) in enumerate(predictors.items()):
                ax.plot(rest[inside], np.exp(spectra[i, inside]), color=f"C{k}", lw=0.9, label=name)
            ax.set_xlim(lo, hi)
            if j == 0:
                ax.set_title(labels[i], fontsize=8, loc="left")
    axes[-1, 1].legend(fontsize=6, loc="upper right")
    for j in range(2):
        axes[-1, j].set_xlabel("rest wavelength [Å]")
    _save(fig, path)


def deviation_histograms(table: pd.DataFrame, group: str, path: str | Path) -> None:
    """Histograms of Δ̄ and MSE per morphology group, like Figure 5 of Doorenbos, Sextl et al. (2024)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for column, ax, label in (
        ("mean_relative_deviation", axes[0], "Δ̄ (mean relative deviation)"),
        ("mse", axes[1], "MSE of ln flux"),
    ):
        values = table[column]
        bins = np.linspace(0, np.nanpercentile(values, 99), 30)
        for name in sorted(table[group].unique()):
            sel = table[group] == name
            ax.hist(
                values[sel],
                bins=bins,
                histtype="step",
                lw=1.5,
                label=f"{name} ({sel.sum()}, median {values[sel].median():.3f})",
            )
        ax.set_xlabel(label)
        ax.set_ylabel("galaxies")
        ax.legend(fontsize=7)
    _save(fig, path)


def redshift_density(z_true: np.ndarray, z_predicted: np.ndarray, summary: dict, path: str | Path) -> None:
    """Redshift measured on predicted spectra against the catalog's, as a density (Figure 6)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    lo, hi = np.nanmin(z_true) - 0.01, np.nanmax(z_true) + 0.01
    axes[0].hexbin(z_true, np.clip(z_predicted, lo, hi), gridsize=30, extent=(lo, hi, lo, hi), mincnt=1, cmap="viridis")
    axes[0].plot([lo, hi], [lo, hi], "w--", lw=1)
    axes[0].set(
        xlabel="catalog z",
        ylabel="z of the predicted spectrum (clipped to the panel)",
        title=f"σ_MAD {summary['sigma_mad']:.4f}, outliers {summary['outlier_fraction']:.1%}",
    )
    dz = (np.asarray(z_predicted) - np.asarray(z_true)) / (1 + np.asarray(z_true))
    axes[1].hist(np.clip(dz, -0.05, 0.05), bins=50, color="C0")
    axes[1].set(xlabel="Δz / (1+z) (clipped at ±0.05)", ylabel="galaxies")
    _save(fig, path)


PROPERTY_LABELS = {
    "log_age": "log age [yr]",
    "metallicity": "[M/H] [dex]",
    "ebv": "E(B−V) [mag]",
    "sigma_star": "σ* [km/s]",
}


def property_histograms(fits: pd.DataFrame, code: str, properties: list[str], path: str | Path) -> None:
    """Observed − predicted property per morphology group (Figure 8)."""
    fig, axes = plt.subplots(1, len(properties), figsize=(3.4 * len(properties), 3.2), squeeze=False)
    for ax, prop in zip(axes[0], properties):
        wide = fits.pivot(index="specObjID", columns="kind", values=fit_column(code, prop))
        morphology = fits.drop_duplicates("specObjID").set_index("specObjID")["galaxy_zoo"].loc[wide.index]
        diff = wide["observed"] - wide["predicted"]
        finite = diff[np.isfinite(diff)]
        edge = np.nanpercentile(np.abs(finite), 98) if finite.size else 1.0
        bins = np.linspace(-edge, edge, 25)
        for group in sorted(morphology.unique()):
            ax.hist(diff[morphology == group].dropna(), bins=bins, histtype="step", lw=1.4, label=group)
        ax.axvline(0, color="k", lw=0.8)
        ax.set(xlabel=f"Δ {PROPERTY_LABELS[prop]} (obs − pred)", ylabel="galaxies", title=code)
    axes[0][0].legend(fontsize=7)
    _save(fig, path)


def index_comparison(fits: pd.DataFrame, names: tuple[str, ...], summary: dict, path: str | Path) -> None:
    """Indices of predicted against observed spectra, spirals marked (Figure 7)."""
    fig, axes = plt.subplots(2, (len(names) + 1) // 2, figsize=(3.3 * ((len(names) + 1) // 2), 6.4))
    for ax, name in zip(axes.ravel(), names):
        wide = fits.pivot(index="specObjID", columns="kind", values=name)
        morphology = fits.drop_duplicates("specObjID").set_index("specObjID")["galaxy_zoo"].loc[wide.index]
        spiral = (morphology == "spiral").to_numpy()
        ax.scatter(wide["observed"][~spiral], wide["predicted"][~spiral], s=8, label="elliptical + uncertain")
        ax.scatter(wide["observed"][spiral], wide["predicted"][spiral], s=8, alpha=0.5, label="spiral")
        values = wide[["observed", "predicted"]].to_numpy()
        if np.isfinite(values).any():
            lo, hi = np.nanpercentile(values, [1, 99])
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set(
            xlabel=f"{name} observed",
            ylabel=f"{name} predicted",
            title=f"ρ = {summary[name]['pearson_rho_without_spirals']:.2f}",
        )
    axes.ravel()[0].legend(fontsize=7)
    _save(fig, path)


def mass_metallicity(fits: pd.DataFrame, catalog: pd.DataFrame, path: str | Path) -> None:
    """Light-weighted [M/H] against stellar mass from observed and predicted spectra, per fitter."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), sharey=True)
    for ax, code in zip(axes, FITTERS):
        for kind, marker in (("observed", "o"), ("predicted", "x")):
            sub = fits[fits["kind"] == kind].set_index("specObjID")
            ax.scatter(
                catalog.loc[sub.index, "logMass"],
                sub[fit_column(code, "metallicity")],
                s=10,
                marker=marker,
                label=kind,
                alpha=0.7,
            )
        ax.set(xlabel="log M* [M_sun]", ylabel="[M/H] [dex]", title=code)
    axes[0].legend(fontsize=8)
    _save(fig, path)


def degeneracy(fits: pd.DataFrame, path: str | Path) -> None:
    """Δ age against Δ [M/H] coloured by Δ E(B−V) (obs − pred): the degeneracy of Figure 10."""
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.8))
    for ax, code in zip(axes, FITTERS):
        delta = {
            p: fits.pivot(index="specObjID", columns="kind", values=fit_column(code, p))
            for p in ("log_age", "metallicity", "ebv")
        }
        diff = {p: d["observed"] - d["predicted"] for p, d in delta.items()}
        points = ax.scatter(
            diff["log_age"], diff["metallicity"], c=diff["ebv"], s=12, cmap="coolwarm", vmin=-0.2, vmax=0.2
        )
        ax.axhline(0, color="k", lw=0.5)
        ax.axvline(0, color="k", lw=0.5)
        ax.set(xlabel="Δ log age (obs − pred)", ylabel="Δ [M/H] (obs − pred)", title=code)
        fig.colorbar(points, ax=ax, label="Δ E(B−V)")
    _save(fig, path)


def bimodality(fits: pd.DataFrame, catalog: pd.DataFrame, path: str | Path) -> None:
    """Distributions of E(B−V), age, σ*, Dn4000 and u−r from observed and predicted spectra (Figure 11)."""
    panels = [
        (fit_column("ppxf", "ebv"), "E(B−V) (pPXF)"),
        (fit_column("ppxf", "log_age"), "log age (pPXF)"),
        (fit_column("ppxf", "sigma_star"), "σ* [km/s]"),
        ("Dn4000", "Dn4000"),
    ]
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(16, 3.2))
    for ax, (column, label) in zip(axes, panels):
        values = fits[column].dropna()
        low, high = np.nanpercentile(values, [1, 99]) if len(values) else (0.0, 1.0)
        bins = np.linspace(low, high, 25) if len(values) else 10
        for kind in ("observed", "predicted"):
            ax.hist(fits.loc[fits["kind"] == kind, column].dropna(), bins=bins, histtype="step", lw=1.5, label=kind)
        ax.set(xlabel=label, ylabel="galaxies")
    ax = axes[-1]
    ax.hist(catalog["u_minus_r"], bins=25, histtype="step", color="k", lw=1.5, label="photometry")
    ax.set(xlabel="u − r (model mags)", ylabel="galaxies")
    axes[0].legend(fontsize=7)
    _save(fig, path)


def line_comparison(table: pd.DataFrame, names: tuple[str, ...], path: str | Path) -> None:
    """Line fluxes and EW(Hα) of predicted against observed spectra."""
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(3.2 * (len(names) + 1), 3.2))
    for ax, name in zip(axes, names):
        obs, pred = table[f"observed_flux_{name}"], table[f"predicted_flux_{name}"]
        good = (obs > 0) & (pred > 0)
        ax.scatter(np.log10(obs[good]), np.log10(pred[good]), s=8)
        if good.any():
            lo, hi = np.log10(pd.concat([obs[good], pred[good]])).quantile([0.01, 0.99])
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set(xlabel=f"log {name} observed", ylabel=f"log {name} predicted")
    axes[-1].scatter(table["observed_ew_Halpha"], table["predicted_ew_Halpha"], s=8)
    axes[-1].set(xlabel="EW(Hα) observed [Å]", ylabel="EW(Hα) predicted [Å]", xscale="symlog", yscale="symlog")
    _save(fig, path)


def confusion(matrix: np.ndarray, classes: tuple[str, ...], path: str | Path) -> None:
    """The classification confusion matrix: rows the observed-spectrum class, columns the predicted-spectrum class."""
    fig, ax = plt.subplots(figsize=(4.4, 3.8))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="k")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="from predicted spectrum", ylabel="from observed spectrum")
    _save(fig, path)


def bpt_pair(fluxes: dict[str, dict[str, np.ndarray]], classes: dict[str, np.ndarray], path: str | Path) -> None:
    """[N II] BPT diagrams of observed and predicted spectra side by side (Figure 12)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharex=True, sharey=True)
    for ax, kind in zip(axes, ("observed", "predicted")):
        x, y = bpt_ratios(fluxes[kind])
        for label, colour in (("star-forming", "C0"), ("AGN", "C3")):
            sel = classes[kind] == label
            ax.scatter(x[sel], y[sel], s=10, c=colour, label=f"{label} ({sel.sum()})")
        _bpt_frame(ax, f"{kind} ({np.sum(classes[kind] == 'passive')} passive not shown)")
    _save(fig, path)


def ablation(table: pd.DataFrame, path: str | Path) -> None:
    """Rest-frame 4000–7000 Å MSE per image variant: resolution (left) and bands (right), as Table 3."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    by_resolution = table[table["bands"] == "ugriz"].sort_values("resolution")
    axes[0].errorbar(by_resolution["resolution"], by_resolution["mean_mse"], by_resolution["sem_mse"], marker="o")
    axes[0].set(xscale="log", xlabel="pixels per side (same field of view)", ylabel="mean MSE, rest 4000–7000 Å")
    axes[0].set_xticks(by_resolution["resolution"], by_resolution["resolution"].astype(str))
    by_bands = table[(table["bands"] != "ugriz") | (table["resolution"] == 64)]
    labels = [f"{r}×{r} {b}" for r, b in zip(by_bands["resolution"], by_bands["bands"])]
    axes[1].bar(labels, by_bands["mean_mse"], yerr=by_bands["sem_mse"])
    axes[1].set(xlabel="resolution and bands")
    axes[1].tick_params(axis="x", labelrotation=30)
    _save(fig, path)
