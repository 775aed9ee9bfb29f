"""The network registry (issue 15): every place that names the networks agrees with it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from img2spec.config import ConfigError, resolve_networks, validate_config
from img2spec.networks import (
    NETWORK_NAMES,
    NETWORKS,
    ContrastiveHyperparameters,
    DiffusionHyperparameters,
    hyperparameters,
    network,
)

REPO = Path(__file__).resolve().parents[1]


def test_schemas_and_presets_name_the_registered_networks():
    config_schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    declared = config_schema["properties"]["training"]["properties"]["networks"]["properties"]
    assert tuple(declared) == NETWORK_NAMES
    networks_schema = yaml.safe_load((REPO / "workflow/schemas/networks.schema.yaml").read_text())
    assert set(networks_schema["properties"]) == set(NETWORK_NAMES)
    for preset in (REPO / "config/presets").glob("*.yaml"):
        assert tuple(yaml.safe_load(preset.read_text())) == NETWORK_NAMES, preset.name


def test_roles_come_from_the_registry_not_the_name():
    assert [n.name for n in NETWORKS.values() if n.is_diffusion] == ["cdm_lr", "cdm_sr"]
    assert [n.name for n in NETWORKS.values() if n.conditioned_on_lowres] == ["cdm_sr"]
    assert network("contrastive_sr").resolution == "full"
    with pytest.raises(ValueError, match="unknown network 'cdm_mr'.*cdm_lr"):
        network("cdm_mr")


def test_a_preset_with_another_set_of_networks_is_refused(tmp_path):
    tiny = yaml.safe_load((REPO / "config/presets/tiny.yaml").read_text())
    tiny["cdm_mr"] = tiny.pop("cdm_sr")
    (tmp_path / "renamed.yaml").write_text(yaml.safe_dump(tiny))
    training = validate_config({})["training"] | {"preset": "renamed"}
    with pytest.raises(ConfigError, match="cdm_mr"):
        resolve_networks(training, presets_dir=tmp_path)


def test_the_dag_is_built_from_light_modules_only():
    """What the Snakefile and rules/common.smk import pulls in neither torch, numpy nor matplotlib."""
    smk = (REPO / "rules/common.smk").read_text() + (REPO / "workflow/Snakefile").read_text()
    modules = sorted(set(re.findall(r"^from (img2spec[.\w]*) import", smk, flags=re.MULTILINE)))
    assert modules, "no img2spec import found in the Snakefile or rules/common.smk"
    code = (
        f"import sys; sys.path.insert(0, {str(REPO / 'scripts')!r}); "
        + "; ".join(f"import {m}" for m in modules)
        + "; heavy = {'torch', 'numpy', 'matplotlib', 'h5py'} & set(sys.modules); print(sorted(heavy))"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    )


def test_template_libraries_match_the_dag():
    from img2spec.dag import LIBRARY_NAMES
    from img2spec.templates import LIBRARIES

    assert tuple(LIBRARIES) == LIBRARY_NAMES


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"contrastive_sr": {"frame": "observed"}}, "must share one frame"),
        ({"cdm_lr": {"redshift": None}}, "needs a redshift head"),
        ({"cdm_sr": {"redshift": {"hidden": 8, "loss_weight": 1.0}}}, "only the low-resolution CDM"),
    ],
)
def test_frames_and_redshift_heads_must_agree(overrides, message):
    """The tiny preset works in the rest frame: one frame for all four networks, a redshift head on CDM_lr only."""
    training = validate_config({})["training"] | {"networks": overrides}
    with pytest.raises(ConfigError, match=message):
        resolve_networks(training)
    observed = {name: {"frame": "observed"} for name in NETWORK_NAMES} | {
        "cdm_lr": {"frame": "observed", "redshift": None}
    }
    assert {
        hp["frame"] for hp in resolve_networks(validate_config({})["training"] | {"networks": observed}).values()
    } == {"observed"}


@pytest.mark.parametrize("preset", sorted(p.stem for p in (REPO / "config/presets").glob("*.yaml")))
def test_every_preset_gives_typed_hyperparameters_that_write_back_unchanged(preset):
    """The dataclasses hold every key the schema fills in, no more, and turn back into the same section."""
    sections = resolve_networks({"preset": preset})
    for name, section in sections.items():
        hp = hyperparameters(name, section)
        assert isinstance(hp, DiffusionHyperparameters if NETWORKS[name].is_diffusion else ContrastiveHyperparameters)
        assert hp.to_config() == section
        assert isinstance(hp.image_encoder.depth, int) and isinstance(hp.frame, str)


def test_hyperparameters_name_a_missing_or_unknown_key():
    section = resolve_networks({"preset": "tiny"})["cdm_lr"]
    hp = hyperparameters("cdm_lr", section)
    assert hp.unet.multipliers == tuple(section["unet"]["multipliers"]) and hp.redshift.hidden == 128
    with pytest.raises(
        ValueError,
        match=r"training.networks.contrastive_lr: unknown keys \['ema_decay', .*'val_sampler_steps'\], missing keys \['latent', ",
    ):
        hyperparameters("contrastive_lr", section)
    broken = {**section, "unet": {k: v for k, v in section["unet"].items() if k != "heads"}}
    with pytest.raises(ValueError, match=r"training.networks.cdm_lr.unet: missing keys \['heads'\]$"):
        hyperparameters("cdm_lr", broken)
