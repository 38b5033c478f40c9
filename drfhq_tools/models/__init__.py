"""Pretrained parts: where their files are, whether they are intact, and the networks that use them."""
