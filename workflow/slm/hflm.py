"""lm-eval's Hugging Face model with generation that stops each sequence at its own stop string.

lm-eval 0.4.13 (``MultiTokenEOSCriteria``) keeps one "done" flag per stop string and ends a batch only
when every sequence has met the *same* string: in a batch where some answers end with ``\\n\\n`` and
others with the end-of-text token, every sequence runs to ``max_gen_toks``. :class:`RowStopHFLM`
marks each sequence finished as soon as any stop string appears in what it generated (lm-eval's own
test: the decoded last tokens of the generation contain the string), and ends the batch when all
are finished. The text lm-eval keeps is unchanged: it cuts every generation at its first stop string,
and a sequence's greedy tokens up to that point do not depend on when the others stop.
"""

from __future__ import annotations

import torch
import transformers
from lm_eval.models.huggingface import HFLM


class RowStop(transformers.StoppingCriteria):
    """Per-sequence stop: True for each sequence whose generated tokens contain one of ``stops``.

    Looks at the last ``len(tokens of the longest stop) + 2`` generated tokens (as lm-eval does, so a
    stop string split differently across tokens is still found), never at the prompt.
    """

    def __init__(self, tokenizer, stops: list[str], prompt_length: int):
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.prompt_length = prompt_length
        self.lookback = max((len(tokenizer.encode(s, add_special_tokens=False)) for s in self.stops), default=0) + 2

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        tails = self.tokenizer.batch_decode(input_ids[:, self.prompt_length :][:, -self.lookback :])
        return torch.tensor([any(s in tail for s in self.stops) for tail in tails], device=input_ids.device)


class RowStopHFLM(HFLM):
    """:class:`lm_eval.models.huggingface.HFLM` whose generation stops each sequence on its own."""

    def _model_generate(self, context, max_length: int, stop: list[str], **generation_kwargs) -> torch.Tensor:
        # lm-eval's sampling defaults: greedy unless the task asks for sampling
        generation_kwargs["temperature"] = generation_kwargs.get("temperature", 0.0)
        if generation_kwargs["temperature"] == 0.0 and generation_kwargs.get("do_sample") is None:
            generation_kwargs["do_sample"] = False
        if generation_kwargs.get("do_sample") is False and generation_kwargs["temperature"] == 0.0:
            generation_kwargs.pop("temperature")
        with torch.autocast(
            device_type=self.device.type,
            dtype=self.mixed_precision_dtype,
            enabled=self.mixed_precision_dtype is not None,
        ):
            return self.model.generate(
                input_ids=context,
                max_length=max_length,
                stopping_criteria=transformers.StoppingCriteriaList([RowStop(self.tokenizer, stop, context.shape[1])]),
                pad_token_id=self.tokenizer.pad_token_id,
                use_cache=True,
                **generation_kwargs,
            )
