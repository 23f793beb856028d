"""Mimi's split residual VQ: ``rvq_first`` (the semantic code-book) and ``rvq_rest`` (the
acoustic ones) both quantise the same latent, each through its own projection; decoding sums
their projected outputs."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SplitResidualVQ"]


class Codebook(nn.Module):
    """``embed``: ``[codebook_size, dim]`` code-words (published files store ``embedding_sum``
    and ``cluster_usage``; the reader divides them)."""

    embed: Tensor

    def __init__(self, codebook_size: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("embed", torch.randn(codebook_size, dim))

    def nearest(self, x: Tensor) -> Tensor:
        """``[N, dim]`` → ``[N]`` indices of the closest code-words (Euclidean, as ``cdist``)."""
        return torch.cdist(x[None], self.embed[None], p=2)[0].argmin(dim=-1)


class ResidualVQ(nn.Module):
    """``input_proj`` (1x1 conv, no bias) → residual VQ over ``layers`` → ``output_proj``."""

    def __init__(self, latent_dim: int, dim: int, codebook_size: int, num_codebooks: int) -> None:
        super().__init__()
        self.input_proj = nn.Conv1d(latent_dim, dim, 1, bias=False)
        self.output_proj = nn.Conv1d(dim, latent_dim, 1, bias=False)
        self.layers = nn.ModuleList(Codebook(codebook_size, dim) for _ in range(num_codebooks))

    @property
    def codebooks(self) -> list[Codebook]:
        return cast("list[Codebook]", list(self.layers))

    def encode(self, latents: Tensor, num_codebooks: int) -> Tensor:
        """``[B, latent, T]`` → ``[B, num_codebooks, T]``."""
        batch, _, frames = latents.shape
        residual = self.input_proj(latents).transpose(1, 2).reshape(batch * frames, -1)
        codes = []
        for layer in self.codebooks[:num_codebooks]:
            index = layer.nearest(residual)
            residual = residual - F.embedding(index, layer.embed)
            codes.append(index.view(batch, frames))
        return torch.stack(codes, dim=1)

    def decode(self, codes: Tensor) -> Tensor:
        books = self.codebooks
        total = F.embedding(codes[:, 0], books[0].embed)
        for k in range(1, codes.shape[1]):
            total = total + F.embedding(codes[:, k], books[k].embed)
        return self.output_proj(total.transpose(1, 2))  # type: ignore[no-any-return]


class SplitResidualVQ(nn.Module):
    def __init__(self, latent_dim: int, dim: int, codebook_size: int, num_codebooks: int, num_semantic: int) -> None:
        super().__init__()
        self.num_semantic = num_semantic
        self.rvq_first = ResidualVQ(latent_dim, dim, codebook_size, num_semantic)
        self.rvq_rest = ResidualVQ(latent_dim, dim, codebook_size, num_codebooks - num_semantic)

    def encode(self, latents: Tensor, num_codebooks: int) -> Tensor:
        """``[B, latent, T]`` → ``[B, num_codebooks, T]`` int64 (``num_codebooks >= num_semantic``)."""
        if latents.shape[-1] == 0:
            return latents.new_zeros(latents.shape[0], num_codebooks, 0, dtype=torch.long)
        codes = self.rvq_first.encode(latents, self.num_semantic)
        if num_codebooks > self.num_semantic:
            codes = torch.cat([codes, self.rvq_rest.encode(latents, num_codebooks - self.num_semantic)], dim=1)
        return codes

    def decode(self, codes: Tensor) -> Tensor:
        """``[B, K, T]`` codes → ``[B, latent, T]``."""
        if codes.shape[-1] == 0:
            weight = self.rvq_first.output_proj.weight
            return weight.new_zeros(codes.shape[0], weight.shape[0], 0)
        latents = self.rvq_first.decode(codes[:, : self.num_semantic])
        if codes.shape[1] > self.num_semantic:
            latents = latents + self.rvq_rest.decode(codes[:, self.num_semantic :])
        return latents
