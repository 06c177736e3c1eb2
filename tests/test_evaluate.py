"""Real lm-eval runs (no mocks) on a tiny random Llama with a locally trained BPE tokenizer."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from slm.evaluate import evaluate_model, headline_metric

SENTENCES = [
    "The sum of two and three is five.",
    "Seven minus four equals three.",
    "A cat sat on the warm mat near the door.",
    "Paris is the capital of France.",
    "Water boils at one hundred degrees.",
    "Six times seven is forty two.",
    "The quick brown fox jumps over the lazy dog.",
]

CONTEXT = 512  # the tiny model's max_position_embeddings

MC_DOCS = [
    {"question": "2 + 3 =", "choices": ["5", "6", "7"], "label": 0},
    {"question": "7 - 4 =", "choices": ["1", "3", "9"], "label": 1},
    {"question": "6 * 7 =", "choices": ["13", "36", "42"], "label": 2},
    {"question": "9 / 3 =", "choices": ["3", "27", "6"], "label": 0},
    {"question": "1 + 1 =", "choices": ["11", "2", "0"], "label": 1},
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from slm.model import init_model

    out = tmp_path_factory.mktemp("tiny_llama")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(SENTENCES * 4, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tok.save_pretrained(out / "tokenizer")
    init_model(
        out / "tokenizer",
        out / "model",
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        intermediate_size=64,
        max_position_embeddings=512,
        seed=0,
        tie_word_embeddings=False,
    )
    return out / "model"


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lm_eval_tasks")
    mc = root / "mc.jsonl"
    mc.write_text("".join(json.dumps(d) + "\n" for d in MC_DOCS))
    ppl = root / "ppl.jsonl"
    ppl.write_text("".join(json.dumps({"text": s}) + "\n" for s in SENTENCES[:5]))
    (root / "tiny_mc.yaml").write_text(
        f"""task: tiny_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {mc}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""
    )
    (root / "tiny_ppl.yaml").write_text(
        f"""task: tiny_ppl
dataset_path: json
dataset_kwargs:
  data_files:
    test: {ppl}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
metadata:
  version: 1.0
"""
    )
    # Loglikelihood of the right answer: its perplexity moves with any change of the prompt, so it
    # shows how many shots were prepended. The same task with its shots set in the YAML instead,
    # and with a YAML num_fewshot of 0 (which lm-eval never overrides).
    for name, shots in (("tiny_qa", None), ("tiny_qa_2shot", 2), ("tiny_qa_0shot", 0)):
        (root / f"{name}.yaml").write_text(
            f"""task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    train: {mc}
    test: {mc}
test_split: test
fewshot_split: train
output_type: loglikelihood
doc_to_text: "{{{{question}}}}"
doc_to_target: " {{{{choices[label]}}}}"
metric_list:
  - metric: perplexity
    aggregation: perplexity
    higher_is_better: false
metadata:
  version: 1.0
"""
            + (f"num_fewshot: {shots}\n" if shots is not None else "")
        )
    (root / "tiny_gen.yaml").write_text(
        f"""task: tiny_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {mc}
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{choices[label]}}}}"
generation_kwargs:
  until: ["\\n"]
  do_sample: false
  max_gen_toks: 16
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""
    )
    # Stop strings a random model writes often, so that sequences of one batch stop at different steps.
    (root / "tiny_stop.yaml").write_text(
        (root / "tiny_gen.yaml")
        .read_text()
        .replace("task: tiny_gen", "task: tiny_stop")
        .replace('until: ["\\n"]', 'until: ["e", "o", "t"]')
    )
    return root


@pytest.fixture(scope="module")
def first_run(tiny_model, task_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "tiny.json"
    result = evaluate_model(
        str(tiny_model),
        ["tiny_mc", "tiny_ppl"],
        out,
        include_path=task_dir,
        batch_size=4,
        limit=4,
        seed=7,
        context_length=CONTEXT,
    )
    return out, result


def test_real_run_writes_compact_json(first_run, tiny_model):
    out, result = first_run
    on_disk = json.loads(out.read_text())
    assert on_disk == result
    assert on_disk["model"] == str(tiny_model)
    assert on_disk["seed"] == 7 and on_disk["limit"] == 4
    assert on_disk["lm_eval_version"] == "0.4.13"
    assert set(on_disk["tasks"]) == {"tiny_mc", "tiny_ppl"}
    assert on_disk["n_samples"] == {"tiny_mc": 4, "tiny_ppl": 4}
    assert not list(out.parent.glob(".*tmp*")), "temporary files left behind"

    mc = on_disk["tasks"]["tiny_mc"]
    for key in ("acc,none", "acc_norm,none"):
        assert 0.0 <= mc[key] <= 1.0
        # accuracy over 4 docs is a multiple of 1/4
        assert math.isclose(mc[key] * 4, round(mc[key] * 4), abs_tol=1e-9)
    assert mc["acc_stderr,none"] is not None and mc["acc_stderr,none"] >= 0

    ppl = on_disk["tasks"]["tiny_ppl"]
    for key in ("word_perplexity,none", "byte_perplexity,none", "bits_per_byte,none"):
        assert math.isfinite(ppl[key]) and ppl[key] > 0
    # random model over a ~300-token vocabulary: byte perplexity well above 1
    assert ppl["byte_perplexity,none"] > 1.0
    assert math.isclose(ppl["bits_per_byte,none"], math.log2(ppl["byte_perplexity,none"]), rel_tol=1e-6)
    assert on_disk["higher_is_better"]["tiny_ppl"]["bits_per_byte"] is False
    assert on_disk["higher_is_better"]["tiny_mc"]["acc"] is True


def test_same_seed_same_numbers(first_run, tiny_model, task_dir, tmp_path):
    _, first = first_run
    second = evaluate_model(
        tiny_model,
        ["tiny_mc", "tiny_ppl"],
        tmp_path / "again.json",
        include_path=task_dir,
        batch_size=4,
        limit=4,
        seed=7,
        context_length=CONTEXT,
    )
    assert second["tasks"] == first["tasks"]
    assert second["n_samples"] == first["n_samples"]


def test_missing_model_dir_fails_fast(tmp_path, task_dir):
    missing = tmp_path / "no_such_model"
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        evaluate_model(str(missing), ["tiny_mc"], tmp_path / "x.json", include_path=task_dir, context_length=CONTEXT)
    empty = tmp_path / "empty_model"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        evaluate_model(str(empty), ["tiny_mc"], tmp_path / "x.json", include_path=task_dir, context_length=CONTEXT)
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        evaluate_model("./no_such_model", ["tiny_mc"], tmp_path / "x.json", context_length=CONTEXT)
    assert not (tmp_path / "x.json").exists()


def test_local_tasks_alone_skip_indexing_the_built_in_ones(task_dir):
    from slm.evaluate import make_task_manager

    local = make_task_manager(task_dir, ["tiny_mc", "tiny_gen"])
    assert {"tiny_mc", "tiny_gen", "tiny_ppl"} <= set(local.all_tasks) and "hellaswag" not in local.all_tasks
    # a built-in task among them: every built-in task is indexed, the local ones too
    mixed = make_task_manager(task_dir, ["tiny_mc", "hellaswag"])
    assert {"tiny_mc", "hellaswag"} <= set(mixed.all_tasks)


def test_unknown_task_fails_before_model_load(tmp_path, task_dir, monkeypatch):
    import lm_eval

    def boom(*args, **kwargs):  # the model must never be loaded
        raise AssertionError("evaluate called despite an unknown task")

    monkeypatch.setattr(lm_eval.evaluator, "evaluate", boom)
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="tiny_nope") as err:
        evaluate_model(
            str(model_dir), ["tiny_mc", "tiny_nope"], tmp_path / "x.json", include_path=task_dir, context_length=CONTEXT
        )
    # the message lists the tasks that do exist under include_path
    assert "tiny_mc" in str(err.value) and "tiny_ppl" in str(err.value)
    with pytest.raises(FileNotFoundError, match="no_tasks_here"):
        evaluate_model(
            str(model_dir),
            ["tiny_mc"],
            tmp_path / "x.json",
            include_path=tmp_path / "no_tasks_here",
            context_length=CONTEXT,
        )
    assert not (tmp_path / "x.json").exists()


OPTIONS = {"tiny_qa": {"num_fewshot": 2}, "tiny_gen": {"max_gen_toks": 3}}


@pytest.fixture(scope="module")
def grouped_run(tiny_model, task_dir, tmp_path_factory):
    """Three option groups in one evaluate_model call, every lm-eval evaluate call recorded."""
    import lm_eval.evaluator

    calls = []
    real = lm_eval.evaluator.evaluate

    def spy(**kwargs):
        raw = real(**kwargs)
        calls.append((kwargs, raw))
        return raw

    out = tmp_path_factory.mktemp("grouped") / "tiny.json"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lm_eval.evaluator, "evaluate", spy)
        result = evaluate_model(
            str(tiny_model),
            ["tiny_mc", "tiny_qa", "tiny_ppl", "tiny_gen"],
            out,
            include_path=task_dir,
            batch_size=4,
            limit=4,
            seed=7,
            context_length=CONTEXT,
            task_options=OPTIONS,
        )
    return out, result, calls


def test_task_options_run_one_call_per_group_and_merge(grouped_run, first_run):
    from lm_eval.models.huggingface import HFLM

    out, result, calls = grouped_run
    tasks = [kwargs["task_dict"]["tasks"] for kwargs, _ in calls]
    assert [list(t) for t in tasks] == [["tiny_mc", "tiny_ppl"], ["tiny_qa"], ["tiny_gen"]]
    assert [[task.get_config("num_fewshot") for task in t.values()] for t in tasks] == [[0, 0], [2], [0]]
    models = {id(kwargs["lm"]) for kwargs, _ in calls}
    assert len(models) == 1 and isinstance(calls[0][0]["lm"], HFLM), "the model is loaded once"
    # max_gen_toks is merged into the task's YAML generation_kwargs, keeping its other keys
    gen = calls[2][1]["configs"]["tiny_gen"]["generation_kwargs"]
    assert gen["max_gen_toks"] == 3 and gen["until"] == ["\n"]

    assert json.loads(out.read_text()) == result
    assert set(result["tasks"]) == {"tiny_mc", "tiny_qa", "tiny_ppl", "tiny_gen"}
    assert result["n_samples"] == {"tiny_mc": 4, "tiny_qa": 4, "tiny_ppl": 4, "tiny_gen": 4}
    assert result["n_shot"] == {"tiny_mc": 0, "tiny_qa": 2, "tiny_ppl": 0, "tiny_gen": 0}
    assert result["task_options"] == OPTIONS
    assert set(result["higher_is_better"]) == set(result["tasks"])
    # tasks without options run exactly as without task_options
    _, plain = first_run
    for task in ("tiny_mc", "tiny_ppl"):
        assert result["tasks"][task] == plain["tasks"][task]
    assert plain["n_shot"] == {"tiny_mc": 0, "tiny_ppl": 0} and plain["task_options"] == {}


def test_num_fewshot_option_prepends_that_many_shots(grouped_run, tiny_model, task_dir, tmp_path, caplog):
    _, asked, _ = grouped_run
    with caplog.at_level("WARNING", logger="slm.evaluate"):
        reference = evaluate_model(
            tiny_model,
            ["tiny_qa", "tiny_qa_2shot", "tiny_qa_0shot"],
            tmp_path / "ref.json",
            include_path=task_dir,
            batch_size=4,
            limit=4,
            seed=7,
            context_length=CONTEXT,
            task_options={"tiny_qa_0shot": {"num_fewshot": 2}},
        )

    def ppl(result, task):
        return result["tasks"][task]["perplexity,none"]

    # 2 shots asked for == 2 shots set in the task YAML; != 0 shots
    assert math.isclose(ppl(asked, "tiny_qa"), ppl(reference, "tiny_qa_2shot"), rel_tol=1e-5)
    assert not math.isclose(ppl(asked, "tiny_qa"), ppl(reference, "tiny_qa"), rel_tol=1e-3)
    # a YAML num_fewshot: 0 wins over the option (lm-eval's rule), and we say so
    assert reference["n_shot"] == {"tiny_qa": 0, "tiny_qa_2shot": 2, "tiny_qa_0shot": 0}
    assert math.isclose(ppl(reference, "tiny_qa_0shot"), ppl(reference, "tiny_qa"), rel_tol=1e-5)
    assert "tiny_qa_0shot ran 0-shot, not the 2 asked for" in caplog.text


def test_bad_task_options_fail_before_model_load(tmp_path, task_dir, monkeypatch):
    import lm_eval

    def boom(*args, **kwargs):
        raise AssertionError("evaluate called despite bad task_options")

    monkeypatch.setattr(lm_eval.evaluator, "evaluate", boom)
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="tiny_ppl"):
        evaluate_model(
            str(model_dir),
            ["tiny_mc"],
            tmp_path / "x.json",
            include_path=task_dir,
            context_length=CONTEXT,
            task_options={"tiny_ppl": {"num_fewshot": 1}},
        )
    with pytest.raises(ValueError, match=r"task_options\.tiny_mc: unknown option\(s\) \['shots'\]"):
        evaluate_model(
            str(model_dir),
            ["tiny_mc"],
            tmp_path / "x.json",
            include_path=task_dir,
            context_length=CONTEXT,
            task_options={"tiny_mc": {"shots": 1}},
        )
    assert not (tmp_path / "x.json").exists()


def test_config_check_task_options(tmp_path):
    from snakemake.utils import validate

    from slm.config import ConfigError, check_config

    root = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((root / "config" / "paper" / "ratio-ablation.yaml").read_text())
    validate(config, str(root / "workflow" / "schemas" / "config.schema.yaml"))
    check_config(config, base_dir=tmp_path)  # the paper's protocol passes
    config["evaluation"]["task_options"]["gsm8k"] = {"num_fewshot": 8}
    with pytest.raises(ConfigError, match=r"evaluation\.task_options\.gsm8k'.*not in evaluation\.tasks"):
        check_config(config, base_dir=tmp_path)


def test_headline_metric():
    res = {
        "exact_match,strict-match": 0.25,
        "exact_match_stderr,strict-match": 0.1,
        "exact_match,flexible-extract": 0.5,
        "acc,none": 0.75,
        "acc_stderr,none": 0.05,
    }
    assert headline_metric(res, ["exact_match,flexible-extract"]) == ("exact_match,flexible-extract", 0.5)
    assert headline_metric(res, ["acc_norm", "acc"]) == ("acc,none", 0.75)
    assert headline_metric(res, "acc,none") == ("acc,none", 0.75)
    with pytest.raises(ValueError, match="ambiguous"):
        headline_metric(res, ["exact_match"])
    with pytest.raises(KeyError, match="bits_per_byte"):
        headline_metric(res, ["bits_per_byte"])


def test_samples_hold_each_documents_value_in_document_order(tiny_model, task_dir, tmp_path):
    from slm.evaluate import aggregate_samples

    metrics = {"tiny_mc": "acc,none", "tiny_ppl": "bits_per_byte,none", "tiny_gen": "exact_match,none"}
    result = evaluate_model(
        tiny_model,
        list(metrics),
        tmp_path / "eval.json",
        include_path=task_dir,
        batch_size=4,
        seed=7,
        context_length=CONTEXT,
        metrics=metrics,
    )
    assert json.loads((tmp_path / "eval.json").read_text())["samples"] == result["samples"]
    assert result["sample_aggregation"] == {"tiny_mc": "mean", "tiny_ppl": "bits_per_byte", "tiny_gen": "mean"}
    for task, key in metrics.items():
        values = result["samples"][task]
        assert len(values) == result["n_samples"][task]
        # the aggregate of the per-document values is lm-eval's own number
        aggregated = aggregate_samples(result["sample_aggregation"][task], values)
        assert math.isclose(aggregated, result["tasks"][task][key], rel_tol=1e-12)
    assert set(result["samples"]["tiny_mc"]) <= {0.0, 1.0}
    # bits per byte: [log-likelihood, bytes] per document, in the order of the task's file
    pairs = result["samples"]["tiny_ppl"]
    assert [n for _, n in pairs] == [len(s.encode()) for s in SENTENCES[:5]]
    assert all(ll < 0 for ll, _ in pairs)
    total = -sum(ll for ll, _ in pairs) / sum(n for _, n in pairs) / math.log(2)
    assert math.isclose(total, result["tasks"]["tiny_ppl"]["bits_per_byte,none"], rel_tol=1e-12)
    # a bootstrap resample aggregates like any other list of documents
    assert math.isclose(aggregate_samples("bits_per_byte", [pairs[0]] * 3), -pairs[0][0] / pairs[0][1] / math.log(2))


def _tokens(model_dir, text):
    from transformers import AutoTokenizer

    return len(AutoTokenizer.from_pretrained(model_dir)(text).input_ids)


def test_a_generation_past_the_trained_length_is_refused_before_any_request(
    tiny_model, task_dir, tmp_path, monkeypatch
):
    import lm_eval

    from slm.evaluate import ContextLengthError

    monkeypatch.setattr(lm_eval.evaluator, "evaluate", lambda **kwargs: pytest.fail("evaluated despite the check"))
    prompts = [_tokens(tiny_model, d["question"]) for d in MC_DOCS]
    longest_prompt, budget = max(prompts), 6
    fits = longest_prompt + budget + 1  # lm-eval reads context_length - 1 positions
    over = sum(n + budget > fits - 2 for n in prompts)
    with pytest.raises(ContextLengthError) as err:
        evaluate_model(
            tiny_model,
            ["tiny_mc", "tiny_gen"],
            tmp_path / "x.json",
            include_path=task_dir,
            context_length=fits - 1,
            task_options={"tiny_gen": {"max_gen_toks": budget}},
        )
    message = str(err.value)
    assert f"tiny_gen: {over} of 5 requests need more than {fits - 2} tokens" in message and "tiny_mc" not in message
    assert f"longest prompt + max_gen_toks {budget} = {longest_prompt + budget} tokens" in message
    assert f"max_gen_toks up to {budget - 1} would fit" in message
    assert f"past the {fits - 1} tokens the model was trained on" in message
    assert not (tmp_path / "x.json").exists()


def test_a_scored_sequence_past_the_trained_length_is_refused(tiny_model, task_dir, tmp_path):
    from slm.evaluate import ContextLengthError

    longest = max(_tokens(tiny_model, d["question"] + " " + d["choices"][d["label"]]) for d in MC_DOCS)
    with pytest.raises(ContextLengthError, match=r"tiny_qa: \d+ of 5 requests need more than"):
        evaluate_model(tiny_model, ["tiny_qa"], tmp_path / "x.json", include_path=task_dir, context_length=longest - 1)


def test_what_fits_runs_and_rolling_windows_always_fit(tiny_model, task_dir, tmp_path):
    import lm_eval

    from slm.evaluate import check_context, configured_tasks, make_task_manager
    from slm.hflm import RowStopHFLM

    longest_prompt = max(_tokens(tiny_model, d["question"]) for d in MC_DOCS)
    context = longest_prompt + 6 + 1
    manager = make_task_manager(task_dir)
    lm = RowStopHFLM(pretrained=str(tiny_model), device="cpu", batch_size=4, max_length=context - 1)
    tasks = configured_tasks(manager, ["tiny_gen", "tiny_ppl"], num_fewshot=None, max_gen_toks=6, seed=7)["tasks"]
    assert check_context(lm, tasks, context) == {"tiny_gen": longest_prompt + 6, "tiny_ppl": 0}
    # the checked requests are the ones lm-eval runs: same prompts, same generation budget
    raw = lm_eval.simple_evaluate(
        model=lm, tasks=["tiny_gen"], gen_kwargs="max_gen_toks=6", task_manager=manager, log_samples=True
    )
    run = [s["arguments"][0] for s in raw["samples"]["tiny_gen"]]
    assert run == [tuple(i.args) for i in tasks["tiny_gen"].instances]
    # documents far longer than the context are scored in windows that fit
    result = evaluate_model(tiny_model, ["tiny_ppl"], tmp_path / "ppl.json", include_path=task_dir, context_length=8)
    assert result["context_length"] == 8 and math.isfinite(result["tasks"]["tiny_ppl"]["bits_per_byte,none"])


def test_each_sequence_stops_at_its_own_stop_string_with_lm_evals_text(tiny_model, task_dir):
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    from slm.evaluate import make_task_manager
    from slm.hflm import RowStopHFLM

    manager = make_task_manager(task_dir)

    def generate(cls, until):
        lm = cls(pretrained=str(tiny_model), device="cpu", batch_size=5)
        steps = []
        original = lm.model.generate

        def counting(*args, **kwargs):
            out = original(*args, **kwargs)
            steps.append(out.shape[1] - kwargs["input_ids"].shape[1])
            return out

        lm.model.generate = counting
        raw = lm_eval.simple_evaluate(
            model=lm,
            tasks=["tiny_gen"],
            gen_kwargs={"until": until},
            task_manager=manager,
            log_samples=True,
            bootstrap_iters=0,
        )
        return [s["resps"][0][0] for s in raw["samples"]["tiny_gen"]], steps

    # Stop strings this random model writes early in some of its continuations (one character
    # from the first half of each), so that the sequences of one batch stop at different steps.
    free, _ = generate(HFLM, ["\n"])
    until = sorted(
        {
            next(c for c in t[: len(t) // 2 + 1] if c.isascii() and c.isalnum())
            for t in free
            if any(c.isascii() and c.isalnum() for c in t[: len(t) // 2 + 1])
        }
    )
    assert len(until) >= 2, free
    plain, plain_steps = generate(HFLM, until)
    row_stop, row_steps = generate(RowStopHFLM, until)
    assert row_stop == plain  # the same text for every document
    assert any(plain) and plain != free
    assert sum(row_steps) < sum(plain_steps), (row_steps, plain_steps)
