"""StyleGAN2 (Karras et al. 2020) in plain PyTorch, in the parameter layout of NVIDIA's
stylegan2-ada-pytorch (`G_ema` and `D` state-dict keys), so official weights map onto it name for name.

Generator: mapping network (normalised z, equalised-LR fully connected layers, lr multiplier 0.01,
w_avg for truncation), synthesis network with modulated and demodulated convolutions, per-layer noise
(`noise_const` and `noise_strength`), FIR ([1, 3, 3, 1]) upsampling and the skip architecture (an RGB
output per resolution, upsampled and summed). Discriminator: residual, with minibatch standard
deviation. Any power-of-two resolution from 32 to 1024; channels follow config-f's formula with a
base and a maximum that small configurations shrink.

Numerics are NVIDIA's with `force_fp32=True`: the same resampling (conv2d_resample's fast paths:
transposed convolution then the FIR filter to upsample, the filter then a strided convolution to
downsample), `conv_clamp` applied after each activation, demodulation eps 1e-8. Official files give
NVIDIA's images and logits to float precision (tests compare against outputs of NVIDIA's own code).

Speed: modulation scales the activations and every image shares one convolution (NVIDIA's
training-time path, also the faster one for inference here); the FIR filter runs as one depthwise convolution;
the layers NVIDIA runs in fp16 (`num_fp16_res`) may run under bf16/fp16 autocast
(`set_mixed_precision`), the RGB sum and the discriminator's epilogue staying fp32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DrfhqError

SQRT2 = math.sqrt(2.0)
SQRT_HALF = math.sqrt(0.5)


@dataclass(frozen=True)
class StyleGAN2Config:
    resolution: int = 1024
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    channel_base: int = 32768        # config-f: channels(res) = min(channel_base // res, channel_max)
    channel_max: int = 512
    mapping_lr: float = 0.01
    conv_clamp: float | None = None  # official configs: 256 (conv outputs clamped to +-256 after the activation)
    num_fp16_res: int = 0            # official configs: 4 (layers that may run in reduced precision)

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    @property
    def log2(self) -> int:
        return int(math.log2(self.resolution))

    @property
    def num_ws(self) -> int:
        return 2 * (self.log2 - 2) + 2       # conv1 at 4, conv0+conv1 per higher block, + the last torgb

    @property
    def fp16_resolution(self) -> int:
        """Lowest resolution NVIDIA runs in fp16 (above the image resolution when num_fp16_res is 0)."""
        return max(2 ** (self.log2 + 1 - self.num_fp16_res), 8)

    def validate(self) -> None:
        if self.resolution < 32 or self.resolution > 1024 or self.resolution & (self.resolution - 1):
            raise DrfhqError(f"StyleGAN2 resolution {self.resolution}: a power of two from 32 to 1024")


CONFIGS = {   # --network presets (NVIDIA's official ones carry conv_clamp 256 and 4 fp16 resolutions)
    "tiny": StyleGAN2Config(resolution=32, z_dim=64, w_dim=64, mapping_layers=2, channel_base=2048, channel_max=64),
    "cpu256": StyleGAN2Config(resolution=256, z_dim=128, w_dim=128, mapping_layers=4, channel_base=4096, channel_max=128),
    "256": StyleGAN2Config(resolution=256, channel_base=16384, channel_max=512, conv_clamp=256, num_fp16_res=4),
    "1024": StyleGAN2Config(resolution=1024, conv_clamp=256, num_fp16_res=4),
}


# ---------------------------------------------------------------- resampling (NVIDIA's upfirdn2d, [1,3,3,1])

def _kernel(x: torch.Tensor, gain: float) -> torch.Tensor:
    """NVIDIA's setup_filter([1, 3, 3, 1]) (the outer product, normalised) times `gain`, as a depthwise
    kernel for x's channels. One 4x4 pass: faster than two separable 1-D passes on the CPU."""
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0], device=x.device, dtype=x.dtype)
    return (taps[:, None] * taps[None, :] * (gain / 64)).expand(x.shape[1], 1, 4, 4)


