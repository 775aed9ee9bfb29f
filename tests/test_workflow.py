"""The Snakemake workflow: a tiny end-to-end run, config validation, lint, and env coverage."""

from __future__ import annotations

import ast
import contextlib
import copy
import dataclasses
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pandas as pd
import pytest
import torch
import yaml
from astropy.io import fits
from img2spec.config import ConfigError, load_config, validate_config
from img2spec.evaluation import EvaluationSettings
from img2spec.inference import InferenceSettings
from img2spec.networks import NETWORK_NAMES

from .conftest import REPO
from .tiny_dag import SNAKEMAKE, TINY, make_workdir, run_snakemake
from .workflow_rules import report_paths, rules


@pytest.mark.slow
@pytest.mark.workflow
def test_tiny_dag_runs_end_to_end(tiny_run):
    workdir, result = tiny_run.folder, tiny_run.result
    assert result.returncode == 0, result.stderr[-4000:]
    with h5py.File(workdir / "results/dataset/dataset.h5") as h5:
        assert h5["images"].shape == (40, 5, 64, 64)
        assert h5["split"][()].tolist().count(2) == 6
    predicted = sorted((workdir / "results/predictions/fits").glob("*.fits"))
    assert len(predicted) == 6
    with h5py.File(workdir / "results/predictions/test.h5") as h5, fits.open(predicted[0]) as hdul:
        z = dict(zip(h5["specobjid"][()], h5["z"][()]))[int(predicted[0].stem)]
        assert hdul[0].header["Z"] == pytest.approx(z)  # placed at the predicted redshift
        # the paper's selection rides along with the delivered one
        assert {"FLUX", "FLUX_CONTRASTIVE_BEST", "FLUX_P50"} <= set(hdul["PREDICTION"].columns.names)
    with h5py.File(workdir / "results/dataset/dataset.h5") as h5:
        low, high = h5.attrs["rest_z_range"]
    assert low <= z <= high
    with h5py.File(workdir / "results/predictions/mockcubes.h5") as h5:
        assert h5["flux"].shape == (40, 4500)
    for path in (
        "results/mock/examples.png",
        "results/dataset/examples.png",
        "results/dataset/rejects.csv",
        "results/benchmarks/mock_survey.tsv",
        "results/logs/build_dataset.log",
        "resources/mock/truth.parquet",
        "results/models/cdm_sr/last.ckpt",
        "results/models/contrastive_lr/loss.png",
        "results/models/cdm_lr/metrics.csv",
        "results/predictions/summary.json",
        "results/predictions/examples.png",
        "results/predictions/mockcubes.h5",
        "results/evaluation/quality/summary.json",
        "results/evaluation/quality/histograms.png",
        "results/evaluation/fits/chunk1.parquet",
        "results/evaluation/redshift/redshift.png",
        "results/evaluation/ppxf/differences.png",
        "results/evaluation/firefly/summary.json",
        "results/evaluation/indices/indices.png",
        "results/evaluation/comparisons/bimodality.png",
    ):
        assert (workdir / path).stat().st_size > 0, path
    summary = (workdir / "results/evaluation/summary.md").read_text()
    assert "mock" in summary and "0.0118" in summary
    assert "img2spec (the paper's selection: contrastive_sr's best)" in summary
    again = run_snakemake(workdir, "-n", "--configfile", "tiny.yaml")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr

    ablation = run_snakemake(workdir, "results/ablation/summary.json", "--cores", "2", "--configfile", "tiny.yaml")
    assert ablation.returncode == 0, ablation.stderr[-4000:]
    table = pd.read_csv(workdir / "results/ablation/table.csv")
    assert table["variant"].tolist() == ["64px_ugriz", "4px_ugriz", "1px_mean"] and (table["n"] == 6).all()

    # the ablation is off the default graph, so it is named as a target to be reported too
    report = run_snakemake(
        workdir, "all", "results/ablation/summary.json", "--report", "results/report.html", "--configfile", "tiny.yaml"
    )
    assert report.returncode == 0, report.stderr[-4000:]
    html = (workdir / "results/report.html").read_text(errors="replace")
    declared = _declared_report_files()
    assert len(declared) > 20
    missing = [name for name in declared if name not in html]
    assert not missing, f"report lacks {missing}"


def _declared_report_files() -> list[str]:
    """Every file the rules wrap in report(), wildcards expanded as in the tiny mock run (SDSS-only files left out)."""
    paths = report_paths()
    expanded = []
    for path in paths:
        for code in ("ppxf", "firefly"):
            for network in NETWORK_NAMES:
                expanded.append(path.replace("{code}", code).replace("{network}", network))
    return sorted({p for p in expanded if "sdss" not in p})


