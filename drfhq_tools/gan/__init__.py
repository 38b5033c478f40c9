"""Stage 2 (in progress): generators. Today: MobileStyleGAN (FFHQ) in torch, converted from OpenVINO IR."""
