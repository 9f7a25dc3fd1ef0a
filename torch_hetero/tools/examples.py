"""Small models in plain torch that need no downloads: a GPT-2-style model (embedding, layer
norm, causal attention, MLP), used by the demo, the benchmarks and the tests, and a spectral
token mixer (an FFT, which has no generated code: per-op debt on every device)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc, self.out = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x):
        batch, seq, dim = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(dim, dim=2)
        q, k, v = (t.view(batch, seq, self.heads, dim // self.heads).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-2, -1) / (dim // self.heads) ** 0.5
        causal = torch.tril(torch.ones(seq, seq, dtype=torch.bool, device=x.device))
        attn = scores.masked_fill(~causal, float("-inf")).softmax(-1)
        x = x + self.proj((attn @ v).transpose(1, 2).reshape(batch, seq, dim))
        return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class TinyGPT(nn.Module):
    def __init__(self, vocab: int = 512, dim: int = 128, heads: int = 4, layers: int = 2, max_seq: int = 64):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, dim), nn.Embedding(max_seq, dim)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(layers)])
        self.ln, self.head = nn.LayerNorm(dim), nn.Linear(dim, vocab, bias=False)

    def forward(self, idx):
        positions = torch.arange(idx.shape[1], device=idx.device)
        return self.head(self.ln(self.blocks(self.tok(idx) + self.pos(positions))))


def tiny_gpt():
    """A factory for ``python -m torch_hetero audit torch_hetero.tools.examples:tiny_gpt``: the
    model and example inputs (two sequences of 32 tokens)."""
    torch.manual_seed(0)
    return TinyGPT().eval(), (torch.randint(0, 512, (2, 32)),)


class FourierMixing(nn.Module):
    """FNet-style token mixing: the magnitude of the real FFT along the sequence."""

    def forward(self, x):
        return torch.fft.rfft(x, dim=1).abs()


class SpectralMixer(nn.Module):
    def __init__(self, dim: int = 64):
        super().__init__()
        self.norm, self.mixing, self.fc = nn.LayerNorm(dim), FourierMixing(), nn.Linear(dim, dim)

    def forward(self, x):
        return x + F.gelu(self.fc(self.mixing(self.norm(x)))).mean(1, keepdim=True)


def spectral_mixer():
    """A factory for ``python -m torch_hetero audit torch_hetero.tools.examples:spectral_mixer``:
    the model and a batch of two 32-token sequences."""
    torch.manual_seed(0)
    return SpectralMixer().eval(), (torch.randn(2, 32, 64),)
