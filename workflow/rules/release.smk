# Model cards with evaluation results: results/release/<path under results/models>/ holds the model's
# files (hard links) and its card completed with the results (slm.model_card). Target: model_cards.


def released_models():
    """Every model made here that is evaluated, by its path under results/models: its evaluation JSON."""
    models = {}
    for stem in BASE_STEMS:
        if "path" not in base_spec(stem):
            models[base_model(stem.removeprefix("base-") if stem != "base" else None)] = eval_json(stem)
    if not REFERENCE_GIVEN:
        models[reference_model()] = eval_json("reference")
    for run in RUNS:
        models[model_dir(run, "final")] = eval_json(run)
    for run in TIR_RUNS:
        models[f"results/models/tir/{run}/final"] = f"results/eval/tir/{run}.json"
    return {path.removeprefix("results/models/"): evaluation for path, evaluation in models.items()}


RELEASED = released_models()


rule release_model:
    input:
        model="results/models/{path}",
        evaluation=lambda w: RELEASED[w.path],
    output:
        directory("results/release/{path}"),
    log:
        "logs/release/{path}.log",
    wildcard_constraints:
        path=one_of(RELEASED),
    conda:
        "../../envs/slm.yaml"
    shell:
        "python -m slm release --model {input.model} --evaluation {input.evaluation} --out {output} > {log} 2>&1"


rule model_cards:
    input:
        expand("results/release/{path}", path=RELEASED),
