"""Stage 1: a folder of renders becomes an aligned, deduplicated, tagged dataset (`drfhq build-dataset`)."""
