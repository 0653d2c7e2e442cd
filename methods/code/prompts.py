"""CoDe's three prompts (``models/tcl/{prompter,codecomposition,noun_decomposition}.py`` officially).

* :class:`NounPrompt` — CoOp-style context vectors in front of a noun or class name: the query of
  the image and text segmenters, in training (each selected noun) and at inference (each class
  name, with no template).
* :func:`highlight_words` — the word prompt: the caption's token embeddings where the word mask is
  on, a learned embedding per position where it is off.
* the region prompt (a learned image, the background of the highlighted region) needs no code of
  its own: TCL's :meth:`~textseg.methods.tcl.model.TCL.highlighted_embedding` takes a background.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from textseg.clip import TextTower


class NounPrompt(nn.Module):
    """``[SOS] ctx_1 .. ctx_n <noun tokens> [EOS] pad..`` through the frozen text tower, L2-normalised.

    The ``n`` context vectors start as the token embeddings at positions ``1..n`` of ``init``
    followed by ``x`` tokens (officially ``"A photo of" + " x" * 50``: "a photo of x x ... x").
    Nouns are tokenised with ``context_length - n`` positions (start token included) so that the
    whole prompt fits the tower's context; the tower is passed to :meth:`forward` rather than held,
    so its frozen weights stay out of this module's state.
    """

    def __init__(self, tower: TextTower, n_ctx: int = 16, init: str = "A photo of") -> None:
        super().__init__()
        if not 0 < n_ctx < tower.context_length - 2:
            raise ValueError(f"n_ctx must be between 1 and {tower.context_length - 3}, got {n_ctx}")
        with torch.no_grad():
            ids = tower.tokenize([init + " x" * n_ctx])[0, 1 : 1 + n_ctx]
            self.ctx = nn.Parameter(tower.token_embedding(ids).clone())

    @property
    def n_ctx(self) -> int:
        return self.ctx.shape[0]

    def noun_length(self, tower: TextTower) -> int:
        """How many positions (start token included) a noun is tokenised with."""
        return tower.context_length - self.n_ctx

    def forward(self, tower: TextTower, ids: Tensor) -> Tensor:
        """Unit embeddings ``[N, D]`` of nouns tokenised as ``[N, noun_length]`` (start, noun, end, zeros)."""
        words = ids[:, 1:]
        start = tower.token_embedding(ids[:, :1])
        ctx = self.ctx.unsqueeze(0).expand(ids.shape[0], -1, -1)
        embeddings = torch.cat([start, ctx.to(start.dtype), tower.token_embedding(words)], dim=1)
        eot = 1 + self.n_ctx + tower.eot_positions(words)
        out = tower.encode_embeddings(embeddings, eot)
        return out / out.norm(dim=-1, keepdim=True)  # CLIPPrompter: a plain division, no eps


def highlight_words(tokens: Tensor, masks: Tensor, eot: Tensor, prompt: Tensor) -> Tensor:
    """``m * token + (1 - m) * prompt`` per position, in token-embedding space (before positions).

    ``tokens`` ``[N, L, W]`` are a caption's token embeddings, ``masks`` ``[N, L]`` its soft word
    mask, ``eot`` ``[N]`` the end-token positions and ``prompt`` ``[L, W]`` the learned word prompt.
    The start token, the end token and every position after it keep their token (``m`` forced to 1,
    with no gradient to the mask there), as CoDe's ``handle_padded_tokens``.
    """
    positions = torch.arange(tokens.shape[1], device=tokens.device)
    keep = (positions == 0) | (positions >= eot.to(tokens.device).unsqueeze(1))
    m = masks.masked_fill(keep, 1.0).unsqueeze(-1).to(tokens.dtype)
    return m * tokens + (1 - m) * prompt.to(tokens.dtype)
