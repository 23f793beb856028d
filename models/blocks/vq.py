"""The factorised vector quantizer of SNAC and DAC: project to a small space, pick the nearest
code-word by cosine similarity, project back (``in_proj`` / ``codebook`` / ``out_proj``)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["VectorQuantize"]


class VectorQuantize(nn.Module):
    def __init__(self, latent: int, codebook_size: int, codebook_dim: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.in_proj = nn.Conv1d(latent, codebook_dim, 1)
        self.out_proj = nn.Conv1d(codebook_dim, latent, 1)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)

    def nearest(self, latents: Tensor) -> Tensor:
        """``[B, D, n]`` → ``[B, n]`` indices of the closest code-words by cosine similarity."""
        batch = latents.shape[0]
        encodings = F.normalize(latents.transpose(1, 2).reshape(-1, latents.shape[1]))
        codebook = F.normalize(self.codebook.weight)
        distance = (
            encodings.pow(2).sum(1, keepdim=True)
            - 2 * encodings @ codebook.t()
            + codebook.pow(2).sum(1, keepdim=True).t()
        )
        return (-distance).max(1)[1].view(batch, -1)

    def embed(self, codes: Tensor) -> Tensor:
        """``[B, n]`` codes → ``[B, latent, n · stride]``."""
        projected = self.out_proj(F.embedding(codes, self.codebook.weight).transpose(1, 2))
        return projected.repeat_interleave(self.stride, dim=-1)
