"""Models: initialise the small Llama base, load any causal LM (local directory or hub id), per-token losses."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from slm.io import atomic_path
from slm.model_card import init_card

log = logging.getLogger(__name__)


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def init_model(
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    *,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    intermediate_size: int,
    max_position_embeddings: int,
    seed: int,
    tie_word_embeddings: bool = True,
) -> int:
    """Write a randomly initialised Llama with the tokenizer's vocabulary; return its parameter count."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters())
    architecture = {
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "num_heads": num_heads,
        "intermediate_size": intermediate_size,
        "vocab_size": len(tokenizer),
    }
    save_model(model, tokenizer, out_dir, extra_files={"README.md": init_card(n_params, architecture)})
    log.info("initialised Llama with %d parameters in %s", n_params, out_dir)
    return n_params


def save_model(model, tokenizer, out_dir: str | Path, extra_files: dict[str, str] | None = None) -> None:
    """Save a plain transformers model directory (safetensors + config + tokenizer), atomically."""
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")


def load_model(name_or_path: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    path = Path(name_or_path)
    if str(name_or_path).startswith((".", "/")) and not (path / "config.json").is_file():
        raise FileNotFoundError(f"model directory {path} does not exist or has no config.json")
    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    return model.to(device), tokenizer


def token_losses(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Per-token cross-entropy aligned with the tokens: ``out[:, t] = -log p(x_t | x_<t)``.

    Position 0 of each sequence has no context and gets NaN. Computed in float32.
    """
    batch, length, vocab = logits.shape
    ce = F.cross_entropy(
        logits[:, :-1].reshape(-1, vocab).float(), input_ids[:, 1:].reshape(-1), reduction="none"
    ).view(batch, length - 1)
    return torch.cat([ce.new_full((batch, 1), float("nan")), ce], dim=1)
