rule train:
    input:
        dataset="results/dataset/dataset.h5",
    output:
        last="results/models/{network}/last.ckpt",
        best="results/models/{network}/best.ckpt",
        metrics="results/models/{network}/metrics.csv",
        figure=report(
            "results/models/{network}/loss.png",
            caption="../workflow/report/training_loss.rst",
            category="3. Training",
            subcategory="{network}",
        ),
    log:
        "results/logs/train_{network}.log",
    benchmark:
        "results/benchmarks/train_{network}.tsv"
    wildcard_constraints:
        network="|".join(NETWORK_NAMES),
    conda:
        "../envs/train.yaml"
    threads: training_threads()
    resources:
        mem_mb=8000,
        gpu=training_resources,
    params:
        hp=lambda wildcards: NETWORK_HYPERPARAMETERS[wildcards.network],
        run=config["training"],
    script:
        "../scripts/train.py"
