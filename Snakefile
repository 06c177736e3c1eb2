# Selective Language Modeling (Rho-1): reference model -> token scoring -> SLM / CLM continual
# pretraining -> lm-eval -> results tables. See README.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/dynamics.smk"
include: "workflow/rules/tir.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/release.smk"
include: "workflow/rules/benchmarks.smk"


# A finished run ends with its results table on the console: each value with its intervals.
onsuccess:
    if Path(rules.tables.output.results_md).is_file():
        logger.info(f"\n{rules.tables.output.results_md}:\n\n{Path(rules.tables.output.results_md).read_text()}")


rule all:
    default_target: True
    input:
        rules.paper_miniature.input,
