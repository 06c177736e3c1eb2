# Model cards with evaluation results: results/release/<path under results/models>/ holds the model's
# files (hard links) and its card completed with the results (slm.model_card). Target: model_cards.


rule release_model:
    input:
        model="results/models/{path}",
        evaluation=lambda w: PLAN.released[w.path],
    output:
        directory("results/release/{path}"),
    log:
        "logs/release/{path}.log",
    wildcard_constraints:
        path=one_of(PLAN.released),
    conda:
        "../../envs/slm.yaml"
    shell:
        "python -m slm release --model {input.model} --evaluation {input.evaluation} --out {output} > {log} 2>&1"


rule model_cards:
    input:
        expand("results/release/{path}", path=PLAN.released),
