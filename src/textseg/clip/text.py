"""CLIP's text tower: tokenising, encoding, and class names x prompt templates.

Besides the plain text embedding, CoDe needs the tower in pieces: the token-embedding table (its
prompt learner builds sequences from learned context vectors), encoding from token embeddings
(causal blocks, ``final_layer_norm``, pooling at the end-of-text token, projection), and the last
block's hidden states before ``final_layer_norm`` (its text decoder reads all 77 positions).

Tokenisation follows OpenAI's ``clip.tokenize(truncate=True)``: start token, text, end token,
truncated to the context length with the end token kept last, then padded with id 0. The padding
id matters only where padded positions are read (CoDe's decoder); the end-of-text embedding is
the same for any padding because every block is causal.

Class embeddings average over templates in one of two ways, both in use:

* ``"raw"`` — average the unnormalised prompt embeddings, then L2-normalise (TCL's
  ``build_text_embedding``; the ``tcl`` protocol);
* ``"unit"`` — L2-normalise each prompt embedding, average, normalise again (CLIP's zero-shot
  recipe; official MaskCLIP, SCLIP, ClearCLIP, NACLIP, CoDe's kp branch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from textseg.clip.blocks import standard_layer
from textseg.clip.text_cache import TextEmbeddingCache, tensors_digest
from textseg.errors import ConfigError

TemplateAverage = Literal["raw", "unit"]
TEMPLATE_AVERAGES: tuple[str, ...] = ("raw", "unit")

#: OpenAI's tokenizer pads with id 0.
PAD_ID = 0


def tokenize(tokenizer, texts: Sequence[str], context_length: int = 77) -> Tensor:
    """OpenAI's ``clip.tokenize(truncate=True)`` with a transformers CLIP tokenizer, on the CPU.

    A function of the tokenizer alone, so data workers can tokenise captions without a model.
    """
    encoded = tokenizer(list(texts), truncation=True, max_length=context_length)["input_ids"]
    ids = torch.full((len(encoded), context_length), PAD_ID, dtype=torch.long)
    for row, tokens in enumerate(encoded):
        ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
    return ids


class TextTower(nn.Module):
    """Wraps a transformers ``CLIPTextModel``/``CLIPTextTransformer``, the text projection and the tokenizer.

    State-dict keys: ``transformer.*`` (transformers' names below ``text_model``) and
    ``projection.weight``. ``cache`` (optional) stores class embeddings from :meth:`encode_classes`.
    """

    def __init__(
        self,
        transformer: nn.Module,
        projection: nn.Linear,
        tokenizer,
        cache: TextEmbeddingCache | None = None,
    ) -> None:
        super().__init__()
        self.transformer = transformer
        self.projection = projection
        self.tokenizer = tokenizer
        self.cache = cache

    @property
    def context_length(self) -> int:
        return self.transformer.embeddings.position_embedding.weight.shape[0]

    @property
    def embed_dim(self) -> int:
        return self.projection.out_features

    @property
    def token_embedding(self) -> nn.Embedding:
        """The token-embedding table ``[vocab, width]``."""
        return self.transformer.embeddings.token_embedding

    @property
    def eot_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    # -- tokens -------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str], context_length: int | None = None) -> Tensor:
        """Token ids ``[N, context_length]``: start, text, end (kept last when truncated), zeros."""
        ids = tokenize(self.tokenizer, texts, context_length or self.context_length)
        return ids.to(self.token_embedding.weight.device)

    def eot_positions(self, ids: Tensor) -> Tensor:
        """Index of the (first) end-of-text token in each row of ``ids``."""
        return (ids == self.eot_id).int().argmax(dim=-1)

    # -- the pieces ---------------------------------------------------------------------------
    def run_blocks(self, x: Tensor) -> Tensor:
        """Every block, causally, on token embeddings with positions added ``[N, L, W]``."""
        length = x.shape[1]
        causal = torch.full((length, length), float("-inf"), device=x.device, dtype=x.dtype).triu(1)
        for layer in self.transformer.encoder.layers:
            x = standard_layer(layer, x, causal)
        return x

    def add_positions(self, embeddings: Tensor) -> Tensor:
        """Token embeddings ``[N, L, W]`` plus the first ``L`` position embeddings."""
        return embeddings + self.transformer.embeddings.position_embedding.weight[: embeddings.shape[1]]

    def hidden_states(self, ids: Tensor) -> Tensor:
        """The last block's output ``[N, L, W]`` before ``final_layer_norm`` (CoDe's decoder input)."""
        return self.run_blocks(self.add_positions(self.token_embedding(ids)))

    def pool(self, hidden: Tensor, eot: Tensor) -> Tensor:
        """``final_layer_norm`` at the end-of-text positions, then the projection -> ``[N, D]``."""
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return self.projection(self.transformer.final_layer_norm(hidden[rows, eot.to(hidden.device)]))

    def encode_embeddings(self, embeddings: Tensor, eot: Tensor) -> Tensor:
        """Text embeddings ``[N, D]`` (unnormalised) from token embeddings ``[N, L, W]`` (no positions yet)."""
        return self.pool(self.run_blocks(self.add_positions(embeddings)), eot)

    def encode(self, ids: Tensor) -> Tensor:
        """CLIP's text embedding ``[N, D]`` (unnormalised) of token ids."""
        return self.pool(self.hidden_states(ids), self.eot_positions(ids))

    def encode_texts(self, texts: Sequence[str]) -> Tensor:
        return self.encode(self.tokenize(texts))

    # -- class names x templates --------------------------------------------------------------
    def identity(self) -> str:
        """A digest of the weights and vocabulary: what the embedding cache is keyed by."""
        vocab = sorted(self.tokenizer.get_vocab().items())
        extra = f"{type(self.tokenizer).__name__}|{vocab}"
        return tensors_digest(self.state_dict().items(), extra)

    @torch.no_grad()
    def encode_classes(
        self,
        names: Sequence[str],
        templates: Sequence[str],
        average: TemplateAverage = "raw",
        batch_size: int = 256,
    ) -> Tensor:
        """One L2-normalised embedding per name ``[len(names), D]``, averaged over ``templates``."""
        if average not in TEMPLATE_AVERAGES:
            raise ConfigError(
                f"unknown template averaging {average!r}; use one of {', '.join(TEMPLATE_AVERAGES)}"
            )
        key = None
        if self.cache is not None:
            key = self.cache.key(self.identity(), names, templates, average)
            cached = self.cache.get(key)
            if cached is not None:
                return cached.to(self.projection.weight.device)
        prompts = [template.format(name) for name in names for template in templates]
        starts = range(0, len(prompts), batch_size)
        chunks = [
            self.encode_texts(prompts[start : start + batch_size]).float()
            for start in tqdm(starts, desc="encoding class names", leave=False, disable=len(starts) < 4)
        ]
        per_prompt = torch.cat(chunks).view(len(names), len(templates), -1)
        if average == "unit":
            per_prompt = F.normalize(per_prompt, dim=-1)
        result = F.normalize(per_prompt.mean(dim=1), dim=-1)
        if self.cache is not None and key is not None:
            self.cache.put(key, result)
        return result
