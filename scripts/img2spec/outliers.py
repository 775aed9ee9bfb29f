"""Out-of-distribution flags for image cubes: how far a galaxy's photometry lies from the training set's.

The networks only know galaxies like those they were trained on (the paper's selection: SDSS main
sample, 0.05 < z ≤ 0.15, Sect. 2).  A cube scaled by another zero point, with bands swapped, of a star
or of blank sky still gets a spectrum; this module says how unlike the training galaxies it is.

The score is the Mahalanobis distance of a cube's photometric features
(:func:`img2spec.photometry.photometric_features`: aperture r magnitudes, colours, concentration),
after a robust per-feature standardisation, under the training split's covariance.  The flag threshold
is a quantile of the validation split's scores, so that galaxies drawn like the training set are
flagged at the nominal rate ``1 − quantile``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .dataset import DatasetFile
from .photometry import APERTURE_RADII_PIX, photometric_features, robust_centre_scale


@dataclass(frozen=True)
class OutlierModel:
    """Feature statistics of the training split and the validation-split threshold.

    Attributes
    ----------
    centre, scale : ndarray, (F,)
        Robust centre and scale (1.4826 × MAD) of each training feature.
    precision : ndarray, (F, F)
        Inverse covariance of the standardised training features (ridge-regularised by 1e-3).
    threshold : float
        Scores above it are flagged: the ``quantile`` of the validation split's scores.
    quantile : float
        Nominal fraction of in-distribution galaxies left unflagged.
    radii_pix : tuple of float
        Aperture radii of the features [pixels].
    """

    centre: np.ndarray
    scale: np.ndarray
    precision: np.ndarray
    threshold: float
    quantile: float
    radii_pix: tuple[float, ...]

    @classmethod
    def fit(
        cls,
        train_features: np.ndarray,
        val_features: np.ndarray,
        quantile: float,
        radii_pix: tuple[float, ...] = APERTURE_RADII_PIX,
    ) -> OutlierModel:
        """Statistics from training features (N, F), threshold from validation features (M, F)."""
        if not 0.0 < quantile < 1.0:
            raise ValueError(f"outlier quantile {quantile} is not between 0 and 1")
        if len(train_features) <= train_features.shape[1] or len(val_features) == 0:
            raise ValueError(
                f"{len(train_features)} training and {len(val_features)} validation galaxies are too few for "
                f"{train_features.shape[1]} photometric features"
            )
        centre, scale = robust_centre_scale(train_features)
        standard = (train_features - centre) / scale
        covariance = np.cov(standard, rowvar=False) + 1e-3 * np.eye(standard.shape[1])
        precision = np.linalg.inv(covariance)
        partial = cls(centre, scale, precision, np.inf, quantile, tuple(radii_pix))
        threshold = float(np.quantile(partial.score_features(val_features), quantile))
        return cls(centre, scale, precision, threshold, quantile, tuple(radii_pix))

    def score_features(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance (N,) of features (N, F) from the training set, in its standard deviations."""
        standard = (np.asarray(features, np.float64) - self.centre) / self.scale
        return np.sqrt(np.einsum("nf,fg,ng->n", standard, self.precision, standard))

    def score(self, images: np.ndarray) -> np.ndarray:
        """Scores (N,) of cubes (N, 5, 64, 64) [nanomaggies]."""
        return self.score_features(photometric_features(images, self.radii_pix))

    def flag(self, scores: np.ndarray) -> np.ndarray:
        """True where a score is above the threshold."""
        return np.asarray(scores) > self.threshold


def features_of_split(data: DatasetFile, split: str, radii_pix: tuple[float, ...], chunk: int = 512) -> np.ndarray:
    """Photometric features (N, F) of a split of ``dataset.h5``, read ``chunk`` cubes at a time."""
    rows = data.rows(split)
    parts = [
        photometric_features(data.read("images", rows[i : i + chunk]), radii_pix) for i in range(0, rows.size, chunk)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, 5 * len(radii_pix) + 1))


def outlier_model_of_dataset(
    dataset_h5: str | Path,
    quantile: float,
    radii_pix: tuple[float, ...] = APERTURE_RADII_PIX,
    log: Callable[[str], None] = lambda message: None,
) -> OutlierModel:
    """The :class:`OutlierModel` of a ``dataset.h5``: statistics of its training split, threshold of its validation split."""
    with DatasetFile(dataset_h5) as data:
        train = features_of_split(data, "train", radii_pix)
        val = features_of_split(data, "val", radii_pix)
    model = OutlierModel.fit(train, val, quantile, radii_pix)
    log(f"outlier score threshold {model.threshold:.2f} ({quantile:g} of {len(val)} validation galaxies)")
    return model
