-- img2spec galaxy sample (after Doorenbos, Sextl et al. 2024, Appendix B): primary SDSS-spectrograph
-- galaxies with clean photometry, sane Petrosian radii and magnitudes, Galaxy Zoo morphology and
-- stellar mass. Placeholders in braces are filled with validated numbers only.
SELECT
  s.specObjID, p.objID, s.plate, s.mjd, s.fiberID, s.run2d, p.ra, p.dec,
  p.run, p.rerun, p.camcol, p.field,
  s.z, s.zErr, s.velDisp, s.velDispErr,
  p.petroRad_r, p.petroR50_r, p.petroR90_r, p.petroMag_r,
  p.fiberMag_u, p.fiberMag_g, p.fiberMag_r, p.fiberMag_i, p.fiberMag_z,
  p.modelMag_u, p.modelMag_g, p.modelMag_r, p.modelMag_i, p.modelMag_z,
  p.cModelMag_u, p.cModelMag_g, p.cModelMag_r, p.cModelMag_i, p.cModelMag_z,
  p.extinction_r,
  zs.elliptical, zs.spiral, zs.uncertain, zs.p_el, zs.p_cs,
  m.mstellar_median AS logMass
FROM SpecObj AS s
JOIN PhotoObj AS p ON p.objID = s.bestObjID
JOIN zooSpec AS zs ON zs.specobjid = s.specObjID
LEFT JOIN stellarMassPCAWiscBC03 AS m ON m.specObjID = s.specObjID
WHERE s.class = 'GALAXY'
  AND s.sciencePrimary = 1
  AND s.instrument = 'SDSS'
  AND s.zWarning = 0
  AND s.z > {z_min} AND s.z <= {z_max}
  AND s.specObjID BETWEEN {specobjid_min} AND {specobjid_max}
  AND p.clean = 1
  AND (p.flags & (dbo.fPhotoFlags('DEBLENDED_AS_MOVING') | dbo.fPhotoFlags('INTERP_CENTER') | dbo.fPhotoFlags('SATURATED'))) = 0
  AND p.petroRad_r > 0 AND p.petroRad_r < {petro_rad_max}
  AND p.petroMag_r > {petro_mag_min} AND p.petroMag_r < {petro_mag_max}
