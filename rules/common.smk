"""Helpers shared by the rules: where each survey's products live, and the default targets."""

from img2spec.config import check_sampling_steps, resolve_networks
from img2spec.dag import LIBRARY_NAMES, SURVEY_FILES, VARIANT, n_chunks, variants
from img2spec.networks import NETWORK_NAMES


def survey_file(product, survey=None):
    """Path of a survey's product (a key of ``SURVEY_FILES``), of the configured survey by default."""
    return f"resources/{survey or config['survey']}/{SURVEY_FILES[product]}"


def spectra_ready():
    """What marks the survey's spectra as complete: the mock's folder, or the SDSS download manifest."""
    if config["survey"] == "sdss":
        return "resources/sdss/spectra_manifest.csv"
    return survey_file("spectra", "mock")


def default_targets():
    targets = [
        "results/dataset/dataset.h5",
        "results/dataset/summary.json",
        "results/dataset/examples.png",
    ]
    targets += expand("results/models/{network}/last.ckpt", network=NETWORK_NAMES)
    targets += [
        "results/predictions/summary.json",
        "results/baselines/summary.json",
        "results/evaluation/quality/summary.json",
    ]
    targets += expand(
        "results/evaluation/{target}/summary.json",
        target=[
            "redshift",
            "ppxf",
            "firefly",
            "indices",
            "comparisons",
            "lines",
            "bpt",
        ],
    )
    targets.append("results/evaluation/summary.md")
    targets += expand("results/predictions/{name}.h5", name=config["predict_images"])
    if config["survey"] == "mock":
        targets.append("results/mock/summary.json")
    return targets


NETWORK_HYPERPARAMETERS = resolve_networks(config["training"])
check_sampling_steps(config, NETWORK_HYPERPARAMETERS)
ABLATION_VARIANTS = variants(
    config["ablation"]["resolutions"], config["ablation"]["band_variants"]
)
ABLATION_VARIANT = VARIANT.pattern.strip("^$")


def training_resources(wildcards):
    """GPU count for the training rules: one per device when training on GPUs."""
    return (
        config["training"]["devices"]
        if config["training"]["accelerator"] == "gpu"
        else 0
    )


def training_threads():
    """CPU threads of a training job: the configured ones, and off GPUs at least one per training process (device)."""
    training = config["training"]
    if training["accelerator"] == "gpu":
        return training["threads"]
    return max(training["threads"], training["devices"])


def trained_models(wildcards):
    """The last checkpoint of each network, by name."""
    return {network: f"results/models/{network}/last.ckpt" for network in NETWORK_NAMES}


def mock_spectra(wildcards):
    """The mock survey's spectra folder (for the noiseless truth baseline), when the input survey is the mock."""
    return (
        {"mock_spectra": survey_file("spectra", "mock")}
        if config["survey"] == "mock"
        else {}
    )


def mock_truth(wildcards):
    """The mock survey's truth table, when the input survey is the mock."""
    return {"truth": survey_file("truth", "mock")} if config["survey"] == "mock" else {}


def kinematics_library(wildcards):
    """The library of the stellar-kinematics fit, when it is not the population fit's."""
    name = config["evaluation"]["kinematics_library"]
    return {"kinematics": f"resources/templates/{name}.npz"} if name else {}


def fit_chunks():
    """The fitting jobs' tables: the test split in chunks of ``evaluation.chunk_size`` galaxies."""
    count = n_chunks(config["dataset"]["n_test"], config["evaluation"]["chunk_size"])
    return expand("results/evaluation/fits/chunk{chunk}.parquet", chunk=range(count))


def fit_chunk_minutes(wildcards):
    """Run-time request of one fitting job: ~0.4 s per pPXF fit and 0.1 s per FIREFLY-method fit."""
    evaluation = config["evaluation"]
    seconds = (
        2
        * evaluation["chunk_size"]
        * (
            0.4 * (1 + evaluation["ppxf"]["bootstrap"])
            + 0.1 * (1 + evaluation["firefly"]["bootstrap"])
        )
    )
    return int(10 + 3 * seconds / 60)
