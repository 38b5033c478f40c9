"""Stage 3 (`drfhq bench`): realism (FID, FID-infinity, KID, precision/recall/density/coverage), identity,
geometry (landmark NME) and colour (skin CIEDE2000) kept, and LPIPS, per method, sliced by gender, age and race."""