def _train_process(snakemake: subprocess.Popen):
    """The training script a running snakemake started, once it has started."""
    import psutil

    for child in psutil.Process(snakemake.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if any(part.endswith("train.py") for part in child.cmdline()):
                return child
    return None


def _interrupt_training(workdir: Path, target: str, signum: int) -> subprocess.CompletedProcess:
    """Run snakemake for ``target`` and send its training process ``signum`` once a resume checkpoint exists."""
    checkpoint = workdir / "results/models/contrastive_lr/resume/last.ckpt"
    seen = checkpoint.stat().st_mtime_ns if checkpoint.exists() else None
    command = SNAKEMAKE + [
        "--snakefile",
        str(REPO / "workflow" / "Snakefile"),
        target,
        "--cores",
        "1",
        "--configfile",
        "tiny.yaml",
    ]
    with subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as run:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and run.poll() is None:
            if checkpoint.exists() and checkpoint.stat().st_mtime_ns != seen and (trainer := _train_process(run)):
                time.sleep(0.2)  # let the checkpoint be written out
                trainer.send_signal(signum)
                break
            time.sleep(0.02)
        out, err = run.communicate(timeout=300)
    return subprocess.CompletedProcess(command, run.returncode, out, err)


@pytest.mark.slow
@pytest.mark.workflow
def test_training_resumes_under_snakemake_after_kill_and_sigterm(tmp_path, mangadap_wheel):
    """Snakemake deletes a failed job's outputs; the resume state survives and the rerun continues exactly."""
    network = {"max_steps": 60, "batch_size": 8, "val_every_steps": 20, "checkpoint_every_steps": 20}
    config = {key: TINY[key] for key in ("templates", "mock", "dataset")} | {
        "training": {"networks": {"contrastive_lr": network}}
    }
    workdir = make_workdir(tmp_path, config)
    target = "results/models/contrastive_lr/last.ckpt"
    straight = run_snakemake(workdir, target, "--cores", "1", "--configfile", "tiny.yaml")
    assert straight.returncode == 0, straight.stderr[-3000:]
    reference = torch.load(workdir / target, map_location="cpu", weights_only=False)["state_dict"]
    assert not (workdir / "results/models/contrastive_lr/resume").exists()
    shutil.rmtree(workdir / "results/models/contrastive_lr")

    killed = _interrupt_training(workdir, target, signal.SIGKILL)
    assert killed.returncode != 0 and not (workdir / target).exists()
    saved_at = torch.load(workdir / "results/models/contrastive_lr/resume/last.ckpt", weights_only=False)["global_step"]
    terminated = _interrupt_training(workdir, target, signal.SIGTERM)
    assert terminated.returncode != 0, "an unfinished training must not look finished"
    log = (workdir / "results/logs/train_contrastive_lr.log").read_text()
    assert "resuming contrastive_lr from" in log and "TrainingInterrupted: contrastive_lr: stopped at step" in log
    stopped_at = torch.load(workdir / "results/models/contrastive_lr/resume/last.ckpt", weights_only=False)[
        "global_step"
    ]
    assert saved_at < stopped_at < 60

    finished = run_snakemake(workdir, target, "--cores", "1", "--configfile", "tiny.yaml")
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "resuming contrastive_lr from" in (workdir / "results/logs/train_contrastive_lr.log").read_text()
    resumed = torch.load(workdir / target, map_location="cpu", weights_only=False)["state_dict"]
    for name, value in reference.items():
        assert torch.equal(value, resumed[name]), name
    metrics = pd.read_csv(workdir / "results/models/contrastive_lr/metrics.csv").dropna(subset=["val_loss"])
    assert metrics["step"].tolist() == [0, 19, 39, 59]
    assert not (workdir / "results/models/contrastive_lr/resume").exists()


@pytest.mark.workflow
@pytest.mark.parametrize(
    "bad, message",
    [
        ({"survey": "sdss9"}, "is not one of \\['mock', 'sdss'\\]"),
        ({"mock": {"n_galaxy": 10}}, "'n_galaxy' was unexpected"),
        ({"dataset": {"n_val": -1}}, "less than the minimum"),
        ({"inference": {"k_lr": 2, "keep_lr": 3}}, "inference.keep_lr: keeps 3 of k_lr = 2"),
        ({"mock": {"population": {"z_min": 0.15, "z_max": 0.1}}}, "mock.population.z_min: 0.15 must be below"),
        ({"dataset": {"n_val": 2000, "n_test": 1000}}, "leaves no training galaxy of mock.n_galaxies = 3000"),
        ({"preprocessing": {"r_out": 2500}}, "preprocessing.r_out: 2500 must be below r_in"),
        ({"predict_images": {"test": "cubes.npz"}}, "predict_images.test: the name 'test' belongs to the test split"),
        ({"inference": {"percentiles": [16, 84]}}, "inference.percentiles: \\[16, 84\\] must hold 50"),
        (
            {"inference": {"k_lr": 1, "keep_lr": 1, "k_sr": 1}},
            "1 candidate per galaxy gives an uncertainty band of zero width",
        ),
        ({"dataset": {"z_min": 0.08}}, "dataset.z_min/z_max: 0.08–0.15 would reject mock galaxies"),
    ],
)
def test_bad_config_fails_at_start_naming_the_key(tmp_path, bad, message):
    workdir = make_workdir(tmp_path, bad)
    result = run_snakemake(workdir, "-n", "--configfile", "tiny.yaml")
    assert result.returncode != 0
    assert re.search(message, result.stdout + result.stderr)
    with pytest.raises(ConfigError, match=message):
        validate_config(bad)


def test_sampling_steps_must_fit_above_the_final_noise_level():
    """A fast sampler's steps are spread over the schedule above the step its final noise ends at: at start-up,
    not after training, a config whose steps do not fit is refused, naming the keys and the room left."""
    from img2spec.config import check_sampling_steps, resolve_networks

    config = load_config(REPO / "config" / "config.yaml")
    networks = resolve_networks(config["training"])
    check_sampling_steps(config, networks)  # the default: 10 DDIM steps
    too_many = copy.deepcopy(config)
    too_many["inference"]["steps"] = 100
    with pytest.raises(ConfigError) as refused:
        check_sampling_steps(too_many, networks)
    # cdm_lr ends at final_noise_lr 0.7 (step 109 of 250) and fits; cdm_sr ends at 2.5 (step 159) and does not
    assert str(refused.value) == (
        "config key inference.steps: 100 steps do not fit in the 91 steps of cdm_sr's 250-step schedule above "
        "inference.final_noise_sr = 2.5 (step 159); lower inference.steps to at most 91 or final_noise_sr"
    )
    too_many["inference"]["sampler"] = "ancestral"  # takes every step down to the final one
    check_sampling_steps(too_many, networks)
    ablation = copy.deepcopy(config)
    ablation["ablation"]["inference"] = {"steps": 95}
    with pytest.raises(ConfigError, match="config key ablation.inference.steps: 95 steps do not fit in the 91"):
        check_sampling_steps(ablation, networks)
    noisy = copy.deepcopy(config)
    noisy["inference"]["final_noise_lr"] = 1e9  # the cosine schedule ends at a noise variance of 2.5e7
    with pytest.raises(
        ConfigError, match="inference.final_noise_lr: final_noise 1000000000.0 exceeds the schedule's largest"
    ):
        check_sampling_steps(noisy, networks)


@pytest.mark.workflow
def test_too_many_sampling_steps_stop_the_workflow_before_any_job(tmp_path):
    workdir = make_workdir(tmp_path, {"inference": {"steps": 100}})
    result = run_snakemake(workdir, "-n", "--configfile", "tiny.yaml")
    assert result.returncode != 0
    assert "config key inference.steps: 100 steps do not fit" in result.stdout + result.stderr


@pytest.mark.workflow
def test_nested_command_line_values_are_typed_and_network_keys_closed(tmp_path):
    """--config training='{devices: 4}' arrives as the string '4' from Snakemake; a misspelt network key is not ignored."""
    workdir = make_workdir(tmp_path, {})
    typed = run_snakemake(
        workdir, "-n", "--configfile", "tiny.yaml", "--config", "training={preset: paper, accelerator: gpu, devices: 4}"
    )
    assert typed.returncode == 0, typed.stderr[-2000:]
    misspelt = run_snakemake(
        workdir,
        "-n",
        "--configfile",
        "tiny.yaml",
        "--config",
        "training={networks: {contrastive_lr: {learning_rat: 0.001}}}",
    )
    assert misspelt.returncode != 0
    assert re.search(
        r"training\.networks\.contrastive_lr: .*'learning_rat' was unexpected", misspelt.stdout + misspelt.stderr
    )


def _settings_classes() -> list[type]:
    import importlib
    import pkgutil

    import img2spec
    from img2spec.settings import Settings

    for module in pkgutil.walk_packages(img2spec.__path__, "img2spec."):
        importlib.import_module(module.name)
    found, todo = [], [Settings]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.append(sub)
            todo.append(sub)
    return found


def test_a_test_outside_the_workflow_tier_cannot_startrun_snakemake():
    """The quick tier's promise is enforced, not trusted: this test is not marked ``workflow``."""
    for command in ([sys.executable, "-m", "snakemake", "--version"], "snakemake --version"):
        with pytest.raises(RuntimeError, match="mark it @pytest.mark.workflow"):
            subprocess.run(command, shell=isinstance(command, str), capture_output=True, check=False)


def test_the_configuration_reference_is_generated_from_the_schema():
    """Issue 27: config/README.md is the schema rendered (python -m img2spec.configdoc), so neither can drift."""
    from img2spec.configdoc import allowed, render

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert (REPO / "config" / "README.md").read_text() == render(schema), (
        "config/README.md differs from the schema: python -m img2spec.configdoc > config/README.md"
    )
    inference = schema["properties"]["inference"]["properties"]
    assert allowed(inference["keep_lr"]) == "integer ≥ 1"
    assert allowed(inference["sampler"]) == "`ancestral`, `ddim`, `dpmpp_2m`"
    assert allowed({"type": "number", "exclusiveMinimum": 0, "maximum": 50}) == "number > 0, ≤ 50"
    leaves = render(schema).count("\n| `")
    assert leaves >= 150, leaves


def test_the_schema_holds_every_default_and_every_settings_class_builds_from_it():
    """Issue 27: settings dataclasses declare no defaults; each one with a config section builds from the
    schema's defaults (unknown or missing keys would fail), and constants the schema repeats agree with their owner."""
    from img2spec.baselines import BaselineSettings
    from img2spec.cubes import CUBE_SIZE, PIXEL_ARCSEC
    from img2spec.photometry import APERTURE_RADII_PIX
    from img2spec.preprocessing import NORMALISATION_WINDOW
    from img2spec.toolbox.stellar import FitMasks

    classes = _settings_classes()
    assert {cls.__name__ for cls in classes} >= {
        "InferenceSettings",
        "EvaluationSettings",
        "MockSettings",
        "DownloadSettings",
    }
    for cls in classes:
        with_defaults = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        ]
        assert not with_defaults, f"{cls.__name__} declares defaults for {with_defaults}; the schema holds them"
        if cls.SECTION:
            extra = {"resolving_power": 1500.0} if cls is EvaluationSettings else {}
            assert isinstance(cls.defaults(**extra), cls)
    defaults = validate_config({})
    assert tuple(defaults["preprocessing"]["norm_window"]) == NORMALISATION_WINDOW
    assert defaults["mock"]["observation"]["image_size"] == CUBE_SIZE
    assert defaults["mock"]["observation"]["pixel_arcsec"] == PIXEL_ARCSEC
    assert BaselineSettings.defaults().radii_pix == APERTURE_RADII_PIX
    masks = EvaluationSettings.defaults(resolving_power=1500.0).fit_masks
    assert masks.interstellar == FitMasks().interstellar and masks.sky_lines == FitMasks().sky_lines
    with pytest.raises(ValueError, match="inference: unknown keys \\['k_typo'\\]"):
        InferenceSettings.from_config({**defaults["inference"], "k_typo": 1})
    assert load_config(REPO / "config" / "config.yaml")["survey"] == "mock"


