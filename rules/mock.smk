rule mock_survey:
    input:
        templates="resources/templates/miuscat.npz",
    output:
        catalog=survey_file("catalog", "mock"),
        spectra=directory(survey_file("spectra", "mock")),
        cubes=survey_file("cubes", "mock"),
        truth=survey_file("truth", "mock"),
        summary="results/mock/summary.json",
        examples=report(
            "results/mock/examples.png",
            caption="../workflow/report/mock_examples.rst",
            category="1. Mock survey",
        ),
        colour_mass=report(
            "results/mock/colour_mass.png",
            caption="../workflow/report/mock_colour_mass.rst",
            category="1. Mock survey",
        ),
        bpt=report(
            "results/mock/bpt_truth.png",
            caption="../workflow/report/mock_bpt.rst",
            category="1. Mock survey",
        ),
        classes=report(
            "results/mock/emission_classes.png",
            caption="../workflow/report/mock_emission_classes.rst",
            category="1. Mock survey",
        ),
    log:
        "results/logs/mock_survey.log",
    benchmark:
        "results/benchmarks/mock_survey.tsv"
    conda:
        "../envs/mock.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        mock=config["mock"],
    script:
        "../scripts/mock_survey.py"
