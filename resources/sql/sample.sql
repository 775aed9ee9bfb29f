-- img2spec galaxy sample: the query of Doorenbos, Sextl et al. (2024), Appendix B, column for column
-- and cut for cut. Placeholders in braces are filled with validated numbers only (sdss.render_query).
-- Where this query departs from the paper's, a line starting "-- deviation:" says how and why.
SELECT
  -- Ids
  S.specObjID, P.objID, P.ra, P.dec,
  -- Needed for spectra retrieving
  S.firstRelease, S.programname, S.instrument, S.run2d,
  -- Redshift and velocity dispersion
  S.z, S.zErr, S.velDisp, S.velDispErr,
  -- Petrosian radius
  P.petroRad_u, P.petroRad_g, P.petroRad_r, P.petroRad_i, P.petroRad_z,
  -- Radius containing 90% of Petrosian flux
  P.petroR90_u, P.petroR90_g, P.petroR90_r, P.petroR90_i, P.petroR90_z,
  -- Magnitude in 3 arcsec diameter fiber radius
  P.fiberMag_u, P.fiberMag_g, P.fiberMag_r, P.fiberMag_i, P.fiberMag_z,
  -- r-band extinction
  P.extinction_r,
  -- Overall signal-to-noise-squared measure for plate
  S.plateSN2,
  -- surface brightness fit (exponential and de Vaucouleurs)
  P.modelMag_u, P.modelMag_g, P.modelMag_r, P.modelMag_i, P.modelMag_z,
  P.cModelMag_u, P.cModelMag_g, P.cModelMag_r, P.cModelMag_i, P.cModelMag_z,
  -- from galaxy zoo
  Z.p_mg, Z.p_el_debiased, Z.p_cs_debiased, Z.spiral, Z.elliptical, Z.uncertain,
  -- photometric mass estimates
  M.logMass AS logMass_Maraston09, CD.logMass AS logMass_ConroyDust, CND.logMass AS logMass_ConroyNoDust,
  -- deviation: added columns. plate, mjd and fiberID name the spec-lite file to download; petroMag_r
  -- is the cut below that stands in for the paper's object list; run, rerun, camcol and field name
  -- the imaging frames when cubes are built from frames (sdss.cubes.source: frames).
  S.plate, S.mjd, S.fiberID, P.petroMag_r,
  P.run, P.rerun, P.camcol, P.field
-- deviation: no "INTO mydb.spectraGeneration"; SkyServer's synchronous service returns the rows
-- (the CasJobs backend stores them itself).
FROM SpecObj AS S
-- deviation: the paper starts from MyDB.MyTable_2, its private list of the objects of the Pasquet et
-- al. (2019) image cubes. Those are SDSS Main Galaxy Sample galaxies with dereddened Petrosian
-- r <= 17.8, so the list is replaced by that cut (below) on the photometric object of the spectrum.
JOIN PhotoObjAll AS P ON P.objID = S.bestObjID
JOIN zooSpec AS Z ON Z.specObjID = S.specObjID
JOIN stellarMassFSPSGranWideDust AS CD ON CD.specObjID = S.specObjID
JOIN stellarMassFSPSGranWideNoDust AS CND ON CND.specObjID = S.specObjID
JOIN stellarMassPassivePort AS M ON M.specObjID = S.specObjID
WHERE
  S.class = 'GALAXY' -- select only galaxies (spectroscopically)
  AND P.mode = 1 -- includes only objects which are "primary" in the survey
  AND S.z >= {z_min} -- minimum redshift (paper: 0.05)
  AND S.z <= {z_max} -- maximum redshift (paper: 0.15)
  AND S.instrument = 'SDSS' -- spectra from only one instrument
  -- deviation: the query runs in chunks of plates (a SkyServer request is limited in time and rows)
  AND S.specObjID BETWEEN {specobjid_min} AND {specobjid_max}
  -- deviation: the stand-in for the paper's object list (Pasquet et al. 2019)
  AND P.petroMag_r - P.extinction_r <= {petro_mag_max}

  -- Removing Objects with Deblending Problems
  AND (P.flags_r & 0x20) = 0 -- not PEAKCENTER
  AND (P.flags_r & 0x80000) = 0 -- not NOTCHECKED
  AND ((P.flags_r & 0x400000000000) = 0 OR P.psfMagErr_r <= 0.2) -- high S/N or not DEBLEND_NOPEAK

  -- Removing Objects with Interpolation Problems
  AND (P.flags_r & 0x800000000000) = 0 -- not PSF_FLUX_INTERP
  -- The paper labels the next cut "not BAD_COUNTS_ERROR", but 0x100000000000 is INTERP_CENTER
  -- (BAD_COUNTS_ERROR is 0x10000000000). It is kept as the paper ran it: objects with an
  -- interpolated centre are removed, which makes the INTERP_CENTER-and-CR cut after it redundant.
  AND (P.flags_r & 0x100000000000) = 0
  AND ((P.flags_r & 0x100000000000) = 0 OR (P.flags_r & 0x1000) = 0) -- not both INTERP_CENTER and CR

  -- Removing Suspicious Detections: pixels detected in the first pass (BINNED1), not saturated,
  -- a valid radial profile
  AND (P.flags_r & 0x10000000) != 0 -- BINNED1
  AND (P.flags_r & 0x40000) = 0 -- not SATURATED
  AND (P.flags_r & 0x80) = 0 -- not NOPROFILE

  -- Remove Meaningless Values (paper: radii below 20 arcsec)
  AND P.petroRad_u > 0 AND P.petroRad_g > 0 AND P.petroRad_r > 0 AND P.petroRad_i > 0 AND P.petroRad_z > 0
  AND P.petroR90_u > 0 AND P.petroR90_g > 0 AND P.petroR90_r > 0 AND P.petroR90_i > 0 AND P.petroR90_z > 0
  AND P.petroRad_u < {petro_rad_max} AND P.petroRad_g < {petro_rad_max} AND P.petroRad_r < {petro_rad_max}
  AND P.petroRad_i < {petro_rad_max} AND P.petroRad_z < {petro_rad_max}
  AND P.petroR90_u < {petro_rad_max} AND P.petroR90_g < {petro_rad_max} AND P.petroR90_r < {petro_rad_max}
  AND P.petroR90_i < {petro_rad_max} AND P.petroR90_z < {petro_rad_max}
  AND P.fiberMag_u > 0 AND P.fiberMag_g > 0 AND P.fiberMag_r > 0 AND P.fiberMag_i > 0 AND P.fiberMag_z > 0
  AND P.modelMag_u > 0 AND P.modelMag_g > 0 AND P.modelMag_r > 0 AND P.modelMag_i > 0 AND P.modelMag_z > 0
  AND P.cModelMag_u > 0 AND P.cModelMag_g > 0 AND P.cModelMag_r > 0 AND P.cModelMag_i > 0 AND P.cModelMag_z > 0
