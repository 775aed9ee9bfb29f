"""Networks: ResNet image encoders, a 1-D ResNet spectrum encoder, and a 1-D U-Net with cross-attention.

The ResNets follow He et al. (2016) (ResNet-18: basic blocks [2, 2, 2, 2]; ResNet-50: bottleneck
blocks [3, 4, 6, 3]) with a 5-band stem for 64×64 cubes: a 3×3 stride-1 convolution and no
max-pool, so the last stage is 8×8.  They are written here rather than taken from torchvision,
whose PyPI wheels are CUDA builds that do not load against CPU-only torch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _groups(channels: int) -> int:
    """GroupNorm groups: 8 where they divide the channels, else the largest divisor up to 8."""
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


# ---------------------------------------------------------------------------------------------
# image encoders


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a residual connection, in 2-D (images) or 1-D (spectra)."""

    expansion = 1

    def __init__(self, in_ch: int, ch: int, stride: int, dims: int = 2) -> None:
        super().__init__()
        conv, norm = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv1d, nn.BatchNorm1d)
        self.conv1 = conv(in_ch, ch, 3, stride, 1, bias=False)
        self.bn1 = norm(ch)
        self.conv2 = conv(ch, ch, 3, 1, 1, bias=False)
        self.bn2 = norm(ch)
        self.shortcut = (
            nn.Sequential(conv(in_ch, ch, 1, stride, bias=False), norm(ch))
            if stride != 1 or in_ch != ch
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, ch: int, stride: int) -> None:
        super().__init__()
        out_ch = ch * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, ch, 1, bias=False),
            nn.BatchNorm2d(ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(ch, ch, 3, stride, 1, bias=False),
            nn.BatchNorm2d(ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(ch, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        )
        self.shortcut = (
            nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))
            if stride != 1 or in_ch != out_ch
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


RESNET_LAYOUTS: dict[int, tuple[type[BasicBlock | Bottleneck], tuple[int, ...]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


class ResNetEncoder(nn.Module):
    """ResNet image encoder returning spatial tokens and a pooled vector.

    Parameters
    ----------
    depth : int
        18, 34 or 50.
    width : int
        Channels of the first stage (64 in the standard ResNets).
    in_bands : int
        Input bands (5 for ugriz).
    stem_stride : int
        Stride of the stem (1 keeps the 64×64 resolution into the first stage; 2 is 4× cheaper).
    feature_dim : int
        Photometric features per image (0: none).  An MLP maps them to one more token and adds
        them to the pooled vector.

    Forward
    -------
    images : (B, in_bands, H, W), features (B, feature_dim) or None → tokens (B, H/8·W/8 [+1], C),
    pooled (B, C), with C = ``out_dim``.
    """

    def __init__(
        self, depth: int = 18, width: int = 64, in_bands: int = 5, stem_stride: int = 1, feature_dim: int = 0
    ) -> None:
        super().__init__()
        block, layers = RESNET_LAYOUTS[depth]
        self.stem = nn.Sequential(
            nn.Conv2d(in_bands, width, 3, stem_stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        stages, in_ch = [], width
        for i, n_blocks in enumerate(layers):
            ch = width * 2**i
            blocks = []
            for j in range(n_blocks):
                blocks.append(block(in_ch, ch, 2 if (j == 0 and i > 0) else 1))
                in_ch = ch * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.out_dim = in_ch
        self.features = (
            nn.Sequential(nn.Linear(feature_dim, in_ch), nn.SiLU(), nn.Linear(in_ch, in_ch)) if feature_dim else None
        )

    def forward(self, images: torch.Tensor, features: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.stages(self.stem(images)).flatten(2).transpose(1, 2)
        pooled = tokens.mean(dim=1)
        if self.features is not None:
            if features is None:
                raise ValueError("this image encoder was built for photometric features; none were given")
            embedded = self.features(features)
            tokens = torch.cat([tokens, embedded[:, None, :]], dim=1)
            pooled = pooled + embedded
        return tokens, pooled


# ---------------------------------------------------------------------------------------------
# spectrum encoder


class SpectrumEncoder(nn.Module):
    """1-D ResNet over a spectrum: a stride-2 stem, stages of basic blocks halving the length, mean pool.

    Forward: (B, L) → (B, out_dim).
    """

    def __init__(self, width: int = 64, blocks: tuple[int, ...] = (2, 2, 2, 2)) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv1d(1, width, 7, 2, 3, bias=False), nn.BatchNorm1d(width), nn.ReLU(inplace=True)
        )
        layers, in_ch = [], width
        for i, n in enumerate(blocks):
            ch = width * 2**i
            for j in range(n):
                layers.append(BasicBlock(in_ch, ch, 2 if j == 0 else 1, dims=1))
                in_ch = ch
        self.blocks = nn.Sequential(*layers)
        self.out_dim = in_ch

    def forward(self, spectra: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(spectra[:, None, :])).mean(dim=-1)


# ---------------------------------------------------------------------------------------------
# U-Net


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding (B, dim) of integer diffusion steps (Vaswani et al. 2017)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock1D(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_ch), in_ch)
        self.conv1 = nn.Conv1d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(_groups(out_ch), out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + self.skip(x)


class CrossAttention1D(nn.Module):
    """Spectrum positions attend to image tokens (multi-head, residual)."""

    def __init__(self, channels: int, context_dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(context_dim, 2 * channels)
        self.out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, length = x.shape
        q = self.q(self.norm(x).transpose(1, 2)).view(b, length, self.heads, -1).transpose(1, 2)
        k, v = self.kv(context).view(b, context.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, length, c)
        return x + self.out(attended).transpose(1, 2)


class UNet1D(nn.Module):
    """1-D U-Net predicting the noise ε of a spectrum, conditioned on image tokens.

    Parameters
    ----------
    in_channels : int
        1 for the low-resolution model; 2 for super-resolution (noisy spectrum and the
        low-resolution spectrum interpolated to full resolution).
    base : int
        Channels of the first level (paper: 64).
    multipliers : tuple of int
        Channel multiplier per level (paper: 1, 2, 4, 8, 16).
    attention_levels : tuple of int
        Levels (0 = full resolution) with cross-attention to the image; the middle always has it.
    context_dim : int
        Dimension of the image tokens.
    """

    def __init__(
        self,
        in_channels: int,
        base: int,
        multipliers: tuple[int, ...],
        attention_levels: tuple[int, ...],
        context_dim: int,
        heads: int = 4,
        res_blocks: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        emb_dim = 4 * base
        self.base = base
        self.time_mlp = nn.Sequential(nn.Linear(base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.context_mlp = nn.Linear(context_dim, emb_dim)
        self.in_conv = nn.Conv1d(in_channels, base, 3, padding=1)
        self.down = nn.ModuleList()
        skips, ch = [base], base
        for level, mult in enumerate(multipliers):
            for _ in range(res_blocks):
                out = base * mult
                self.down.append(self._stage(ch, out, emb_dim, dropout, level in attention_levels, context_dim, heads))
                ch = out
                skips.append(ch)
            if level < len(multipliers) - 1:
                self.down.append(nn.Conv1d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid = self._stage(ch, ch, emb_dim, dropout, True, context_dim, heads)
        self.mid2 = ResBlock1D(ch, ch, emb_dim, dropout)
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(multipliers))):
            for _ in range(res_blocks + 1):
                out = base * mult
                self.up.append(
                    self._stage(ch + skips.pop(), out, emb_dim, dropout, level in attention_levels, context_dim, heads)
                )
                ch = out
            if level > 0:
                self.up.append(
                    nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv1d(ch, ch, 3, padding=1))
                )
        last = nn.Conv1d(ch, 1, 3, padding=1)
        for parameter in last.parameters():
            nn.init.zeros_(parameter)
        self.out = nn.Sequential(nn.GroupNorm(_groups(ch), ch), nn.SiLU(), last)
        self.factor = 2 ** (len(multipliers) - 1)

    @staticmethod
    def _stage(in_ch, out_ch, emb_dim, dropout, attention, context_dim, heads) -> nn.ModuleList:
        stage = nn.ModuleList([ResBlock1D(in_ch, out_ch, emb_dim, dropout)])
        if attention:
            stage.append(CrossAttention1D(out_ch, context_dim, heads))
        return stage

    @staticmethod
    def _run(stage, h, emb, context):
        if isinstance(stage, nn.ModuleList):
            h = stage[0](h, emb)
            return stage[1](h, context) if len(stage) > 1 else h
        return stage(h)

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """x (B, in_channels, L), t (B,), context (B, N, C), pooled (B, C) → ε (B, L)."""
        length = x.shape[-1]
        pad = (-length) % self.factor
        h = F.pad(x, (0, pad), mode="replicate") if pad else x
        emb = self.time_mlp(timestep_embedding(t, self.base)) + self.context_mlp(pooled)
        h = self.in_conv(h)
        skips = [h]
        for stage in self.down:
            h = self._run(stage, h, emb, context)
            skips.append(h)
        h = self.mid2(self._run(self.mid, h, emb, context), emb)
        for stage in self.up:
            if isinstance(stage, nn.ModuleList):
                h = torch.cat([h, skips.pop()], dim=1)
            h = self._run(stage, h, emb, context)
        return self.out(h)[:, 0, :length]


class RegressionHead(nn.Module):
    """MLP from the pooled image vector to a whole spectrum: a conditional statistic of x0 given the image
    (its mean or median, as the loss it is trained with makes it).

    The last layer starts at zero, so the untrained head predicts the training mean (0 in the
    standardised units the diffusion models work in).
    """

    def __init__(self, in_dim: int, hidden: int, length: int) -> None:
        super().__init__()
        first, middle, last = nn.Linear(in_dim, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, length)
        for parameter in last.parameters():
            nn.init.zeros_(parameter)
        self.mlp = nn.Sequential(first, nn.SiLU(), middle, nn.SiLU(), last)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.mlp(pooled)


class BoundDenoiser:
    """A denoiser bound to one batch of conditioning, with the images encoded once.

    Call it on (x_t, t) for the U-Net's output.  ``centre`` (B, L) is the regression head's conditional
    mean or median of the spectrum, or None for a network without one; with it the U-Net models x0 − centre.
    """

    def __init__(
        self,
        unet: UNet1D,
        tokens: torch.Tensor,
        pooled: torch.Tensor,
        lowres: torch.Tensor | None,
        centre: torch.Tensor | None,
    ) -> None:
        self.unet, self.tokens, self.pooled, self.lowres, self.centre = unet, tokens, pooled, lowres, centre

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        channels = [x_t] if self.lowres is None else [x_t, self.lowres]
        return self.unet(torch.stack(channels, dim=1), t, self.tokens, self.pooled)

    def repeated(self, repeats: int, lowres: torch.Tensor | None = None) -> BoundDenoiser:
        """The same conditioning with each row repeated ``repeats`` times (several candidates per image,
        the image encoded once), and ``lowres`` (B·repeats, L) per candidate when given."""

        def rows(values):
            return None if values is None else values.repeat_interleave(repeats, dim=0)

        return BoundDenoiser(
            self.unet,
            rows(self.tokens),
            rows(self.pooled),
            lowres if lowres is not None else rows(self.lowres),
            rows(self.centre),
        )


class ConditionalDenoiser(nn.Module):
    """Image encoder + U-Net: the network's output at (x_t, t | image[, low-resolution spectrum]).

    With a ``regression`` head the spectrum is modelled as a regression centre plus a residual that
    the diffusion model draws (CorrDiff, Mardani et al. 2024): the head learns the conditional mean
    (squared error) or median (absolute error) of x0 on every training example, where diffusion
    training sees the conditional mean only at its few high-noise steps.

    A rest-frame CDM_lr also has a ``redshift`` head (a one-value :class:`RegressionHead` on the same
    pooled vector): the image's redshift, at which its rest-frame draws are placed.
    """

    def __init__(
        self,
        encoder: ResNetEncoder,
        unet: UNet1D,
        regression: RegressionHead | None = None,
        redshift: RegressionHead | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.unet = unet
        self.regression = regression
        self.redshift = redshift

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        images: torch.Tensor,
        lowres: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.conditioned(images, lowres, features)(x_t, t)

    def conditioned(
        self, images: torch.Tensor, lowres: torch.Tensor | None = None, features: torch.Tensor | None = None
    ) -> BoundDenoiser:
        """The denoiser for fixed images, low-resolution spectra and photometric features (encoded
        once, not at every sampler step)."""
        tokens, pooled = self.encoder(images, features)
        centre = self.regression(pooled) if self.regression is not None else None
        return BoundDenoiser(self.unet, tokens, pooled, lowres, centre)


class ContrastiveModel(nn.Module):
    """Image and spectrum encoders mapped to a shared L2-normalised latent space (CLIP-style)."""

    def __init__(
        self,
        image_encoder: ResNetEncoder,
        spectrum_encoder: SpectrumEncoder,
        latent: int,
        temperature: float,
        learn_temperature: bool,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.spectrum_encoder = spectrum_encoder
        self.image_head = nn.Sequential(nn.Linear(image_encoder.out_dim, latent), nn.ReLU(), nn.Linear(latent, latent))
        self.spectrum_head = nn.Sequential(
            nn.Linear(spectrum_encoder.out_dim, latent), nn.ReLU(), nn.Linear(latent, latent)
        )
        log_t = torch.tensor(math.log(temperature))
        self.log_temperature = nn.Parameter(log_t, requires_grad=learn_temperature)

    def embed_images(self, images: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        return F.normalize(self.image_head(self.image_encoder(images, features)[1]), dim=-1)

    def embed_spectra(self, spectra: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.spectrum_head(self.spectrum_encoder(spectra)), dim=-1)

    @property
    def temperature(self) -> torch.Tensor:
        """The softmax temperature, kept within [0.01, 1]."""
        return self.log_temperature.clamp(math.log(0.01), math.log(1.0)).exp()

    def similarity(self, image_embeddings: torch.Tensor, spectrum_embeddings: torch.Tensor) -> torch.Tensor:
        """Cosine similarities of embeddings divided by the temperature, (B_images, B_spectra)."""
        return image_embeddings @ spectrum_embeddings.T / self.temperature

    def logits(self, images: torch.Tensor, spectra: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Cosine similarities divided by the temperature, (B_images, B_spectra)."""
        return self.similarity(self.embed_images(images, features), self.embed_spectra(spectra))


def info_nce(logits: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE / NT-Xent loss: matching pairs sit on the diagonal (Radford et al. 2021)."""
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
