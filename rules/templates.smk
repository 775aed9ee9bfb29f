rule ssp_library:
    output:
        library="resources/templates/{library}.npz",
    log:
        "results/logs/ssp_library/{library}.log",
    benchmark:
        "results/benchmarks/ssp_library/{library}.tsv"
    wildcard_constraints:
        library="|".join(LIBRARY_NAMES),
    conda:
        "../envs/mock.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        templates=config["templates"],
    script:
        "../scripts/ssp_library.py"


rule sps_templates:
    output:
        library="resources/templates/emiles.npz",
    log:
        "results/logs/sps_templates.log",
    conda:
        "../envs/evaluation.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        url=config["evaluation"]["emiles_url"],
    script:
        "../scripts/sps_templates.py"