def fir_filter(x: torch.Tensor, pad: int, down: int = 1, gain: float = 1.0) -> torch.Tensor:
    """upfirdn2d(up=1) with the [1,3,3,1] filter: pad every side by `pad`, filter, keep every
    `down`-th sample."""
    return _FirFilter.apply(x, pad, down, gain)


class _FirFilter(torch.autograd.Function):
    """The filter as a depthwise convolution whose backward is its adjoint, written with differentiable
    ops. Why: autograd's own double backward of a grouped convolution runs one convolution per group
    (512 per layer); R1 takes that double backward through D's downsampling, and on an H100 our R1
    step took 4.4 s against NVIDIA's 0.18 s (256 px, batch 8) while our plain step was faster. Here the
    second derivative is the first derivative of a transposed depthwise convolution: one call."""

    @staticmethod
    def forward(ctx, x, pad, down, gain):
        ctx.pad, ctx.down, ctx.gain, ctx.size = pad, down, gain, x.shape[-2:]
        return F.conv2d(F.pad(x, (pad, pad, pad, pad)), _kernel(x, gain), stride=down, groups=x.shape[1])

    @staticmethod
    def backward(ctx, grad):
        (h, w), p, down = ctx.size, ctx.pad, ctx.down
        # the transposed convolution is the exact adjoint; output_padding restores the padded input's size
        extra = [size + 2 * p - ((n - 1) * down + 4) for size, n in ((h, grad.shape[-2]), (w, grad.shape[-1]))]
        full = F.conv_transpose2d(grad, _kernel(grad, ctx.gain), stride=down, groups=grad.shape[1], output_padding=extra)
        return full[:, :, p:p + h, p:p + w], None, None, None


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """NVIDIA's upsample2d: zero insertion, padding (2, 1), the filter with gain 4. A strided transposed
    depthwise convolution does the zero insertion; it pads (3, 3), so one sample is cropped per side."""
    return F.conv_transpose2d(x, _kernel(x, 4.0), stride=2, groups=x.shape[1])[:, :, 1:-1, 1:-1]


def downsample2x(x: torch.Tensor) -> torch.Tensor:
    """NVIDIA's downsample2d: padding (1, 1), the filter, every second sample."""
    return fir_filter(x, 1, down=2)


# ---------------------------------------------------------------- layers

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


def modulated_conv2d(x, weight, styles, demodulate=True, up=False, noise=None):
    """NVIDIA's modulated_conv2d as it trains (fused_modconv=False): scale the input channels by the
    styles, one convolution with the shared weight for the whole batch, then scale the output channels
    by the demodulation coefficients. Upsampling is conv2d_resample's: a stride-2 transposed
    convolution, then the filter padded by 1 with gain 4."""
    x, dcoefs = _modulated_conv(x, weight, styles, demodulate, up)
    if dcoefs is not None:
        x = x * dcoefs
    return x if noise is None else x + noise.to(x.dtype)