# ---------------------------------------------------------------------------------------------
# every script's imports, followed into the img2spec package, are in its rule's conda env

IMPORT_TO_CONDA = {
    "yaml": "pyyaml",
    "astroquery": "astroquery",
    "matplotlib": "matplotlib-base",
    "torch": "pytorch",
    "pytorch_lightning": "pytorch-lightning",
}
STDLIB = set(sys.stdlib_module_names)


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (imports for type hints only)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = path.parent
                for _ in range(node.level - 1):
                    base = base.parent
                module = ".".join(base.relative_to(REPO / "scripts").parts + ((node.module,) if node.module else ()))
                found.add(module)
                found |= {f"{module}.{alias.name}" for alias in node.names}
            else:
                found.add(node.module)
    return found


def _third_party(script: Path) -> set[str]:
    seen, todo, third = set(), [script], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "img2spec":
                candidate = REPO / "scripts" / Path(*name.split("."))
                for target in (candidate.with_suffix(".py"), candidate / "__init__.py"):
                    if target.exists():
                        todo.append(target)
            elif top not in STDLIB and top != "snakemake":
                third.add(top)
    return third


def _rules():
    for name, rule in rules().items():
        if rule.path_of("script"):
            yield name, rule.path_of("conda"), rule.path_of("script")


