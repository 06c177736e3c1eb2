# Selective Language Modeling (Rho-1): reference model -> token scoring -> SLM / CLM continual
# pretraining -> lm-eval -> results tables. See README.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/dynamics.smk"


rule all:
    default_target: True
    input:
        rules.tables.output,
        expand("results/dynamics/{run}", run=DYNAMICS_RUNS),
