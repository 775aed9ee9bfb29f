"""The four networks of Doorenbos, Sextl et al. (2024), Sect. 3: one registry that rules, scripts and tests read.

A network's role and the type of its hyperparameters are looked up here, never derived from its
name.  Light on purpose (standard library only), so that the Snakefile can build the DAG from it.

The hyperparameters are validated (and their defaults filled) by ``workflow/schemas/networks.schema.yaml``
(:func:`img2spec.config.resolve_networks`); :meth:`img2spec.settings.Settings.from_config` turns a
validated section into the frozen dataclasses below, which the library takes, and ``to_config`` turns
them back (checkpoints, training fingerprints).  The dataclasses hold no defaults: the schema does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .settings import Settings


@dataclass(frozen=True, kw_only=True)
class Hyperparameters(Settings):
    """Base of the hyperparameter dataclasses; their sections are the merged preset, not the workflow config."""


@dataclass(frozen=True, kw_only=True)
class ImageEncoderSettings(Hyperparameters):
    """ResNet image encoder (:class:`img2spec.models.ResNetEncoder`): depth 18/34/50, first-stage channels, stem stride."""

    depth: Literal[18, 34, 50]
    width: int
    stem_stride: Literal[1, 2]


@dataclass(frozen=True, kw_only=True)
class UNetSettings(Hyperparameters):
    """1-D U-Net of a CDM (:class:`img2spec.models.UNet1D`)."""

    base: int
    multipliers: tuple[int, ...]
    attention_levels: tuple[int, ...]
    heads: int
    res_blocks: int
    dropout: float


@dataclass(frozen=True, kw_only=True)
class SpectrumEncoderSettings(Hyperparameters):
    """1-D ResNet spectrum encoder of a contrastive network (:class:`img2spec.models.SpectrumEncoder`)."""

    width: int
    blocks: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class HeadSettings(Hyperparameters):
    """An MLP head on the pooled image vector: hidden units and the weight of its MSE in the loss."""

    hidden: int
    loss_weight: float


@dataclass(frozen=True, kw_only=True)
class RegressionHeadSettings(HeadSettings):
    """CDM_lr's regression head, and the conditional statistic of each pixel it learns.

    ``mean`` (squared error, CorrDiff) or ``median`` (absolute error).  Where the image leaves a line's
    strength uncertain (star-forming or AGN [O III], emission or none), the per-pixel mean of ln flux
    blends the alternatives and the median takes the likelier one; the diffusion model draws the
    residual on either.
    """

    statistic: Literal["mean", "median"]


@dataclass(frozen=True, kw_only=True)
class NetworkHyperparameters(Hyperparameters):
    """What every network has: image encoder, inputs, frame, optimiser and training length (``$defs/common``)."""

    image_encoder: ImageEncoderSettings
    learning_rate: float
    weight_decay: float
    batch_size: int
    max_steps: int
    val_every_steps: int
    checkpoint_every_steps: int
    crop_pad: int
    image_transform: Literal["linear", "arcsinh"]
    target_standardisation: Literal["global", "per_pixel"]
    photometric_features: bool
    frame: Literal["observed", "rest"]
    lr_warmup_steps: int
    lr_schedule: Literal["constant", "cosine"]


@dataclass(frozen=True, kw_only=True)
class DiffusionHyperparameters(NetworkHyperparameters):
    """A conditional diffusion model (``$defs/cdm``): U-Net, noise schedule, EMA, and its optional heads."""

    unet: UNetSettings
    timesteps: int
    schedule: Literal["cosine", "linear"]
    ema_decay: float
    val_sampler_steps: int
    prediction: Literal["epsilon", "v", "x0"]
    residual: bool
    upsampling: Literal["linear", "fitted"]
    upsampling_half_width: int
    regression: RegressionHeadSettings | None
    residual_standardisation: Literal["none", "running"]
    redshift: HeadSettings | None


@dataclass(frozen=True, kw_only=True)
class ContrastiveHyperparameters(NetworkHyperparameters):
    """A contrastive image–spectrum network (``$defs/contrastive``)."""

    spectrum_encoder: SpectrumEncoderSettings
    latent: int
    temperature: float
    learn_temperature: bool


@dataclass(frozen=True)
class Network:
    """One network of the method.

    Attributes
    ----------
    name : str
        Key in the config (``training.networks``), the presets and ``results/models/<name>/``.
    kind : {'diffusion', 'contrastive'}
        A conditional diffusion model that draws spectra, or a contrastive image–spectrum network
        that ranks them.
    resolution : {'lowres', 'full'}
        The spectra it works on: the 563-pixel low-resolution ones or the full 4,500-pixel ones.
    description : str
    """

    name: str
    kind: Literal["diffusion", "contrastive"]
    resolution: Literal["lowres", "full"]
    description: str

    @property
    def is_diffusion(self) -> bool:
        return self.kind == "diffusion"

    @property
    def conditioned_on_lowres(self) -> bool:
        """Whether it also takes a low-resolution spectrum (stacked as a channel): the upsampling CDM."""
        return self.is_diffusion and self.resolution == "full"

    @property
    def hyperparameters(self) -> type[DiffusionHyperparameters | ContrastiveHyperparameters]:
        """The dataclass of its hyperparameters."""
        return DiffusionHyperparameters if self.is_diffusion else ContrastiveHyperparameters


NETWORKS: dict[str, Network] = {
    network.name: network
    for network in (
        Network("cdm_lr", "diffusion", "lowres", "CDM drawing low-resolution spectra from the image (Sect. 3.1)"),
        Network(
            "contrastive_lr", "contrastive", "lowres", "ranks the low-resolution draws against the image (Sect. 3.2)"
        ),
        Network(
            "cdm_sr", "diffusion", "full", "CDM upsampling a low-resolution spectrum to full resolution (Sect. 3.3)"
        ),
        Network(
            "contrastive_sr", "contrastive", "full", "ranks the full-resolution draws against the image (Sect. 3.3)"
        ),
    )
}
#: Network names in training and inference order.
NETWORK_NAMES = tuple(NETWORKS)


def network(name: str) -> Network:
    """The registered network ``name``; a clear error for any other name."""
    try:
        return NETWORKS[name]
    except KeyError:
        raise ValueError(f"unknown network {name!r}; the networks are {', '.join(NETWORK_NAMES)}") from None


def hyperparameters(name: str, section: Mapping[str, Any]) -> DiffusionHyperparameters | ContrastiveHyperparameters:
    """Typed hyperparameters of the network ``name`` from its validated section (``training.networks.<name>``)."""
    return network(name).hyperparameters.from_config(section, f"training.networks.{name}")
