rule ablation_dataset:
    input:
        dataset="results/dataset/dataset.h5",
    output:
        dataset="results/ablation/{variant}/dataset.h5",
    log:
        "results/logs/ablation/{variant}/dataset.log",
    benchmark:
        "results/benchmarks/ablation/{variant}/dataset.tsv"
    wildcard_constraints:
        variant=ABLATION_VARIANT,
    conda:
        "../envs/dataset.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    script:
        "../scripts/ablation_dataset.py"


use rule train as ablation_train with:
    input:
        dataset="results/ablation/{variant}/dataset.h5",
    output:
        last="results/ablation/{variant}/models/{network}/last.ckpt",
        best="results/ablation/{variant}/models/{network}/best.ckpt",
        metrics="results/ablation/{variant}/models/{network}/metrics.csv",
        figure="results/ablation/{variant}/models/{network}/loss.png",
    log:
        "results/logs/ablation/{variant}/train_{network}.log",
    benchmark:
        "results/benchmarks/ablation/{variant}/train_{network}.tsv"
    wildcard_constraints:
        network="|".join(NETWORK_NAMES),
        variant=ABLATION_VARIANT,


use rule predict as ablation_predict with:
    input:
        **{
            network: f"results/ablation/{{variant}}/models/{network}/last.ckpt"
            for network in NETWORK_NAMES
        },
        dataset="results/ablation/{variant}/dataset.h5",
    output:
        predictions="results/ablation/{variant}/predictions/test.h5",
        fits=directory("results/ablation/{variant}/predictions/fits"),
        summary="results/ablation/{variant}/predictions/summary.json",
        figure="results/ablation/{variant}/predictions/examples.png",
    log:
        "results/logs/ablation/{variant}/predict.log",
    benchmark:
        "results/benchmarks/ablation/{variant}/predict.tsv"
    wildcard_constraints:
        variant=ABLATION_VARIANT,
    params:
        inference={**config["inference"], **config["ablation"]["inference"]},


rule ablation_score:
    input:
        predictions="results/ablation/{variant}/predictions/test.h5",
        dataset="results/dataset/dataset.h5",
    output:
        table="results/ablation/{variant}/mse.csv",
    log:
        "results/logs/ablation/{variant}/score.log",
    wildcard_constraints:
        variant=ABLATION_VARIANT,
    conda:
        "../envs/evaluation.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    script:
        "../scripts/ablation_score.py"


rule ablation:
    input:
        expand("results/ablation/{variant}/mse.csv", variant=ABLATION_VARIANTS),
    output:
        summary=report(
            "results/ablation/summary.json",
            caption="../workflow/report/ablation_summary.rst",
            category="6. Ablation",
        ),
        table="results/ablation/table.csv",
        figure=report(
            "results/ablation/ablation.png",
            caption="../workflow/report/ablation_figure.rst",
            category="6. Ablation",
        ),
    log:
        "results/logs/ablation/collect.log",
    conda:
        "../envs/evaluation.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        variants=ABLATION_VARIANTS,
    script:
        "../scripts/ablation_collect.py"
