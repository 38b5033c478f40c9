"""Stage 2: generators and the transfer method. StyleGAN2 in torch with NVIDIA's numerics and key layout
(`stylegan2`), official NVIDIA and rosinality files read without running their code and our own
generator format (`networks`), MobileStyleGAN from OpenVINO IR (`mobilestylegan`, `openvino_ir`), the
identity-consistent fine-tuning of G_render (`train`, `losses`) and translation of renders by
inversion (`translate`)."""
