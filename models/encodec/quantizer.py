"""EnCodec's residual vector quantizer: nearest code-word by squared L2, level after level."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ResidualVQ"]


class Codebook(nn.Module):
    embed: Tensor

    def __init__(self, codebook_size: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("embed", torch.randn(codebook_size, dim))
        self._cache: tuple[tuple[int, int, torch.dtype], Tensor, Tensor] | None = None

    def transposed(self) -> tuple[Tensor, Tensor]:
        """``(embed.t(), |embed|² as [1, codebook_size])``, recomputed only when ``embed`` changes."""
        embed = self.embed
        key = (embed.data_ptr(), embed._version, embed.dtype)
        if self._cache is None or self._cache[0] != key:
            embed_t = embed.t()
            self._cache = (key, embed_t, embed_t.pow(2).sum(0, keepdim=True))
        return self._cache[1], self._cache[2]


class ResidualVQ(nn.Module):
    """``layers.i.embed``: ``[codebook_size, dim]`` code-words of level ``i``."""

    def __init__(self, num_codebooks: int, codebook_size: int, dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Codebook(codebook_size, dim) for _ in range(num_codebooks))

    @property
    def codebooks(self) -> list[Codebook]:
        return cast("list[Codebook]", list(self.layers))

    def encode(self, latents: Tensor, num_codebooks: int) -> Tensor:
        """``[B, dim, T]`` latents → ``[B, num_codebooks, T]`` int64 codes."""
        batch, dim, frames = latents.shape
        residual = latents.transpose(1, 2).reshape(-1, dim)
        codes = []
        for layer in self.codebooks[:num_codebooks]:
            embed_t, embed_norms = layer.transposed()
            # The reference's expression, term for term, so float32 ties resolve the same way.
            distance = -(residual.pow(2).sum(1, keepdim=True) - 2 * residual @ embed_t + embed_norms)
            index = distance.max(dim=-1).indices
            residual = residual - F.embedding(index, layer.embed)
            codes.append(index)
        return torch.stack(codes, dim=0).view(num_codebooks, batch, frames).transpose(0, 1)

    def decode(self, codes: Tensor) -> Tensor:
        """``[B, K, T]`` codes → ``[B, dim, T]``: the sum of each level's code-words."""
        out: Tensor | float = 0.0
        for k in range(codes.shape[1]):
            out = out + F.embedding(codes[:, k], self.codebooks[k].embed)
        assert isinstance(out, Tensor)
        return out.transpose(1, 2)
