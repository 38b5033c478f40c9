"""StyleGAN2 (Karras et al. 2020) in plain PyTorch, in the parameter layout of NVIDIA's
stylegan2-ada-pytorch (`G_ema` state-dict keys), so official weights map onto it name for name.

Generator: mapping network (normalised z, 8 equalised-LR fully connected layers, lr multiplier 0.01,
w_avg for truncation), synthesis network with modulated and demodulated convolutions, per-layer noise
(`noise_const` and `noise_strength`), FIR ([1, 3, 3, 1]) upsampling and the skip architecture (an RGB
output per resolution, upsampled and summed). Discriminator: residual, with minibatch standard
deviation. Any power-of-two resolution from 32 to 1024; channels follow config-f's formula with a
base and a maximum that small configurations shrink.

Numerics follow the paper and NVIDIA's code path (equalised learning rate, lrelu gain sqrt(2), demod
eps 1e-8, [1,3,3,1] filters); bitwise parity with NVIDIA's custom CUDA ops is not claimed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DrfhqError

SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True)
class StyleGAN2Config:
    resolution: int = 1024
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    channel_base: int = 32768        # config-f: channels(res) = min(channel_base // res, channel_max)
    channel_max: int = 512
    mapping_lr: float = 0.01

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    @property
    def log2(self) -> int:
        return int(math.log2(self.resolution))

    @property
    def num_ws(self) -> int:
        return 2 * (self.log2 - 2) + 2       # conv1 at 4, conv0+conv1 per higher block, + the last torgb

    def validate(self) -> None:
        if self.resolution < 32 or self.resolution > 1024 or self.resolution & (self.resolution - 1):
            raise DrfhqError(f"StyleGAN2 resolution {self.resolution}: a power of two from 32 to 1024")


CONFIGS = {
    "tiny": StyleGAN2Config(resolution=32, z_dim=64, w_dim=64, mapping_layers=2, channel_base=2048, channel_max=64),
    "cpu256": StyleGAN2Config(resolution=256, z_dim=128, w_dim=128, mapping_layers=4, channel_base=4096, channel_max=128),
    "256": StyleGAN2Config(resolution=256, channel_base=16384, channel_max=512),
    "1024": StyleGAN2Config(resolution=1024),
}


def _fir_kernel(device=None) -> torch.Tensor:
    k = torch.tensor([1.0, 3.0, 3.0, 1.0], device=device)
    k = k[:, None] * k[None, :]
    return k / k.sum()


def upsample2x(x: torch.Tensor, pad: tuple[int, int] = (2, 1)) -> torch.Tensor:
    """upfirdn2d(up=2) with the [1,3,3,1] filter (gain 4): zero insertion, padding (before, after) on
    the upsampled grid, then the filter. (2, 1) keeps the size doubled (NVIDIA's upsample2d)."""
    n, c, h, w = x.shape
    k = (_fir_kernel(x.device) * 4).to(x.dtype)
    up = x.new_zeros(n, c, h * 2, w * 2)
    up[:, :, ::2, ::2] = x
    up = F.pad(up, (pad[0], pad[1], pad[0], pad[1]))
    return F.conv2d(up, k.expand(c, 1, 4, 4), groups=c)


def downsample2x(x: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    k = _fir_kernel(x.device).to(x.dtype)
    x = F.pad(x, (1, 1, 1, 1))
    return F.conv2d(x, k.expand(c, 1, 4, 4), stride=2, groups=c)


class FullyConnectedLayer(nn.Module):
    def __init__(self, in_features, out_features, bias_init=0.0, lr_multiplier=1.0, activation=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.activation = activation

    def forward(self, x):
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        return F.leaky_relu(x, 0.2) * SQRT2 if self.activation else x


class MappingNetwork(nn.Module):
    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        self.num_ws = cfg.num_ws
        dims = [cfg.z_dim] + [cfg.w_dim] * cfg.mapping_layers
        for i in range(cfg.mapping_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(dims[i], dims[i + 1], lr_multiplier=cfg.mapping_lr, activation=True))
        self.num_layers = cfg.mapping_layers
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))

    def forward(self, z, truncation_psi=1.0):
        x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if truncation_psi != 1.0:
            x = self.w_avg.lerp(x, truncation_psi)
        return x


def modulated_conv2d(x, weight, styles, demodulate=True, up=False):
    n, in_ch = x.shape[:2]
    out_ch, _, kh, kw = weight.shape
    w = weight[None] * styles[:, None, :, None, None]
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    x = x.reshape(1, n * in_ch, *x.shape[2:])
    w = w.reshape(n * out_ch, in_ch, kh, kw)
    if up:
        # NVIDIA's conv2d_resample(up=2, padding=1, flip_weight=False): filter the zero-inserted input
        # padded (3, 2), then a true convolution (flipped kernel) without padding
        x = F.conv2d(upsample2x(x, (kh // 2 + 2, kh // 2 + 1)), w.flip([2, 3]), groups=n)
    else:
        x = F.conv2d(x, w, padding=kh // 2, groups=n)
    return x.reshape(n, out_ch, *x.shape[2:])


class SynthesisLayer(nn.Module):
    def __init__(self, in_ch, out_ch, w_dim, resolution, up=False):
        super().__init__()
        self.affine = FullyConnectedLayer(w_dim, in_ch, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.weight_gain = 1 / math.sqrt(in_ch * 9)
        self.up = up

    def forward(self, x, w, noise_mode="const", noise=None):
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=True, up=self.up)
        if noise is not None:          # per-image maps (the projector optimises them)
            x = x + noise * self.noise_strength
        elif noise_mode == "const":
            x = x + self.noise_const * self.noise_strength
        elif noise_mode == "random":
            x = x + torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device) * self.noise_strength
        return F.leaky_relu(x + self.bias[None, :, None, None], 0.2) * SQRT2


class ToRGBLayer(nn.Module):
    def __init__(self, in_ch, w_dim):
        super().__init__()
        self.affine = FullyConnectedLayer(w_dim, in_ch, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(3, in_ch, 1, 1))
        self.bias = nn.Parameter(torch.zeros(3))
        self.weight_gain = 1 / math.sqrt(in_ch)

    def forward(self, x, w):
        return modulated_conv2d(x, self.weight, self.affine(w) * self.weight_gain, demodulate=False) + self.bias[None, :, None, None]


class SynthesisBlock(nn.Module):
    def __init__(self, in_ch, out_ch, w_dim, resolution):
        super().__init__()
        self.resolution = resolution
        if in_ch == 0:
            self.const = nn.Parameter(torch.randn(out_ch, 4, 4))
        else:
            self.conv0 = SynthesisLayer(in_ch, out_ch, w_dim, resolution, up=True)
        self.conv1 = SynthesisLayer(out_ch, out_ch, w_dim, resolution)
        self.torgb = ToRGBLayer(out_ch, w_dim)
        self.num_conv = 1 if in_ch == 0 else 2

    def forward(self, x, img, ws, noise_mode="const", noise=None):
        k, noise = 0, noise or {}
        if x is None:
            x = self.const[None].expand(ws.shape[0], -1, -1, -1)
        else:
            x = self.conv0(x, ws[:, k], noise_mode, noise.get(f"b{self.resolution}.conv0"))
            k += 1
        x = self.conv1(x, ws[:, k], noise_mode, noise.get(f"b{self.resolution}.conv1"))
        y = self.torgb(x, ws[:, k + 1])
        img = y if img is None else upsample2x(img) + y
        return x, img


class SynthesisNetwork(nn.Module):
    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        self.resolutions = [2 ** i for i in range(2, cfg.log2 + 1)]
        for res in self.resolutions:
            in_ch = 0 if res == 4 else cfg.channels(res // 2)
            setattr(self, f"b{res}", SynthesisBlock(in_ch, cfg.channels(res), cfg.w_dim, res))

    def blocks(self):
        return [getattr(self, f"b{res}") for res in self.resolutions]

    def forward(self, ws, noise_mode="const", noise=None):
        x = img = None
        k = 0
        for block in self.blocks():
            x, img = block(x, img, ws[:, k:k + block.num_conv + 1], noise_mode, noise)
            k += block.num_conv
        return img


class Generator(nn.Module):
    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.z_dim, self.w_dim, self.num_ws, self.img_resolution = cfg.z_dim, cfg.w_dim, cfg.num_ws, cfg.resolution
        self.mapping = MappingNetwork(cfg)
        self.synthesis = SynthesisNetwork(cfg)

    def style_resolution(self, index: int) -> int:
        """Resolution of the block the W+ style `index` drives."""
        k = 0
        for block in self.synthesis.blocks():
            if index <= k + block.num_conv:
                return block.resolution
            k += block.num_conv
        return self.img_resolution

    def parameter_groups(self) -> dict[str, str | int]:
        """Parameter name -> 'mapping' or the resolution of its synthesis block (for freezing and swaps)."""
        return {name: "mapping" if name.startswith("mapping.") else int(name.split(".")[1][1:])
                for name, _ in self.named_parameters()}

    def map(self, z, truncation_psi=1.0):
        return self.mapping(z, truncation_psi)

    def synthesize(self, w, noise_mode="const", noise=None):
        """noise: optional {'b{res}.conv0|conv1': N x 1 x res x res} replacing the stored maps."""
        ws = w[:, None].expand(-1, self.num_ws, -1) if w.dim() == 2 else w
        return self.synthesis(ws, noise_mode, noise)

    def noise_maps(self) -> dict[str, torch.Tensor]:
        """The stored noise maps by layer, the projector's starting point."""
        return {f"b{b.resolution}.{name}": getattr(b, name).noise_const
                for b in self.synthesis.blocks() for name in ("conv0", "conv1") if hasattr(b, name)}

    def forward(self, z, truncation_psi=1.0, noise_mode="const"):
        return self.synthesize(self.map(z, truncation_psi), noise_mode)


class Conv2dLayer(nn.Module):
    def __init__(self, in_ch, out_ch, kernel, activation=True, down=False, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_ch * kernel * kernel)
        self.activation, self.down, self.kernel = activation, down, kernel

    def forward(self, x):
        w = self.weight * self.weight_gain
        if self.down:   # FIR low-pass and halve, then the convolution at the lower resolution
            x = downsample2x(x)
        x = F.conv2d(x, w, self.bias, padding=self.kernel // 2)
        return F.leaky_relu(x, 0.2) * SQRT2 if self.activation else x


class DiscriminatorBlock(nn.Module):
    def __init__(self, in_ch, tmp_ch, out_ch, first):
        super().__init__()
        if first:
            self.fromrgb = Conv2dLayer(3, tmp_ch, 1)
        self.conv0 = Conv2dLayer(tmp_ch, tmp_ch, 3)
        self.conv1 = Conv2dLayer(tmp_ch, out_ch, 3, down=True)
        self.skip = Conv2dLayer(tmp_ch, out_ch, 1, activation=False, down=True, bias=False)
        self.first = first

    def forward(self, x, img):
        if self.first:
            x = self.fromrgb(img)
        y = self.skip(x)
        x = self.conv1(self.conv0(x))
        return (y + x) / SQRT2


class Discriminator(nn.Module):
    def __init__(self, cfg: StyleGAN2Config, mbstd_group=4):
        super().__init__()
        self.resolutions = [2 ** i for i in range(cfg.log2, 2, -1)]
        for k, res in enumerate(self.resolutions):
            ch = cfg.channels(res)
            setattr(self, f"b{res}", DiscriminatorBlock(ch, ch, cfg.channels(res // 2), first=k == 0))
        c4 = cfg.channels(4)
        self.mbstd_group = mbstd_group
        self.b4_conv = Conv2dLayer(c4 + 1, c4, 3)
        self.b4_fc = FullyConnectedLayer(c4 * 16, c4, activation=True)
        self.b4_out = FullyConnectedLayer(c4, 1)

    def forward(self, img):
        x = None
        for res in self.resolutions:
            x = getattr(self, f"b{res}")(x, img)
        n, c, h, w = x.shape
        g = min(self.mbstd_group, n)
        while n % g:
            g -= 1
        # groups of g consecutive images (NVIDIA strides them): a batch split into per-process chunks
        # then forms the same groups as the whole batch in one process
        y = x.reshape(-1, g, c, h, w)
        y = (y - y.mean(dim=1, keepdim=True)).square().mean(dim=1).add(1e-8).sqrt().mean(dim=[1, 2, 3])
        y = y.reshape(-1, 1, 1, 1, 1).expand(-1, g, 1, h, w).reshape(n, 1, h, w)
        x = self.b4_conv(torch.cat([x, y], dim=1))
        return self.b4_out(self.b4_fc(x.flatten(1)))


# ---------------------------------------------------------------- checkpoints

def load_state(generator: Generator, state: dict, source: str) -> None:
    """Strict loading with a message naming the keys that could not be mapped."""
    own = generator.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if unexpected:
            parts.append(f"{len(unexpected)} keys it could not map, e.g. {unexpected[:6]}")
        if missing:
            parts.append(f"{len(missing)} generator keys it does not provide, e.g. {missing[:6]}")
        if wrong:
            parts.append(f"{len(wrong)} keys with other shapes, e.g. {[(k, tuple(state[k].shape), tuple(own[k].shape)) for k in wrong[:3]]}")
        raise DrfhqError(f"{source}: unknown checkpoint layout: " + "; ".join(parts))
    generator.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()}, strict=True)


def rosinality_to_nvidia(state: dict, cfg: StyleGAN2Config) -> dict:
    """Map rosinality stylegan2-pytorch `g_ema` keys (plus its `latent_avg`) to the layout used here.

    Both implementations keep equalised-LR scales out of the stored weights, so tensors map unscaled;
    rosinality's modulated weights carry a leading batch axis of 1 and its biases extra unit axes.
    """
    out = {}
    try:
        for i in range(cfg.mapping_layers):
            out[f"mapping.fc{i}.weight"] = state[f"style.{i + 1}.weight"]
            out[f"mapping.fc{i}.bias"] = state[f"style.{i + 1}.bias"]
        out["mapping.w_avg"] = torch.as_tensor(state.get("latent_avg", torch.zeros(cfg.w_dim))).reshape(-1)
        out["synthesis.b4.const"] = state["input.input"][0]
        noises = iter(range(10_000))

        def styled(dst: str, src: str, res: int) -> None:
            out[f"{dst}.weight"] = state[f"{src}.conv.weight"][0]
            out[f"{dst}.affine.weight"] = state[f"{src}.conv.modulation.weight"]
            out[f"{dst}.affine.bias"] = state[f"{src}.conv.modulation.bias"]
            out[f"{dst}.bias"] = state[f"{src}.activate.bias"].reshape(-1)
            out[f"{dst}.noise_strength"] = state[f"{src}.noise.weight"].reshape([])
            key = f"noises.noise_{next(noises)}"
            out[f"{dst}.noise_const"] = state[key].reshape(res, res) if key in state else torch.zeros(res, res)

        def to_rgb(dst: str, src: str) -> None:
            out[f"{dst}.weight"] = state[f"{src}.conv.weight"][0]
            out[f"{dst}.affine.weight"] = state[f"{src}.conv.modulation.weight"]
            out[f"{dst}.affine.bias"] = state[f"{src}.conv.modulation.bias"]
            out[f"{dst}.bias"] = state[f"{src}.bias"].reshape(-1)

        styled("synthesis.b4.conv1", "conv1", 4)
        to_rgb("synthesis.b4.torgb", "to_rgb1")
        for k, res in enumerate(2 ** i for i in range(3, cfg.log2 + 1)):
            styled(f"synthesis.b{res}.conv0", f"convs.{2 * k}", res)
            styled(f"synthesis.b{res}.conv1", f"convs.{2 * k + 1}", res)
            to_rgb(f"synthesis.b{res}.torgb", f"to_rgbs.{k}")
    except KeyError as exc:
        raise DrfhqError(f"not a rosinality stylegan2-pytorch g_ema: key {exc} is missing") from None
    return out
