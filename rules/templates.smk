rule mock_templates:
    output:
        miuscat="resources/templates/miuscat.npz",
        m11_miles="resources/templates/m11_miles.npz",
    log:
        "results/logs/mock_templates.log",
    benchmark:
        "results/benchmarks/mock_templates.tsv"
    conda:
        "../envs/mock.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        templates=config["templates"],
    script:
        "../scripts/mock_templates.py"


rule sps_templates:
    output:
        "resources/templates/emiles.npz",
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
