"""EfficientNet-Lite0 for TorchServe's stock `image_classifier` handler (the benchmark's baseline).

The stock handler imports this file and builds its one class with no arguments, then loads the
state_dict with torch.load; the benchmark saves the bundle's own weights under the `net.` prefix.
"""

import timm
import torch
from torch import nn


class EfficientNetLite0(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