def test_every_rule_env_covers_its_script_imports():
    rules = list(_rules())
    assert len(rules) >= 4
    for name, env, script in rules:
        assert env is not None, f"rule {name} has no conda env"
        dependencies = yaml.safe_load(env.read_text())["dependencies"]
        pip = [dep for entry in dependencies if isinstance(entry, dict) for dep in entry.get("pip", [])]
        conda = [dep for dep in dependencies if isinstance(dep, str)]
        packages = {re.split(r"[ =<>]", dep.strip())[0] for dep in conda + pip}
        for dep in conda:
            assert "=" in dep, f"{env.name}: {dep} is not pinned"
        for dep in pip:
            assert "==" in dep, f"{env.name}: pip {dep} is not pinned"
        missing = {m for m in _third_party(script) if IMPORT_TO_CONDA.get(m, m) not in packages}
        assert not missing, f"rule {name}: {script.name} imports {missing}, not in {env.name}"


def test_every_config_key_is_documented_in_the_schema():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())

    def leaves(properties, prefix=""):
        for name, sub in properties.items():
            if "properties" in sub:
                yield from leaves(sub["properties"], f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}", sub

    undocumented = [key for key, sub in leaves(schema["properties"]) if not sub.get("description", "").strip()]
    assert not undocumented, f"config keys without a description in the schema: {undocumented}"
    untitled = [name for name, sub in schema["properties"].items() if "properties" in sub and "title" not in sub]
    assert not untitled, f"config sections without a title: {untitled}"


