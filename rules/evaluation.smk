rule evaluation_quality:
    input:
        unpack(mock_truth),
        predictions="results/predictions/test.h5",
        baselines="results/baselines/test.h5",
        dataset="results/dataset/dataset.h5",
        redshifts="results/evaluation/redshift/galaxies.csv",
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
        zoom=report(
            "results/evaluation/quality/line_zoom.png",
            caption="../workflow/report/quality_line_zoom.rst",
            category="5. Evaluation",
            subcategory="quality",
        ),
    log:
        "results/logs/evaluation_quality.log",
    benchmark:
        "results/benchmarks/evaluation_quality.tsv"
    conda:
        "../envs/evaluation.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        preprocessing=config["preprocessing"],
    script:
        "../scripts/evaluate_quality.py"


rule evaluation_redshift:
    input:
        predictions="results/predictions/test.h5",
        baselines="results/baselines/test.h5",
        dataset="results/dataset/dataset.h5",
        library=f"resources/templates/{config['evaluation']['redshift']['library']}.npz",
    output:
        summary=report(
            "results/evaluation/redshift/summary.json",
            caption="../workflow/report/redshift_summary.rst",
            category="5. Evaluation",
            subcategory="redshift",
        ),
        table="results/evaluation/redshift/galaxies.csv",
        figure=report(
            "results/evaluation/redshift/redshift.png",
            caption="../workflow/report/redshift_figure.rst",
            category="5. Evaluation",
            subcategory="redshift",
        ),
    log:
        "results/logs/evaluation_redshift.log",
    benchmark:
        "results/benchmarks/evaluation_redshift.tsv"
    conda:
        "../envs/evaluation.yaml"
    threads: 1
    resources:
        mem_mb=3000,
    params:
        evaluation=config["evaluation"],
        resolving_power=config["preprocessing"]["r_out"],
    script:
        "../scripts/evaluate_redshift.py"


rule fit_chunk:
    input:
        unpack(kinematics_library),
        predictions="results/predictions/test.h5",
        baselines="results/baselines/test.h5",
        dataset="results/dataset/dataset.h5",
        redshifts="results/evaluation/redshift/galaxies.csv",
        library=f"resources/templates/{config['evaluation']['library']}.npz",
    output:
        table="results/evaluation/fits/chunk{chunk}.parquet",
    log:
        "results/logs/fit_chunk/{chunk}.log",
    benchmark:
        "results/benchmarks/fit_chunk/{chunk}.tsv"
    wildcard_constraints:
        chunk=r"\d+",
    conda:
        "../envs/evaluation.yaml"
    threads: 1
    resources:
        mem_mb=2500,
        runtime=fit_chunk_minutes,
    params:
        evaluation=config["evaluation"],
        resolving_power=config["preprocessing"]["r_out"],
    script:
        "../scripts/fit_chunk.py"


rule evaluation_stellar_populations:
    input:
        unpack(mock_truth),
        chunks=fit_chunks(),
    output:
        summary=report(
            "results/evaluation/{code}/summary.json",
            caption="../workflow/report/populations_summary.rst",
            category="5. Evaluation",
            subcategory="{code}",
        ),
        table="results/evaluation/{code}/galaxies.csv",
        failures="results/evaluation/{code}/failures.csv",
        figure=report(
            "results/evaluation/{code}/differences.png",
            caption="../workflow/report/populations_differences.rst",
            category="5. Evaluation",
            subcategory="{code}",
        ),
    log:
        "results/logs/evaluation_{code}.log",
    benchmark:
        "results/benchmarks/evaluation_{code}.tsv"
    wildcard_constraints:
        code="ppxf|firefly",
    conda:
        "../envs/evaluation.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    script:
        "../scripts/evaluate_populations.py"


rule evaluation_indices:
    input:
        chunks=fit_chunks(),
    output:
        summary=report(
            "results/evaluation/indices/summary.json",
            caption="../workflow/report/indices_summary.rst",
            category="5. Evaluation",
            subcategory="indices",
        ),
        table="results/evaluation/indices/galaxies.csv",
        failures="results/evaluation/indices/failures.csv",
        figure=report(
            "results/evaluation/indices/indices.png",
            caption="../workflow/report/indices_figure.rst",
            category="5. Evaluation",
            subcategory="indices",
        ),
    log:
        "results/logs/evaluation_indices.log",
    benchmark:
        "results/benchmarks/evaluation_indices.tsv"
    conda:
        "../envs/evaluation.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    script:
        "../scripts/evaluate_indices.py"


