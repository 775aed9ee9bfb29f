rule baselines:
    input:
        unpack(mock_spectra),
        dataset="results/dataset/dataset.h5",
    output:
        baselines="results/baselines/test.h5",
        summary=report(
            "results/baselines/summary.json",
            caption="../workflow/report/baselines_summary.rst",
            category="4. Inference",
            subcategory="baselines",
        ),
    log:
        "results/logs/baselines.log",
    benchmark:
        "results/benchmarks/baselines.tsv"
    conda:
        "../envs/evaluation.yaml"
    threads: 1
    resources:
        mem_mb=3000,
    params:
        baselines=config["baselines"],
        preprocessing=config["preprocessing"],
    script:
        "../scripts/baselines.py"