@pytest.mark.workflow
def test_sdss_preset_plans_the_real_data_path_offline(tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    (tmp_path / "resources" / "sdss").mkdir(parents=True)
    (tmp_path / "resources" / "sdss" / "cubes.npz").touch()  # the user's Pasquet cube file
    shutil.copytree(REPO / "resources" / "sql", tmp_path / "resources" / "sql")
    result = run_snakemake(tmp_path, "-n", "--configfile", "config/sdss.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    plan = result.stdout + result.stderr
    for rule, count in (("sdss_query", 1), ("sdss_spectra", 1), ("build_dataset", 1), ("train", 4), ("predict", 1)):
        assert re.search(rf"^{rule}\s+{count}$", plan, re.MULTILINE), rule


@pytest.mark.workflow
def test_sdss_cubes_from_frames_are_planned_when_chosen(tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    shutil.copytree(REPO / "resources" / "sql", tmp_path / "resources" / "sql")
    result = run_snakemake(
        tmp_path, "-n", "--configfile", "config/sdss.yaml", "--config", "sdss={cubes: {source: frames}}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"^sdss_cubes\s+1$", result.stdout + result.stderr, re.MULTILINE)


@pytest.mark.workflow
def test_config_files_with_a_repeated_key_or_bad_yaml_are_refused_by_file_and_line(tmp_path):
    from img2spec.config import read_yaml

    repeated = tmp_path / "repeated.yaml"
    repeated.write_text("mock:\n  n_galaxies: 100\n  seed: 1\n  n_galaxies: 200\n")
    with pytest.raises(ConfigError, match="repeated.yaml, line 4: key 'n_galaxies' given twice \\(first on line 2\\)"):
        read_yaml(repeated)
    broken = tmp_path / "broken.yaml"
    broken.write_text("mock:\n  n_galaxies: [100\nsurvey: mock\n")
    with pytest.raises(ConfigError, match="broken.yaml, line 3, column 7: not valid YAML"):
        read_yaml(broken)
    workdir = make_workdir(tmp_path / "run", {})
    (workdir / "tiny.yaml").write_text("survey: mock\nsurvey: sdss\n")
    result = run_snakemake(workdir, "-n", "--configfile", "tiny.yaml")
    assert result.returncode != 0 and "key 'survey' given twice" in result.stdout + result.stderr
    (workdir / "config" / "config.yaml").write_text("mock:\n  n_galaxies: [100\nsurvey: mock\n")
    result = run_snakemake(workdir, "-n")
    assert result.returncode != 0 and "config.yaml, line 3, column 7: not valid YAML" in result.stdout + result.stderr
