"""Stage 2 (in progress): generators. StyleGAN2 in torch (NVIDIA key layout) and MobileStyleGAN (FFHQ)
converted from OpenVINO IR. Training and translation are not built yet."""
