rule preprocess_spectra:
    input:
        catalog=survey_file("catalog"),
        spectra_ready=spectra_ready(),
    output:
        spectra="results/dataset/spectra.h5",
        rejects="results/dataset/spectra_rejects.csv",
    log:
        "results/logs/preprocess_spectra.log",
    benchmark:
        "results/benchmarks/preprocess_spectra.tsv"
    conda:
        "../envs/dataset.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        preprocessing=config["preprocessing"],
        spectra_root=lambda wildcards, input: str(
            Path(input.catalog).with_name(SURVEY_FILES["spectra"])
        ),
    script:
        "../scripts/preprocess_spectra.py"


rule build_dataset:
    input:
        catalog=survey_file("catalog"),
        cubes=survey_file("cubes"),
        spectra="results/dataset/spectra.h5",
        spectra_rejects="results/dataset/spectra_rejects.csv",
    output:
        dataset="results/dataset/dataset.h5",
        rejects=report(
            "results/dataset/rejects.csv",
            caption="../workflow/report/dataset_rejects.rst",
            category="2. Dataset",
        ),
        summary=report(
            "results/dataset/summary.json",
            caption="../workflow/report/dataset_summary.rst",
            category="2. Dataset",
        ),
        figure=report(
            "results/dataset/examples.png",
            caption="../workflow/report/dataset_examples.rst",
            category="2. Dataset",
        ),
    log:
        "results/logs/build_dataset.log",
    benchmark:
        "results/benchmarks/build_dataset.tsv"
    conda:
        "../envs/dataset.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        dataset=config["dataset"],
    script:
        "../scripts/build_dataset.py"
