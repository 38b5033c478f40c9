"""Synthetic labelled portraits (`drfhq render`) and the stand-in realism reference (`drfhq sample-real`)."""