rule evaluation_comparisons:
    input:
        chunks=fit_chunks(),
        dataset="results/dataset/dataset.h5",
    output:
        summary=report(
            "results/evaluation/comparisons/summary.json",
            caption="../workflow/report/comparisons_summary.rst",
            category="5. Evaluation",
            subcategory="comparisons",
        ),
        table="results/evaluation/comparisons/galaxies.csv",
        mass_metallicity=report(
            "results/evaluation/comparisons/mass_metallicity.png",
            caption="../workflow/report/comparisons_figures.rst",
            category="5. Evaluation",
            subcategory="comparisons",
        ),
        degeneracy=report(
            "results/evaluation/comparisons/degeneracy.png",
            caption="../workflow/report/comparisons_figures.rst",
            category="5. Evaluation",
            subcategory="comparisons",
        ),
        bimodality=report(
            "results/evaluation/comparisons/bimodality.png",
            caption="../workflow/report/comparisons_figures.rst",
            category="5. Evaluation",
            subcategory="comparisons",
        ),
    log:
        "results/logs/evaluation_comparisons.log",
    benchmark:
        "results/benchmarks/evaluation_comparisons.tsv"
    conda:
        "../envs/evaluation.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    script:
        "../scripts/evaluate_comparisons.py"


rule evaluation_lines:
    input:
        chunks=fit_chunks(),
    output:
        summary=report(
            "results/evaluation/lines/summary.json",
            caption="../workflow/report/lines_summary.rst",
            category="5. Evaluation",
            subcategory="lines",
        ),
        table="results/evaluation/lines/galaxies.csv",
        failures="results/evaluation/lines/failures.csv",
        figure=report(
            "results/evaluation/lines/lines.png",
            caption="../workflow/report/lines_figure.rst",
            category="5. Evaluation",
            subcategory="lines",
        ),
    log:
        "results/logs/evaluation_lines.log",
    benchmark:
        "results/benchmarks/evaluation_lines.tsv"
    conda:
        "../envs/evaluation.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        evaluation=config["evaluation"],
        resolving_power=config["preprocessing"]["r_out"],
    script:
        "../scripts/evaluate_lines.py"


rule evaluation_bpt:
    input:
        unpack(mock_truth),
        chunks=fit_chunks(),
    output:
        summary=report(
            "results/evaluation/bpt/summary.json",
            caption="../workflow/report/bpt_summary.rst",
            category="5. Evaluation",
            subcategory="bpt",
        ),
        table="results/evaluation/bpt/galaxies.csv",
        confusion=report(
            "results/evaluation/bpt/confusion.csv",
            caption="../workflow/report/bpt_confusion.rst",
            category="5. Evaluation",
            subcategory="bpt",
        ),
        confusion_figure=report(
            "results/evaluation/bpt/confusion.png",
            caption="../workflow/report/bpt_figures.rst",
            category="5. Evaluation",
            subcategory="bpt",
        ),
        diagram=report(
            "results/evaluation/bpt/bpt.png",
            caption="../workflow/report/bpt_figures.rst",
            category="5. Evaluation",
            subcategory="bpt",
        ),
    log:
        "results/logs/evaluation_bpt.log",
    benchmark:
        "results/benchmarks/evaluation_bpt.tsv"
    conda:
        "../envs/evaluation.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        evaluation=config["evaluation"],
        resolving_power=config["preprocessing"]["r_out"],
    script:
        "../scripts/evaluate_bpt.py"


rule evaluation_summary:
    input:
        **{
            target: f"results/evaluation/{target}/summary.json"
            for target in ("quality", "redshift", "ppxf", "indices", "lines", "bpt")
        },
        predictions="results/predictions/summary.json",
    output:
        json="results/evaluation/summary.json",
        markdown=report(
            "results/evaluation/summary.md",
            caption="../workflow/report/evaluation_summary.rst",
            category="5. Evaluation",
            subcategory="summary",
        ),
    log:
        "results/logs/evaluation_summary.log",
    conda:
        "../envs/evaluation.yaml"
    threads: 1
    resources:
        mem_mb=500,
    params:
        survey=config["survey"],
        preset=config["training"]["preset"],
    script:
        "../scripts/evaluate_summary.py"
