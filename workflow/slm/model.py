"""Models: initialise the small Llama base, load any causal LM (local directory or hub id), the numeric
policy every model-running stage shares, and the one per-token loss.

Precision policy (one place, used by scoring, training, dynamics and the benchmark):

- ``fp32``: fp32 parameters and fp32 compute everywhere.
- ``bf16``: bf16 parameters for compute. Inference paths (scoring, dynamics, benchmark) cast the
  weights to bf16 (:func:`load_for_inference`); training keeps fp32 master weights and computes with
  bf16 copies (FSDP2's ``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)``, see
  :func:`fsdp_mixed_precision`), with no autocast. Either way the forward pass sees the same bf16
  weights, so the reference loss and the current loss of a token come from the same arithmetic.
- In both, cross-entropy is taken from fp32 logits (:func:`per_token_losses`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from slm.fingerprint import tokenizer_fingerprint
from slm.io import atomic_path
from slm.model_card import init_card

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}
# fp32 logits kept alive at once by per_token_losses (one chunk of tokens x the vocabulary).
LOGITS_CHUNK_BYTES = 128 * 2**20


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
    num_kv_heads: int | None = None,
    vocab_size: int | None = None,
) -> int:
    """Write a randomly initialised Llama with the tokenizer's vocabulary; return its parameter count.

    ``num_kv_heads`` (default ``num_heads``) < ``num_heads`` gives grouped-query attention. A
    ``vocab_size`` above the tokenizer's gives a model of a larger model's shape (for benchmarks).
    """
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    if vocab_size is not None and vocab_size < len(tokenizer):
        raise ValueError(f"vocab_size {vocab_size} is smaller than the tokenizer's vocabulary ({len(tokenizer)})")
    config = LlamaConfig(
        vocab_size=vocab_size or len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads or num_heads,
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
        "num_kv_heads": config.num_key_value_heads,
        "intermediate_size": intermediate_size,
        "vocab_size": config.vocab_size,
    }
    save_model(model, tokenizer, out_dir, extra_files={"README.md": init_card(n_params, architecture)})
    log.info("initialised Llama with %d parameters in %s", n_params, out_dir)
    return n_params


def save_model(
    model, tokenizer, out_dir: str | Path, extra_files: dict[str, str] | None = None, state_dict: dict | None = None
) -> None:
    """Save a plain transformers model directory (safetensors + config + tokenizer), atomically; with
    ``state_dict``, those weights (e.g. the gathered weights of a sharded model) instead of the model's."""
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True, state_dict=state_dict)
        tokenizer.save_pretrained(tmp)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")


def check_model_dir(name_or_path: str | Path) -> None:
    """A model given as a local directory must hold a transformers model (config.json). Local: it
    exists, starts with ``.``, ``/`` or ``~``, or has more path parts than a hub id (``org/name``)."""
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"model directory {name} does not exist or has no config.json")


