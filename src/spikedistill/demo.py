"""The embedded default: train a small spiking CNN on scikit-learn's bundled 8x8 digits.

Runs offline in well under a minute on 2 CPU cores and prints test accuracy per epoch.
"""

from __future__ import annotations

import time

import torch
from torch import nn
from tqdm import tqdm

from .models import build_model


def load_digits_tensors(seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Digits as ``[N, 1, 8, 8]`` floats (normalised) and labels; a fixed 80/20 split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = (x - x.mean()) / x.std()
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = len(y) // 5
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return (model(x).argmax(1) == y).float().mean().item()


def run_demo(epochs: int = 8, T: int = 4, batch_size: int = 64, seed: int = 0) -> float:
    torch.manual_seed(seed)
    x_train, y_train, x_test, y_test = load_digits_tensors(seed)
    model = build_model("convnet3", 10, spiking=True, T=T, in_channels=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    print(f"spiking convnet3 (T={T}) on digits: {len(y_train)} train / {len(y_test)} test")
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(y_train))
        batches = order.split(batch_size)
        for idx in tqdm(batches, desc=f"epoch {epoch}/{epochs}", leave=False):
            loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        acc = accuracy(model, x_test, y_test)
        print(f"epoch {epoch}: loss {loss.item():.3f}  test top-1 {100 * acc:.2f}%")
    print(f"done in {time.perf_counter() - start:.1f}s; final test top-1 {100 * acc:.2f}%")
    return acc
