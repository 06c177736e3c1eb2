"""Byte-level BPE tokenizer trained with the ``tokenizers`` library, saved in transformers format.

* Pre-tokenization: digits are split individually (every digit is its own token), then GPT-2
  style byte-level splitting without a prefix space; the byte-level decoder inverts it exactly, so
  ``decode(encode(text)) == text`` for any text.
* One special token, :data:`EOS_TOKEN` (id 0), used as eos, pad *and* bos token. Nothing is ever
  added automatically when encoding (``add_bos_token=False``, ``add_eos_token=False``, and a
  post-processor that adds nothing): callers insert EOS between documents themselves. Having
  ``bos_token == EOS_TOKEN`` makes lm-eval's loglikelihood prefix token (``bos_token_id``) the EOS
  id, i.e. the same document separator the models see in training.
* ``clean_up_tokenization_spaces=False`` so that decoding does not touch spaces before
  punctuation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from slm.config import check_int
from slm.data.sources import iter_files
from slm.io import atomic_path
from slm.schema import schema_minimum

__all__ = ["EOS_TOKEN", "read_documents", "train_tokenizer"]

EOS_TOKEN = "<|endoftext|>"
# byte alphabet + EOS: the config schema's minimum of tokenizer.train.vocab_size
_MIN_VOCAB = schema_minimum("/properties/tokenizer/properties/train/properties/vocab_size")


def read_documents(path: Path, text_field: str = "text") -> list[str]:
    """The non-empty documents of one file (see :func:`slm.data.sources.iter_files`); raises
    naming the file when it is missing, not UTF-8, malformed or has no text."""
    docs = [text for text, _ in iter_files([path], text_field=text_field) if text]
    if not any(d.strip() for d in docs):
        raise ValueError(f"tokenizer training file contains no text: {path}")
    return docs


def _build_tokenizer(docs: Sequence[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer=trainer, length=len(docs))
    return tok


def train_tokenizer(
    files: list[Path],
    out_dir: Path,
    *,
    vocab_size: int,
    text_field: str = "text",
    model_max_length: int = 2048,
) -> None:
    """Train the byte-level BPE on ``files`` and save it (transformers format) to ``out_dir``.

    The tokenizer is saved into a temporary sibling directory first, which then replaces
    ``out_dir``; an existing ``out_dir`` is only removed once the new one is complete.
    """
    check_int("vocab_size", vocab_size, _MIN_VOCAB)
    check_int("model_max_length", model_max_length, 1)
    files = [Path(f) for f in files]
    if not files:
        raise ValueError("files must name at least one training file")
    docs: list[str] = []
    for f in files:
        docs.extend(read_documents(f, text_field))

    from transformers import PreTrainedTokenizerFast

    tok = _build_tokenizer(docs, vocab_size)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        unk_token=None,
        add_bos_token=False,
        add_eos_token=False,
        clean_up_tokenization_spaces=False,
        model_max_length=model_max_length,
        padding_side="right",
    )

    with atomic_path(out_dir) as tmp:
        hf_tok.save_pretrained(str(tmp))