def load_model(name_or_path: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    check_model_dir(name_or_path)
    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    return model.to(device), tokenizer


def check_vocabulary(model: str | Path, shards) -> None:
    """Refuse packed shards whose token ids do not belong to ``model``'s vocabulary: packed with a
    tokenizer other than the model's own, or with more tokens than its embedding has. Reads only the
    model's config and tokenizer, so it runs before any weights are loaded."""
    check_model_dir(model)
    config = AutoConfig.from_pretrained(model)
    tokenizer = AutoTokenizer.from_pretrained(model)
    for shard in shards:
        index = shard.index
        problems = []
        if index["vocab_size"] > config.vocab_size:
            tokens, embedding = index["vocab_size"], config.vocab_size
            problems.append(f"its tokenizer has {tokens} tokens, the model's embedding {embedding}")
        packed_with = index.get("tokenizer_sha256")
        if packed_with is not None and packed_with != tokenizer_fingerprint(tokenizer):
            problems.append(f"it was packed with the tokenizer of {index.get('tokenizer')}, not the model's")
        if problems:
            raise ValueError(
                f"token shard {shard.path} does not fit model {model}: {'; '.join(problems)}. Prepare the data "
                "with the model's tokenizer (tokenizer: {from_base_model: true}) or use a model of this vocabulary."
            )


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype of the parameters the forward and backward passes compute with."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    return PRECISIONS[precision]


def fsdp_mixed_precision(precision: str):
    """FSDP2's policy for training at ``precision``: compute with parameters in :func:`compute_dtype`,
    reduce gradients in fp32 (the sharded master weights stay fp32)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    return MixedPrecisionPolicy(param_dtype=compute_dtype(precision), reduce_dtype=torch.float32)


def load_for_inference(name_or_path: str | Path, device: torch.device | str, precision: str):
    """A model for scoring-like passes (eval mode, weights cast to :func:`compute_dtype`), and its tokenizer."""
    model, tokenizer = load_model(name_or_path, device, compute_dtype(precision))
    model.eval()
    return model, tokenizer


class _LinearCrossEntropy(torch.autograd.Function):
    """``-log softmax(hidden @ weight.T)[target]`` per row, in chunks of rows, never holding more than one
    chunk's logits. Logits are computed in the inputs' dtype and cast to fp32 (as ``lm_head(h).float()``
    would); the backward recomputes each chunk's logits instead of storing them, and scales every row
    by its own upstream gradient."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk):
        losses = torch.empty(len(targets), dtype=torch.float32, device=hidden.device)
        logsumexp = torch.empty_like(losses)
        for start in range(0, len(targets), chunk):
            rows = slice(start, start + chunk)
            logits = (hidden[rows] @ weight.T).float()
            logsumexp[rows] = torch.logsumexp(logits, dim=-1)
            losses[rows] = logsumexp[rows] - logits.gather(1, targets[rows, None]).squeeze(1)
        ctx.save_for_backward(hidden, weight, targets, logsumexp)
        ctx.chunk = chunk
        return losses

    @staticmethod
    def backward(ctx, grad_losses):
        hidden, weight, targets, logsumexp = ctx.saved_tensors
        need_hidden, need_weight = ctx.needs_input_grad[:2]
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        # Summed over chunks in fp32, rounded to the weight's dtype once.
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_weight else None
        for start in range(0, len(targets), ctx.chunk):
            rows = slice(start, start + ctx.chunk)
            # d loss / d logits = softmax - onehot(target), times this row's upstream gradient (in place:
            # one chunk of fp32 logits at a time).
            grad_logits = (hidden[rows] @ weight.T).float()
            grad_logits.sub_(logsumexp[rows, None]).exp_()
            grad_logits[torch.arange(len(grad_logits), device=grad_logits.device), targets[rows]] -= 1.0
            grad_logits = grad_logits.mul_(grad_losses[rows, None]).to(weight.dtype)
            if need_hidden:
                grad_hidden[rows] = grad_logits @ weight
            if need_weight:
                grad_weight += grad_logits.T @ hidden[rows]
        return grad_hidden, grad_weight.to(weight.dtype) if need_weight else None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, input_ids: torch.Tensor, chunk_tokens: int | None = None
) -> torch.Tensor:
    """Per-token losses from final hidden states ``[batch, length, hidden]`` and an output projection
    ``weight`` ``[vocab, hidden]``, aligned with ``input_ids``: ``out[:, t] = -log p(x_t | x_<t)``, NaN at
    position 0 (no context). fp32 logits are built ``chunk_tokens`` rows at a time (default: what fits
    in :data:`LOGITS_CHUNK_BYTES`), in the forward and again in the backward."""
    batch, length = input_ids.shape
    if chunk_tokens is None:
        chunk_tokens = max(1, LOGITS_CHUNK_BYTES // (4 * weight.shape[0]))
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be positive, got {chunk_tokens}")
    with torch.autocast(hidden.device.type, enabled=False):
        losses = _LinearCrossEntropy.apply(
            hidden[:, :-1].reshape(-1, hidden.shape[-1]), weight, input_ids[:, 1:].reshape(-1), chunk_tokens
        )
    return torch.cat([losses.new_full((batch, 1), float("nan")), losses.view(batch, length - 1)], dim=1)


def per_token_losses(model, input_ids: torch.Tensor, chunk_tokens: int | None = None) -> torch.Tensor:
    """The per-token loss of every stage: ``out[:, t] = -log p(x_t | x_<t)`` under ``model``, NaN at position 0.

    ``model`` is a transformers causal LM with a decoder body (``get_decoder()``) and a bias-free linear
    output layer (``get_output_embeddings()``, tied to the input embeddings or not). The body gives the
    final hidden states; :func:`linear_cross_entropy` turns them into losses without ever holding the
    whole batch's logits. Differentiable with respect to the model's parameters for any per-token
    upstream gradient (e.g. selection weights divided by k).

    It calls the decoder and reads the head's weight directly, not ``model.forward``: under FSDP2, call
    it from a forward of the root FSDP module (e.g. a method registered with
    ``torch.distributed.fsdp.register_fsdp_forward_method``) so that the root's parameters are gathered.
    """
    head = model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear) or head.bias is not None:
        raise ValueError(f"per-token losses need a bias-free linear output layer, got {head!r}")
    if getattr(model.config, "final_logit_softcapping", None) or getattr(model.config, "logit_scale", None):
        raise ValueError(f"{type(model).__name__} rescales its logits; per_token_losses does not")
    hidden = model.get_decoder()(input_ids=input_ids, use_cache=False).last_hidden_state
    return linear_cross_entropy(hidden, head.weight, input_ids, chunk_tokens)
