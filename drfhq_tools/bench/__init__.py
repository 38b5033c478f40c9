"""Stage 3: FID, KID, identity cosine and LPIPS per method, sliced by gender, age and race (`drfhq bench`)."""
