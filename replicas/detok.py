"""Text of a continued request, exactly as the unmigrated request would have streamed it.

vLLM detokenizes incrementally with a tokenizers DecodeStream primed with the prompt.
At the destination the "prompt" is the original prompt + the tokens already delivered,
so its stream is primed differently, and around incomplete UTF-8 (a character split
across tokens, or a model emitting raw bytes) it can emit different text at the
boundary. We replay the source's stream instead: prime with the original prompt, step
through the delivered tokens (their text was already sent), then step the new ones.
"""

from __future__ import annotations

from typing import Any

# vLLM resets its decode stream on this tokenizers error; so do we, to stay in step.
_INVALID_PREFIX = "Invalid prefix encountered"


class ContinuationText:
    def __init__(self, tokenizer: Any, prompt_ids: list[int], delivered_ids: list[int],
                 skip_special_tokens: bool = True) -> None:
        from tokenizers.decoders import DecodeStream

        self._new = lambda ids=None: DecodeStream(ids=ids, skip_special_tokens=skip_special_tokens) \
            if ids is not None else DecodeStream(skip_special_tokens=skip_special_tokens)
        self._tok = getattr(tokenizer, "_tokenizer", tokenizer)
        self._stream = self._new(list(prompt_ids))
        for t in delivered_ids:
            self._step(t)

    def _step(self, token_id: int) -> str:
        try:
            return self._stream.step(self._tok, token_id) or ""
        except (OverflowError, TypeError):
            return ""
        except Exception as e:
            if not str(e).startswith(_INVALID_PREFIX):
                raise
            self._stream = self._new()
            return self._stream.step(self._tok, token_id) or ""

    def text(self, token_ids: list[int]) -> str:
        return "".join(self._step(t) for t in token_ids)
