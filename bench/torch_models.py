"""PyTorch mirrors of the project's model and training step, for the training comparison.

Same architecture, shapes, loss and optimizer as the Flax side (`bench/training.py`):
`nn.LSTM` layers, the same head (Dense(H) -> tanh-GELU -> dropout -> Dense(horizons x quantiles),
a ticker embedding when the shape has one, non-crossing quantiles by softplus gaps), the same
loss (MSE or pinball) and optimizer (Adam, or AdamW with warmup-cosine and global-norm clipping),
windows gathered from a `[rows, features]` panel by index exactly like `gather_windows`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


class TorchQuantileLSTM(nn.Module):
    def __init__(
        self,
        n_features: int,
        hidden: int,
        layers: int,
        n_tickers: int,
        embedding: int,
        n_out: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_features, hidden, layers, batch_first=True)
        self.embedding = nn.Embedding(n_tickers, embedding) if embedding else None
        self.head_hidden = nn.Linear(hidden + embedding, hidden)
        self.gelu = nn.GELU(approximate="tanh")
        self.dropout = nn.Dropout(dropout)
        self.head_out = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor, ticker_id: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        last = out[:, -1]
        if self.embedding is not None:
            last = torch.cat([last, self.embedding(ticker_id)], dim=-1)
        return self.head_out(self.dropout(self.gelu(self.head_hidden(last))))


def monotone_quantiles(raw: torch.Tensor, m: int) -> torch.Tensor:
    median = raw[..., m : m + 1]
    upper = median + torch.cumsum(nn.functional.softplus(raw[..., m + 1 :]), dim=-1)
    lower = median - torch.cumsum(nn.functional.softplus(raw[..., :m].flip(-1)), dim=-1).flip(-1)
    return torch.cat([lower, median, upper], dim=-1)


class TorchTrainer:
    """Trains fresh models ("folds") of a `bench.training.Shape` for a number of steps."""

    def __init__(
        self, shape, x: np.ndarray, y: np.ndarray, ticker_id: np.ndarray, rows: np.ndarray, seed: int = 0
    ) -> None:
        self.shape = shape
        self.x = torch.from_numpy(x)
        self.y = torch.from_numpy(y)
        self.tid = torch.from_numpy(ticker_id.astype(np.int64))
        self.rows = torch.from_numpy(rows.astype(np.int64))
        self.offsets = torch.arange(-shape.lookback + 1, 1)
        self.q = torch.tensor(shape.quantiles, dtype=torch.float32)
        self.generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)

    def _fresh(self):
        s = self.shape
        model = TorchQuantileLSTM(
            s.features, s.hidden, s.layers, s.n_tickers, s.embedding, s.horizons * len(s.quantiles), s.dropout
        )
        if s.optimizer == "adam":
            opt = torch.optim.Adam(model.parameters(), lr=s.learning_rate)
            sched = None
        else:
            opt = torch.optim.AdamW(model.parameters(), lr=s.learning_rate, weight_decay=s.weight_decay)
            total, warm = s.schedule_steps, min(s.warmup_steps, s.schedule_steps - 1)

            def factor(step: int) -> float:  # optax.warmup_cosine_decay_schedule / peak
                if step < warm:
                    return 0.1 + 0.9 * step / max(warm, 1)
                t = min(step - warm, total - warm) / max(total - warm, 1)
                return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t))

            sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return model, opt, sched

    def fold(self, steps: int) -> float:
        """A fresh model trained for `steps` steps; returns the last loss."""
        s = self.shape
        model, opt, sched = self._fresh()
        model.train()
        m = list(s.quantiles).index(0.5)
        loss = torch.zeros(())
        for _ in range(steps):
            pick = torch.randint(0, len(self.rows), (s.batch,), generator=self.generator)
            rows = self.rows[pick]
            xb = self.x[rows[:, None] + self.offsets]  # [B, lookback, F]
            yb = self.y[rows]
            raw = model(xb, self.tid[rows]).reshape(s.batch, s.horizons, len(s.quantiles))
            pred = monotone_quantiles(raw, m)
            if s.loss == "mse":
                loss = torch.mean((pred[..., m] - yb) ** 2)
            else:
                diff = yb[..., None] - pred
                loss = torch.mean(torch.maximum(self.q * diff, (self.q - 1.0) * diff))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if s.clip_norm:
                nn.utils.clip_grad_norm_(model.parameters(), s.clip_norm)
            opt.step()
            if sched is not None:
                sched.step()
        return float(loss.detach())
