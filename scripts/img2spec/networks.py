"""The four networks of Doorenbos, Sextl et al. (2024), Sect. 3: one registry that rules, scripts and tests read.

A network's role is looked up here, never derived from its name.  Light on purpose (standard
library only), so that the Snakefile can build the DAG from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


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
