rule calibrate_bands:
    input:
        unpack(trained_models),
        dataset="results/dataset/dataset.h5",
    output:
        calibration=report(
            "results/predictions/band_calibration.json",
            caption="../workflow/report/band_calibration.rst",
            category="4. Inference",
        ),
    log:
        "results/logs/calibrate_bands.log",
    benchmark:
        "results/benchmarks/calibrate_bands.tsv"
    conda:
        "../envs/train.yaml"
    threads: config["inference"]["threads"]
    resources:
        mem_mb=8000,
    params:
        inference=config["inference"],
    script:
        "../scripts/calibrate_bands.py"


rule predict:
    input:
        unpack(trained_models),
        dataset="results/dataset/dataset.h5",
        calibration="results/predictions/band_calibration.json",
    output:
        predictions="results/predictions/test.h5",
        fits=directory("results/predictions/fits"),
        summary=report(
            "results/predictions/summary.json",
            caption="../workflow/report/predict_summary.rst",
            category="4. Inference",
        ),
        figure=report(
            "results/predictions/examples.png",
            caption="../workflow/report/predict_examples.rst",
            category="4. Inference",
        ),
    log:
        "results/logs/predict.log",
    benchmark:
        "results/benchmarks/predict.tsv"
    conda:
        "../envs/train.yaml"
    threads: config["inference"]["threads"]
    resources:
        mem_mb=8000,
    params:
        inference=config["inference"],
    script:
        "../scripts/predict.py"


rule predict_images:
    input:
        unpack(trained_models),
        cubes=lambda wildcards: config["predict_images"][wildcards.name],
        dataset="results/dataset/dataset.h5",
        calibration="results/predictions/band_calibration.json",
    output:
        predictions="results/predictions/{name}.h5",
        rejects="results/predictions/{name}_rejects.csv",
    log:
        "results/logs/predict_images_{name}.log",
    benchmark:
        "results/benchmarks/predict_images_{name}.tsv"
    wildcard_constraints:
        name="|".join(config["predict_images"]) or "no-cube-files-configured",
    conda:
        "../envs/train.yaml"
    threads: config["inference"]["threads"]
    resources:
        mem_mb=8000,
    params:
        inference=config["inference"],
    script:
        "../scripts/predict_images.py"
