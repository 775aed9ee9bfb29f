rule sdss_spectra:
    input:
        catalog=survey_file("catalog", "sdss"),
    output:
        manifest="resources/sdss/spectra_manifest.csv",
        failures=report(
            "resources/sdss/spectra_failures.csv",
            caption="../workflow/report/sdss_failures.rst",
            category="0. SDSS download",
        ),
    log:
        "results/logs/sdss_spectra.log",
    benchmark:
        "results/benchmarks/sdss_spectra.tsv"
    conda:
        "../envs/sdss.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        download=config["sdss"]["download"],
        spectra_root=lambda wildcards, input: str(
            Path(input.catalog).with_name(SURVEY_FILES["spectra"])
        ),
    script:
        "../scripts/sdss_spectra.py"


rule sdss_query:
    input:
        sql="resources/sql/sample.sql",
    output:
        catalog=survey_file("catalog", "sdss"),
    log:
        "results/logs/sdss_query.log",
    benchmark:
        "results/benchmarks/sdss_query.tsv"
    conda:
        "../envs/sdss.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        query=config["sdss"]["query"],
        cache=lambda wildcards, output: str(
            Path(output.catalog).with_name("query_cache")
        ),
    script:
        "../scripts/sdss_query.py"


if config["sdss"]["cubes"]["source"] == "frames":

    rule sdss_cubes:
        input:
            catalog=survey_file("catalog", "sdss"),
        output:
            cubes=survey_file("cubes", "sdss"),
            rejects=report(
                "resources/sdss/cube_rejects.csv",
                caption="../workflow/report/sdss_cube_rejects.rst",
                category="0. SDSS download",
            ),
        log:
            "results/logs/sdss_cubes.log",
        benchmark:
            "results/benchmarks/sdss_cubes.tsv"
        conda:
            "../envs/sdss.yaml"
        threads: 1
        resources:
            mem_mb=4000,
        params:
            download=config["sdss"]["download"],
            frames_base_url=config["sdss"]["cubes"]["frames_base_url"],
            frames_root=lambda wildcards, output: str(
                Path(output.cubes).with_name("frames")
            ),
        script:
            "../scripts/sdss_cubes.py"
