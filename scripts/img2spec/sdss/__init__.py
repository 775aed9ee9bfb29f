"""Real SDSS data: the sample query (:mod:`.query`), spectra (:mod:`.spectra`) and image cubes from frames (:mod:`.frames`).

Downloads are concurrent and polite, retried, resumable and atomic (:mod:`img2spec.download`).
"""

from .frames import build_cube, cube_wcs, cubes_from_frames, download_frames, frame_path, frame_url, read_frame
from .query import (
    CATALOG_COLUMNS,
    QuerySettings,
    casjobs_runner,
    chunk_query,
    plate_chunks,
    query_catalog,
    render_query,
    skyserver_runner,
)
from .spectra import (
    FAILURE_COLUMNS,
    MANIFEST_COLUMNS,
    DownloadSettings,
    TooManyFailures,
    download_spectra,
    spectrum_url,
)

__all__ = [
    "CATALOG_COLUMNS",
    "FAILURE_COLUMNS",
    "MANIFEST_COLUMNS",
    "DownloadSettings",
    "QuerySettings",
    "TooManyFailures",
    "build_cube",
    "casjobs_runner",
    "chunk_query",
    "cube_wcs",
    "cubes_from_frames",
    "download_frames",
    "download_spectra",
    "frame_path",
    "frame_url",
    "plate_chunks",
    "query_catalog",
    "read_frame",
    "render_query",
    "skyserver_runner",
    "spectrum_url",
]
