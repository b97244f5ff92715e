"""A small user model for the bring-your-own-model test: 8x8 digit images -> 10 classes.

This file is archived as is (make archive-custom MODEL_FILE=...), the way a user's own would be.
"""

from torch import nn


class DigitsNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.layers(x)
