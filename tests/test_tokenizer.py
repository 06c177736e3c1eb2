"""Tests for slm.data.tokenizer (byte-level BPE in transformers format)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slm.data.generate import generate_all
from slm.data.tokenizer import EOS_TOKEN, read_documents, train_tokenizer

VOCAB = 400
SAMPLES = [
    "Question: Tom has 12 apples. He buys 7 more, then gives 5 to Ann. How many apples does Tom have now?\n"
    "Answer: 12 + 7 = 19. 19 - 5 = 14. The answer is 14.",
    "Posted by user_8f3a at 2023-04-11 17:42:09 | id 9c1e77a2b4",
    "  leading spaces, trailing spaces  \n\n\nthree newlines\ttab . , ' s don't 1,000.50 -42",
    "x",
    "9876543210",
]


@pytest.fixture(scope="module")
def train_files(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("tokdata")
    generate_all(
        root / "data",
        seed=3,
        hq_problems=80,
        corpus_shards=1,
        docs_per_shard=10,
        pretrain_docs=2,
        eval_problems=2,
        eval_mc_problems=2,
        eval_ppl_docs=1,
        fewshot_problems=1,
        max_operand=40,
        min_steps=2,
        max_steps=3,
        kind_weights={"math": 0.6, "noise": 0.2, "boilerplate": 0.2},
    )
    txt = root / "extra.txt"
    txt.write_text("A plain text document.\nIt has two lines.\n", encoding="utf-8")
    return [
        root / "data" / "hq.jsonl",
        root / "data" / "corpus" / "shard-000.jsonl",
        txt,
    ]


@pytest.fixture(scope="module")
def tok_dir(train_files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    train_tokenizer(train_files, out, vocab_size=VOCAB, model_max_length=512)
    return out


@pytest.fixture(scope="module")
def tok(tok_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tok_dir))


def test_saved_files_and_special_tokens(tok_dir, tok):
    assert (tok_dir / "tokenizer.json").is_file()
    assert (tok_dir / "tokenizer_config.json").is_file()
    assert len(tok) == VOCAB
    assert tok.eos_token == tok.pad_token == tok.bos_token == EOS_TOKEN
    assert tok.eos_token_id == tok.pad_token_id == tok.bos_token_id == 0
    assert tok.model_max_length == 512
    assert not [p for p in tok_dir.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left


@pytest.mark.parametrize("text", SAMPLES)
def test_round_trip_and_no_special_tokens(tok, text):
    ids = tok(text)["input_ids"]
    assert tok.eos_token_id not in ids
    assert ids == tok.encode(text) == tok(text, add_special_tokens=True)["input_ids"]
    assert tok.decode(ids) == text


def test_empty_and_eos(tok):
    assert tok("")["input_ids"] == []
    ids = tok("ab" + EOS_TOKEN + "cd")["input_ids"]
    assert ids.count(tok.eos_token_id) == 1
    assert tok.decode(ids) == "ab" + EOS_TOKEN + "cd"
    assert tok.decode(ids, skip_special_tokens=True) == "abcd"


def test_digits_are_single_tokens(tok):
    for d in "0123456789":
        assert len(tok(d)["input_ids"]) == 1
    ids = tok("1234567890")["input_ids"]
    assert [tok.decode([i]) for i in ids] == list("1234567890")
    # no learned token mixes a digit with anything else
    for token, idx in tok.get_vocab().items():
        text = tok.decode([idx])
        if any(ch.isdigit() for ch in text):
            assert len(text) == 1, (token, text)


def test_learned_merges(tok):
    # frequent words of the training data became single tokens
    assert len(tok(" answer")["input_ids"]) == 1
    assert len(tok("Question")["input_ids"]) == 1


def test_deterministic(train_files, tok_dir, tmp_path):
    again = tmp_path / "again"
    train_tokenizer(train_files, again, vocab_size=VOCAB, model_max_length=512)
    assert (again / "tokenizer.json").read_bytes() == (tok_dir / "tokenizer.json").read_bytes()
    assert (again / "tokenizer_config.json").read_bytes() == (tok_dir / "tokenizer_config.json").read_bytes()


def test_replaces_existing_dir_atomically(train_files, tmp_path):
    out = tmp_path / "tok"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    train_tokenizer(train_files[:1], out, vocab_size=300)
    assert (out / "tokenizer.json").is_file() and not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]


def test_failure_keeps_existing_dir(train_files, tmp_path):
    out = tmp_path / "tok"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        train_tokenizer([train_files[0], tmp_path / "missing.jsonl"], out, vocab_size=300)
    assert (out / "keep.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]


def test_bad_files(tmp_path):
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(b'{"text": "caf\xe9"}\n')
    with pytest.raises(ValueError, match="latin1.jsonl"):
        train_tokenizer([latin1], tmp_path / "t", vocab_size=300)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty.jsonl"):
        train_tokenizer([empty], tmp_path / "t", vocab_size=300)
    blank = tmp_path / "blank.jsonl"
    blank.write_text(json.dumps({"text": ""}) + "\n" + json.dumps({"text": "   "}) + "\n")
    with pytest.raises(ValueError, match="blank.jsonl"):
        train_tokenizer([blank], tmp_path / "t", vocab_size=300)
    nofield = tmp_path / "nofield.jsonl"
    nofield.write_text(json.dumps({"body": "hello"}) + "\n")
    with pytest.raises(ValueError, match="nofield.jsonl"):
        train_tokenizer([nofield], tmp_path / "t", vocab_size=300)
    badjson = tmp_path / "badjson.jsonl"
    badjson.write_text('{"text": "ok"}\n{not json\n')
    with pytest.raises(ValueError, match="badjson.jsonl"):
        train_tokenizer([badjson], tmp_path / "t", vocab_size=300)
    emptytxt = tmp_path / "empty.txt"
    emptytxt.write_text("\n\n")
    with pytest.raises(ValueError, match="empty.txt"):
        train_tokenizer([emptytxt], tmp_path / "t", vocab_size=300)
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        train_tokenizer([tmp_path / "nope.txt"], tmp_path / "t", vocab_size=300)
    assert not (tmp_path / "t").exists()


def test_text_field_and_txt(tmp_path):
    f = tmp_path / "q.jsonl"
    f.write_text(json.dumps({"question": "What is 2 + 2?", "text": 5}) + "\n")
    assert read_documents(f, "question") == ["What is 2 + 2?"]
    with pytest.raises(ValueError, match="q.jsonl"):
        read_documents(f, "text")  # not a string
    t = tmp_path / "doc.txt"
    t.write_text("line one\nline two\n")
    assert read_documents(t) == ["line one\nline two\n"]
    train_tokenizer([f], tmp_path / "tq", vocab_size=260, text_field="question")
    assert (tmp_path / "tq" / "tokenizer.json").is_file()


def test_bad_vocab_size(train_files, tmp_path):
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(train_files, tmp_path / "t", vocab_size=100)
