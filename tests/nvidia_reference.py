"""Run as a script with ../shared/peers/stylegan2-ada-pytorch importable: NVIDIA's own code builds a
small G and D with conv_clamp and fp16 layers (as its official configs have), runs them with
force_fp32, and pickles them with protocols 2 to 5, the way its training loop writes snapshots.
    python nvidia_reference.py PEER_DIR OUT_DIR
Writes OUT_DIR/expected.npz (z, img, img_psi07, d_logits) and OUT_DIR/net-p{2,3,4,5}.pkl."""

import pickle
import sys

import numpy as np
import torch

sys.path.insert(0, sys.argv[1])
from training.networks import Discriminator, Generator  # noqa: E402  (NVIDIA's, from the peer folder)

out = sys.argv[2]
torch.manual_seed(0)
G = Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3, mapping_kwargs={"num_layers": 2},
              synthesis_kwargs={"channel_base": 1024, "channel_max": 32, "num_fp16_res": 2, "conv_clamp": 0.5}).eval()
D = Discriminator(c_dim=0, img_resolution=32, img_channels=3, channel_base=1024, channel_max=32, num_fp16_res=2, conv_clamp=0.5,
                  epilogue_kwargs={"mbstd_group_size": 2}).eval()
with torch.no_grad():      # biases and noise strengths away from zero, so the clamp (0.5) bites
    for module in (G, D):
        for name, p in module.named_parameters():
            if name.endswith(("noise_strength", "bias")):
                p.normal_(0, 0.5)
    G.mapping.w_avg.normal_()
    z = torch.randn(4, 32)
    img = G(z, None, noise_mode="const", force_fp32=True)
    img07 = G(z, None, truncation_psi=0.7, noise_mode="const", force_fp32=True)
    logits = D(img, None, force_fp32=True)
np.savez(f"{out}/expected.npz", z=z.numpy(), img=img.numpy(), img_psi07=img07.numpy(), d_logits=logits.numpy())
for protocol in (2, 3, 4, 5):
    with open(f"{out}/net-p{protocol}.pkl", "wb") as fh:
        pickle.dump({"G": G, "G_ema": G, "D": D, "augment_pipe": None, "training_set_kwargs": None}, fh, protocol=protocol)
print(f"clamped: {float((img.abs() >= 0.5 - 1e-6).float().mean()):.3f}")
