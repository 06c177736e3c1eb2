import json

import numpy as np
import pytest

from conftest import SEQ_LEN
from slm.data.generate import TOOL_SOLUTION_KINDS, Problem, tool_solution_spans
from slm.data.packed import KIND_NAMES, PackedCorpus, PackedShard, labelled_documents, pack_documents
from slm.data.sources import iter_files


def test_packed_tokens_are_the_documents_joined_by_eos(shard, corpus_files, tokenizer):
    docs = [json.loads(line)["text"] for line in corpus_files[0].read_text().splitlines()]
    expected = []
    for doc in docs:
        expected += tokenizer(doc, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    n = shard.index["n_tokens"]
    assert n % SEQ_LEN == 0 and n == shard.n_sequences * SEQ_LEN
    assert shard.index["dropped_tail_tokens"] == len(expected) - n < SEQ_LEN
    assert shard.tokens.dtype == np.uint16
    assert shard.tokens.tolist() == expected[:n]
    starts = np.load(shard.path / "doc_starts.npy")
    assert starts[0] == 0 and all(shard.tokens[s - 1] == tokenizer.eos_token_id for s in starts[1:])


def test_token_kinds_follow_the_character_spans(shard, tokenizer):
    tokens, kinds = np.asarray(shard.tokens), np.asarray(shard.kinds)
    for kind in ("math", "noise", "boilerplate"):
        kind_id = KIND_NAMES.index(kind)
        text = tokenizer.decode(tokens[kinds == kind_id].tolist())
        if kind == "boilerplate":
            assert text.count("Home | About | Contact") >= shard.index["n_documents"] - 1
        if kind == "noise":
            assert text.startswith("id ") and "Question" not in text and "Home" not in text
        if kind == "math":
            assert "The answer is" in text and "id " not in text.replace("Question: what is", "")
    assert set(np.unique(kinds[tokens == tokenizer.eos_token_id])) == {0}


def test_corpus_gathers_rows_across_shards(shards):
    corpus = PackedCorpus(shards)
    first = PackedShard.open(shards[0])
    second = PackedShard.open(shards[1])
    assert len(corpus) == first.n_sequences + second.n_sequences
    (rows,) = corpus.gather([0, first.n_sequences], [[first.tokens, second.tokens]])
    assert rows[0].tolist() == first.tokens[:SEQ_LEN].tolist()
    assert rows[1].tolist() == second.tokens[:SEQ_LEN].tolist()


def test_empty_corpus_is_refused_and_nothing_written(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="empty corpus"):
        pack_documents(iter([("tiny", None)]), tokenizer, tmp_path / "out", seq_len=SEQ_LEN)
    assert not (tmp_path / "out").exists()


def test_non_utf8_text_names_the_file(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: text is not valid UTF-8"):
        list(iter_files([bad]))


def test_missing_file_and_missing_field_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        list(iter_files([tmp_path / "nope.jsonl"]))
    path = tmp_path / "f.jsonl"
    path.write_text('{"body": "x"}\n')
    with pytest.raises(ValueError, match="text_field"):
        list(iter_files([path]))


def test_failed_repack_keeps_the_previous_shard(tmp_path, tokenizer, corpus_files):
    out = tmp_path / "packed"
    index = pack_documents(iter_files([corpus_files[0]]), tokenizer, out, seq_len=SEQ_LEN)

    def broken():
        yield "Question: 1 + 1", None
        raise RuntimeError("source died")

    with pytest.raises(RuntimeError):
        pack_documents(broken(), tokenizer, out, seq_len=SEQ_LEN)
    assert PackedShard.open(out).index == index
    assert [p.name for p in tmp_path.iterdir()] == ["packed"]


def test_tool_solution_spans_are_who_writes_each_part_at_evaluation():
    problem = Problem(question="Ann has 3 pens and buys 4. How many?", steps=((3, "+", 4, 7),), answer=7)
    text = f"Question: {problem.question}\nAnswer: {problem.tool_solution()}"
    parts = {kind: text[start:end] for start, end, kind in tool_solution_spans(text)}
    # The strings slm.tir's evaluator writes (prompt, tool output) and reads back (program, answer).
    assert parts == {
        "prompt": "Question: Ann has 3 pens and buys 4. How many?\nAnswer: ```python\n",
        "program": "x = 3 + 4\nprint(x)\n```",
        "tool_output": "\n```output\n7\n```\n",
        "answer": "The answer is 7.",
    }
    with pytest.raises(ValueError, match="not a tool-integrated solution"):
        tool_solution_spans("Question: 3 + 4?\nAnswer: 3 + 4 = 7. The answer is 7.")


def test_tool_solution_labels_pack_with_their_kind_names(tmp_path, tokenizer):
    problem = Problem(question="what is 12 + 7?", steps=((12, "+", 7, 19),), answer=19)
    text = f"Question: {problem.question}\nAnswer: {problem.tool_solution()}"
    documents, kind_names = labelled_documents([(text, None)] * 4, "tool_solution", {"files": ["tir.jsonl"]})
    index = pack_documents(documents, tokenizer, tmp_path / "tir", seq_len=SEQ_LEN, kind_names=kind_names)
    assert index["kind_names"] == list(TOOL_SOLUTION_KINDS)
    kinds = PackedShard.open(tmp_path / "tir").kinds.reshape(-1)
    assert set(np.unique(kinds)) == set(range(len(TOOL_SOLUTION_KINDS)))  # EOS is "other" (0)
    untagged, _ = labelled_documents([(text, None), ("plain text", None)], "tool_solution", {"files": ["tir.jsonl"]})
    with pytest.raises(ValueError, match="tir.jsonl: document 2: not a tool-integrated solution"):
        list(untagged)
    with pytest.raises(ValueError, match="source key 'spans' of tir.jsonl"):
        labelled_documents([], "tool", {"files": ["tir.jsonl"]})
