"""Recommendation models in plain torch, the workloads MTIA-class accelerators are built for:
sparse features pooled from large embedding tables (``nn.EmbeddingBag``) meeting dense MLPs.

* ``DLRM``: the DLRM paper's architecture (Naumov et al. 2019, "Deep Learning Recommendation
  Model for Personalization and Recommendation Systems") at its small Criteo configuration —
  13 dense features through a 512-256-64-16 bottom MLP, 26 sparse features as 16-wide
  embeddings, the pairwise dot-product interaction, a 512-256-1 top MLP — with the tables
  scaled down (``rows``) to fit this machine; multi-hot bags of varying size, sum pooling,
  mean pooling on some tables and per-sample weights on others.
* ``TwoTower``: a retrieval model: a user tower (user id, mean-pooled watch history) and an
  item tower (item id, sum-pooled tags), each an MLP to a normalized 64-wide vector, scored
  against every item of the batch (in-batch negatives).

Sparse inputs come as one tensor per kind for all tables: ``indices`` [tables, N],
``offsets`` [tables, batch + 1] (bag b of table t is ``indices[t, offsets[t, b]:offsets[t, b+1]]``)
and ``weights`` [tables, N]: a jagged batch in dense storage."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _mlp(sizes, last_activation: bool) -> nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if last_activation or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DLRM(nn.Module):
    def __init__(self, rows=(1000, 20000, 5000, 400, 3000, 60, 1200, 600, 3, 9000, 5500, 12000, 30,
                             500, 8000, 2500, 10, 4000, 1800, 40, 15000, 18, 15, 7000, 100, 1100),
                 dim: int = 16, dense: int = 13, bottom=(512, 256, 64), top=(512, 256),
                 mean_tables=(2, 7, 13), weighted_tables=(1, 10, 20)):
        super().__init__()
        self.mean_tables, self.weighted_tables = set(mean_tables), set(weighted_tables)
        self.tables = nn.ModuleList(nn.EmbeddingBag(n, dim, mode="mean" if t in self.mean_tables else "sum",
                                                 include_last_offset=True)
                                    for t, n in enumerate(rows))
        self.bottom = _mlp((dense, *bottom, dim), last_activation=True)
        features = len(rows) + 1
        pairs = torch.triu_indices(features, features, offset=1)
        self.register_buffer("left", pairs[0], persistent=False)
        self.register_buffer("right", pairs[1], persistent=False)
        self.top = _mlp((dim + pairs.shape[1], *top, 1), last_activation=False)

    def forward(self, dense, indices, offsets, weights):
        x = self.bottom(dense)
        pooled = [table(indices[t], offsets[t], per_sample_weights=weights[t] if t in self.weighted_tables else None)
                  for t, table in enumerate(self.tables)]
        vectors = torch.stack([x, *pooled], dim=1)                     # [B, 27, dim]
        dots = torch.bmm(vectors, vectors.transpose(1, 2))             # [B, 27, 27]
        interaction = dots[:, self.left, self.right]                   # the upper triangle
        return torch.sigmoid(self.top(torch.cat([x, interaction], dim=1)))


class TwoTower(nn.Module):
    def __init__(self, users: int = 50000, items: int = 100000, tags: int = 2000, dim: int = 64,
                 hidden: int = 256):
        super().__init__()
        self.user_id, self.item_id = nn.Embedding(users, dim), nn.Embedding(items, dim)
        self.history = nn.EmbeddingBag(items, dim, mode="mean", padding_idx=0)   # item 0: padding
        self.tags = nn.EmbeddingBag(tags, dim, mode="sum", include_last_offset=True)
        self.user_tower = _mlp((2 * dim, hidden, dim), last_activation=False)
        self.item_tower = _mlp((2 * dim, hidden, dim), last_activation=False)

    def forward(self, user, history, item, tags, tag_offsets):
        u = self.user_tower(torch.cat([self.user_id(user), self.history(history)], dim=1))   # history: [B, L]
        i = self.item_tower(torch.cat([self.item_id(item), self.tags(tags, tag_offsets)], dim=1))
        return F.normalize(u, dim=1) @ F.normalize(i, dim=1).T                                 # [B, B] scores


def jagged(tables: int, batch: int, rows, largest_bag: int, generator) -> tuple:
    """(indices [tables, N], offsets [tables, batch + 1], weights [tables, N]) of bags of 0 to
    ``largest_bag`` indices, each table's last bag taking what its others leave of N (the largest
    total): every index belongs to a bag (ATen's kernels disagree on indices past the last offset)."""
    sizes = torch.randint(0, largest_bag + 1, (tables, batch), generator=generator)
    offsets = torch.cat([torch.zeros(tables, 1, dtype=torch.long), sizes.cumsum(1)], dim=1)
    total = int(offsets[:, -1].max())
    offsets[:, -1] = total
    indices = torch.stack([torch.randint(0, n, (total,), generator=generator) for n in rows])
    return indices, offsets, torch.rand(tables, total, generator=generator)


def dlrm_example(batch: int = 128, seed: int = 0) -> tuple:
    """A DLRM and a batch for it: dense features, and bags of 0-8 indices per sparse feature."""
    generator = torch.Generator().manual_seed(seed)
    model = DLRM()
    rows = [t.num_embeddings for t in model.tables]
    return model, (torch.randn(batch, 13, generator=generator), *jagged(len(rows), batch, rows, 8, generator))


def two_tower_example(batch: int = 128, history: int = 20, seed: int = 0) -> tuple:
    """A two-tower model and a batch: each user's last ``history`` items (0: none), each item's tags."""
    generator = torch.Generator().manual_seed(seed)
    model = TwoTower()
    tags, offsets, _ = jagged(1, batch, [model.tags.num_embeddings], 6, generator)
    seen = torch.randint(0, model.item_id.num_embeddings, (batch, history), generator=generator)
    seen[:, history // 2:] *= (torch.rand(batch, 1, generator=generator) < 0.5)     # short histories, padded
    return model, (torch.randint(0, model.user_id.num_embeddings, (batch,), generator=generator), seen,
                   torch.randint(0, model.item_id.num_embeddings, (batch,), generator=generator), tags[0], offsets[0])
