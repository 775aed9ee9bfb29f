rule evaluation_quality:
    input:
        unpack(mock_truth),
        predictions="results/predictions/test.h5",
        dataset="results/dataset/dataset.h5",
    output:
        summary=report(
            "results/evaluation/quality/summary.json",
            caption="../workflow/report/quality_summary.rst",
            category="5. Evaluation",
            subcategory="quality",
        ),
        table="results/evaluation/quality/galaxies.csv",
        figure=report(
            "results/evaluation/quality/histograms.png",
            caption="../workflow/report/quality_histograms.rst",
            category="5. Evaluation",
            subcategory="quality",
        ),
    log:
        "results/logs/evaluation_quality.log",
    benchmark:
        "results/benchmarks/evaluation_quality.tsv"
    conda:
        "../envs/dataset.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    script:
        "../scripts/evaluate_quality.py"