def _modulated_conv(x, weight, styles, demodulate, up):
    """The convolution of modulated_conv2d, and the N x O x 1 x 1 demodulation coefficients (or None)
    it leaves to the caller to apply (synthesis layers fuse them into their epilogue)."""
    n, in_ch = x.shape[:2]
    out_ch, _, kh, kw = weight.shape
    if x.dtype == torch.float16 and demodulate:      # NVIDIA's pre-normalisation against fp16 overflow
        weight = weight * (1 / math.sqrt(in_ch * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    x = x * styles.to(x.dtype).reshape(n, in_ch, 1, 1)
    w = weight.to(x.dtype)
    if up:
        x = fir_filter(F.conv_transpose2d(x, w.transpose(0, 1), stride=2), 1, gain=4.0)
    else:
        x = F.conv2d(x, w, padding=kh // 2)
    if not demodulate:
        return x, None
    # sum over (i, k) of (w_oik s_i)^2 = s^2 . sum_k w_oik^2: no N x O x I x k x k tensor
    dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()
    return x, dcoefs.to(x.dtype).reshape(n, out_ch, 1, 1)


class SynthesisLayer(nn.Module):
    def __init__(self, in_ch, out_ch, w_dim, resolution, up=False, conv_clamp=None):
        super().__init__()
        self.affine = FullyConnectedLayer(w_dim, in_ch, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.up, self.resolution, self.conv_clamp = up, resolution, conv_clamp

    def forward(self, x, w, noise_mode="const", noise=None):
        if noise is not None:          # per-image maps (the projector fits them; training draws them)
            noise = noise * self.noise_strength
        elif noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        elif noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device) * self.noise_strength
        x, dcoefs = _modulated_conv(x, self.weight, self.affine(w), True, self.up)
        # NVIDIA's x * dcoefs + noise, + bias, lrelu, * sqrt 2, clamp, in two passes: lrelu is positively
        # homogeneous, so the gain goes inside, and one addcmul does the scale, the noise and the bias
        shift = self.bias.to(x.dtype).reshape(1, -1, 1, 1) * SQRT2
        if noise is not None:
            shift = shift + noise.to(x.dtype) * SQRT2
        x = F.leaky_relu_(torch.addcmul(shift, x, dcoefs * SQRT2), 0.2)
        return x if self.conv_clamp is None else x.clamp(-self.conv_clamp, self.conv_clamp)


class ToRGBLayer(nn.Module):
    def __init__(self, in_ch, w_dim, conv_clamp=None):
        super().__init__()
        self.affine = FullyConnectedLayer(w_dim, in_ch, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(3, in_ch, 1, 1))
        self.bias = nn.Parameter(torch.zeros(3))
        self.weight_gain = 1 / math.sqrt(in_ch)
        self.conv_clamp = conv_clamp

    def forward(self, x, w):
        x = modulated_conv2d(x, self.weight, self.affine(w) * self.weight_gain, demodulate=False)
        x = x + self.bias.to(x.dtype).reshape(1, -1, 1, 1)      # NVIDIA's bias_act, linear: bias, then clamp
        return x if self.conv_clamp is None else x.clamp(-self.conv_clamp, self.conv_clamp)


class SynthesisBlock(nn.Module):
    def __init__(self, in_ch, out_ch, w_dim, resolution, conv_clamp=None):
        super().__init__()
        self.resolution = resolution
        if in_ch == 0:
            self.const = nn.Parameter(torch.randn(out_ch, 4, 4))
        else:
            self.conv0 = SynthesisLayer(in_ch, out_ch, w_dim, resolution, up=True, conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(out_ch, out_ch, w_dim, resolution, conv_clamp=conv_clamp)
        self.torgb = ToRGBLayer(out_ch, w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_ch == 0 else 2

    def forward(self, x, img, ws, noise_mode="const", noise=None, dtype=torch.float32):
        k, noise = 0, noise or {}
        if x is None:
            x = self.const.to(dtype)[None].expand(ws.shape[0], -1, -1, -1)
        else:
            x = self.conv0(x.to(dtype), ws[:, k], noise_mode, noise.get(f"b{self.resolution}.conv0"))
            k += 1
        x = self.conv1(x, ws[:, k], noise_mode, noise.get(f"b{self.resolution}.conv1"))
        y = self.torgb(x, ws[:, k + 1]).float()          # the RGB sum stays fp32
        img = y if img is None else upsample2x(img) + y
        return x, img


class SynthesisNetwork(nn.Module):
    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        self.resolutions = [2 ** i for i in range(2, cfg.log2 + 1)]
        self.fp16_resolution = cfg.fp16_resolution
        self.reduced_dtype: torch.dtype | None = None
        for res in self.resolutions:
            in_ch = 0 if res == 4 else cfg.channels(res // 2)
            setattr(self, f"b{res}", SynthesisBlock(in_ch, cfg.channels(res), cfg.w_dim, res, cfg.conv_clamp))

    def blocks(self):
        return [getattr(self, f"b{res}") for res in self.resolutions]

    def forward(self, ws, noise_mode="const", noise=None):
        x = img = None
        k = 0
        for block in self.blocks():
            reduced = self.reduced_dtype is not None and block.resolution >= self.fp16_resolution
            x, img = block(x, img, ws[:, k:k + block.num_conv + 1], noise_mode, noise,
                           self.reduced_dtype if reduced else torch.float32)
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

    def set_mixed_precision(self, dtype: torch.dtype | None) -> None:
        """Run the blocks NVIDIA runs in fp16 (the `num_fp16_res` highest) in `dtype`; None: all fp32."""
        self.synthesis.reduced_dtype = dtype

    def map(self, z, truncation_psi=1.0):
        return self.mapping(z, truncation_psi)

    def synthesize(self, w, noise_mode="const", noise=None):
        """noise_mode: const | random | none; noise: optional {'b{res}.conv0|conv1': N x 1 x res x res}
        replacing the stored maps."""
        ws = w[:, None].expand(-1, self.num_ws, -1) if w.dim() == 2 else w
        return self.synthesis(ws, noise_mode, noise)

    def noise_maps(self) -> dict[str, torch.Tensor]:
        """The stored noise maps by layer (the projector's start; training draws random ones of these shapes)."""
        return {f"b{b.resolution}.{name}": getattr(b, name).noise_const
                for b in self.synthesis.blocks() for name in ("conv0", "conv1") if hasattr(b, name)}

    def forward(self, z, truncation_psi=1.0, noise_mode="const"):
        return self.synthesize(self.map(z, truncation_psi), noise_mode)


class Conv2dLayer(nn.Module):
    def __init__(self, in_ch, out_ch, kernel, activation=True, down=False, bias=True, conv_clamp=None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_ch * kernel * kernel)
        self.activation, self.down, self.kernel, self.conv_clamp = activation, down, kernel, conv_clamp

    def forward(self, x, gain=1.0):
        # bias_act's gains (lrelu's sqrt 2, the block's gain) go into the weight and the bias: lrelu is
        # positively homogeneous, so the convolution's own bias and an in-place lrelu finish the layer
        scale = gain * (SQRT2 if self.activation else 1.0)
        w = (self.weight * (self.weight_gain * scale)).to(x.dtype)
        b = None if self.bias is None else (self.bias * scale).to(x.dtype)
        if self.down and self.kernel == 1:     # conv2d_resample: filter and halve, then the 1x1 convolution
            x = F.conv2d(downsample2x(x), w, b)
        elif self.down:                        # the filter (padded kernel // 2 + 1), then a stride-2 convolution
            x = F.conv2d(fir_filter(x, self.kernel // 2 + 1), w, b, stride=2)
        else:
            x = F.conv2d(x, w, b, padding=self.kernel // 2)
        if self.activation:
            x = F.leaky_relu_(x, 0.2)
        return x if self.conv_clamp is None else x.clamp(-self.conv_clamp * gain, self.conv_clamp * gain)


class DiscriminatorBlock(nn.Module):
    def __init__(self, tmp_ch, out_ch, first, conv_clamp=None):
        super().__init__()
        if first:
            self.fromrgb = Conv2dLayer(3, tmp_ch, 1, conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_ch, tmp_ch, 3, conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_ch, out_ch, 3, down=True, conv_clamp=conv_clamp)
        self.skip = Conv2dLayer(tmp_ch, out_ch, 1, activation=False, down=True, bias=False)
        self.first = first

    def forward(self, x, img, dtype=torch.float32):
        if self.first:
            x = self.fromrgb(img.to(dtype))
        x = x.to(dtype)
        y = self.skip(x, gain=SQRT_HALF)
        x = self.conv1(self.conv0(x), gain=SQRT_HALF)
        return y + x


class DiscriminatorEpilogue(nn.Module):
    def __init__(self, channels, mbstd_group=4, conv_clamp=None):
        super().__init__()
        self.mbstd_group = mbstd_group
        self.conv = Conv2dLayer(channels + 1, channels, 3, conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(channels * 16, channels, activation=True)
        self.out = FullyConnectedLayer(channels, 1)

    def forward(self, x):
        x = x.float()
        n, c, h, w = x.shape
        g = min(self.mbstd_group, n)
        while n % g:
            g -= 1
        # NVIDIA's groups: images i, i + n/g, i + 2n/g, ... (the trainer gives process r of W the images
        # r, r + W, ..., so every group stays within one process and W processes form the groups of one)
        y = x.reshape(g, -1, c, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt().mean(dim=[1, 2, 3])
        y = y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
        x = self.conv(torch.cat([x, y], dim=1))
        return self.out(self.fc(x.flatten(1)))


class Discriminator(nn.Module):
    """NVIDIA's residual D (`D` keys of a network pickle): blocks b{res} from the image resolution down
    to 8, then the epilogue b4 (minibatch std, 3x3 conv, two fully connected layers)."""

    def __init__(self, cfg: StyleGAN2Config, mbstd_group=4):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.resolutions = [2 ** i for i in range(cfg.log2, 2, -1)]
        self.fp16_resolution = cfg.fp16_resolution
        self.reduced_dtype: torch.dtype | None = None
        for k, res in enumerate(self.resolutions):
            setattr(self, f"b{res}", DiscriminatorBlock(cfg.channels(res), cfg.channels(res // 2), k == 0, cfg.conv_clamp))
        self.b4 = DiscriminatorEpilogue(cfg.channels(4), mbstd_group, cfg.conv_clamp)

    @property
    def mbstd_group(self) -> int:
        return self.b4.mbstd_group

    def block_names(self) -> list[str]:
        """Blocks from the input on: FreezeD's "first N blocks" are the first N of these."""
        return [f"b{res}" for res in self.resolutions] + ["b4"]

    def set_mixed_precision(self, dtype: torch.dtype | None) -> None:
        self.reduced_dtype = dtype

    def forward(self, img):
        x = None
        for res in self.resolutions:
            reduced = self.reduced_dtype is not None and res >= self.fp16_resolution
            x = getattr(self, f"b{res}")(x, img, self.reduced_dtype if reduced else torch.float32)
        return self.b4(x)


# ---------------------------------------------------------------- checkpoints

def load_state(module: nn.Module, state: dict, source: str) -> None:
    """Strict loading with a message naming the keys that could not be mapped."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if unexpected:
            parts.append(f"{len(unexpected)} keys it could not map, e.g. {unexpected[:6]}")
        if missing:
            parts.append(f"{len(missing)} {type(module).__name__.lower()} keys it does not provide, e.g. {missing[:6]}")
        if wrong:
            parts.append(f"{len(wrong)} keys with other shapes, e.g. {[(k, tuple(state[k].shape), tuple(own[k].shape)) for k in wrong[:3]]}")
        raise DrfhqError(f"{source}: unknown checkpoint layout: " + "; ".join(parts))
    module.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()}, strict=True)


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



def rosinality_d_to_nvidia(state: dict, cfg: StyleGAN2Config) -> dict:
    """Map a rosinality `d` state dict to NVIDIA's D layout. rosinality's ResBlock (conv1, blurred
    stride-2 conv2, blurred stride-2 1x1 skip, sum / sqrt 2) is NVIDIA's block (conv0, conv1, skip);
    its blur kernels are dropped (the same [1,3,3,1] filter)."""
    out = {}
    try:
        top = cfg.resolution
        out[f"b{top}.fromrgb.weight"], out[f"b{top}.fromrgb.bias"] = state["convs.0.0.weight"], state["convs.0.1.bias"]
        for k, res in enumerate(2 ** i for i in range(cfg.log2, 2, -1)):
            src = f"convs.{k + 1}"
            out[f"b{res}.conv0.weight"], out[f"b{res}.conv0.bias"] = state[f"{src}.conv1.0.weight"], state[f"{src}.conv1.1.bias"]
            out[f"b{res}.conv1.weight"], out[f"b{res}.conv1.bias"] = state[f"{src}.conv2.1.weight"], state[f"{src}.conv2.2.bias"]
            out[f"b{res}.skip.weight"] = state[f"{src}.skip.1.weight"]
        out["b4.conv.weight"], out["b4.conv.bias"] = state["final_conv.0.weight"], state["final_conv.1.bias"]
        for dst, src in (("fc", "final_linear.0"), ("out", "final_linear.1")):
            out[f"b4.{dst}.weight"], out[f"b4.{dst}.bias"] = state[f"{src}.weight"], state[f"{src}.bias"]
    except KeyError as exc:
        raise DrfhqError(f"not a rosinality stylegan2-pytorch discriminator: key {exc} is missing") from None
    return out
