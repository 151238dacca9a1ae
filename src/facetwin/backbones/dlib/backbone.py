"""dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) in PyTorch: 150×150 chips → 128-d.

The network, as dlib defines it (``dnn_face_recognition_ex.cpp``), in forward order:

- input: RGB minus the mean pixel stored in the file (122.782, 117.001, 104.298), divided by 256;
- stem: 7×7 convolution, 32 filters, stride 2, no padding; affine; relu; 3×3 max pool, stride 2, no padding;
- five stages of residual blocks (channels × blocks): 32×3, 64×4, 128×3, 256×3, 256×1. A block is
  ``relu(conv(relu(conv(x))) + skip(x))`` with 3×3 convolutions (each followed by an affine layer, folded into it
  here). The first block of every stage but the first downsamples: its first convolution has stride 2 and no
  padding, and its skip path is a 2×2 average pool, stride 2. dlib adds tensors of different shapes by padding
  the smaller one with zeros at the end of every dimension (more channels; 3×3 + 4×4 → 4×4), and so does this;
- global average pool, then a 128×256 linear layer without bias: the descriptor.

dlib compares descriptors by Euclidean distance (0.6 is its usual threshold). The trunk here is the descriptor;
the pretrained head is L2 normalisation, with cosine distance (calibrated on lfw-dev: ``backbones/calibrations.py``).
Trainable: :class:`DlibResNet` is a plain ``nn.Module`` (``DlibBackbone.network``, frozen by default);
``stages[4]`` is its last residual stage.

The weights are read from the ``.dat`` of the ``face-recognition-models`` wheel by facetwin's own parser
(:mod:`facetwin.backbones.dlib.weights`) and cached as safetensors; dlib itself is not needed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from facetwin.backbones.base import Cut, InputSpec, MetricBackbone, crop_batch
from facetwin.backbones.calibrations import calibration_of
from facetwin.backbones.dlib import weights as W
from facetwin.core import precision as _precision
from facetwin.errors import FacetwinError
from facetwin.vision.dlib_chip import PADDING, YUNET_TEMPLATE

CHIP_SIZE = 150
BATCH_SIZE = 32
# fp32 (default): dlib's descriptors to ~1e-6. bf16: autocast, min cosine 0.99996 to fp32 on 64 lfw-dev chips and
# about twice as fast on CPUs with native bf16 (benchmarks/dlib_speed.py); auto = bf16 on such CPUs, else fp32.
PRECISIONS = ("auto", "fp32", "bf16")

# Measured on lfw-dev (3,000 pairs, cosine distance of the L2-normalised descriptors, chips from YuNet landmarks):
#   python benchmarks/calibrate_backbones.py --backbone dlib


def _add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a + b`` where the smaller tensor is zero-padded at the end of channels, rows and columns (dlib's add)."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(x, y) for x, y in zip(a.shape[1:], b.shape[1:], strict=True))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return pad(a) + pad(b)


class ResidualBlock(nn.Module):
    """dlib's ``ares`` (``down=False``) or ``ares_down`` (stride 2, average-pool skip) with folded affines."""

    def __init__(self, inputs: int, channels: int, down: bool) -> None:
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(inputs, channels, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        skip = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_add_padded(y, skip))


class DlibResNet(nn.Module):
    """The whole network: ``(N, 3, 150, 150)`` RGB float 0–255 → ``(N, 128)`` dlib descriptors.

    ``stages[4]`` is the last residual stage (dlib's ``alevel0``), ``fc`` the final linear layer.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean_rgb", torch.zeros(3))
        self.stem = nn.Conv2d(3, 32, 7, stride=2)
        stages, inputs = [], 32
        for channels, blocks, down in W.STAGES:
            stages.append(nn.Sequential(*(ResidualBlock(inputs if i == 0 else channels, channels, down and i == 0)
                                          for i in range(blocks))))
            inputs = channels
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(inputs, W.EMBEDDING_DIM, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean_rgb.view(1, 3, 1, 1)) / 256.0
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        for stage in self.stages:
            x = stage(x)
        return self.fc(x.mean(dim=(2, 3)))


def load_network(dat: str | None = None) -> tuple[DlibResNet, str]:
    """A :class:`DlibResNet` in eval mode with the weights of ``dat`` (default: the wheel's file), and its SHA-256."""
    loaded = W.load(dat)
    network = DlibResNet()
    network.load_state_dict(loaded.state_dict)
    return network.eval(), loaded.sha256


class DlibBackbone(MetricBackbone):
    """dlib's ResNet as a facetwin backbone: dlib's 150×150 chips (from YuNet landmarks) → 128-d, batched."""

    name = "dlib"
    input = InputSpec(CHIP_SIZE, "dlib")
    feature_dim = W.EMBEDDING_DIM
    embedding_dim = W.EMBEDDING_DIM
    calibration = calibration_of("dlib")  # measured on lfw-dev (backbones/calibrations.py)

    def __init__(self, precision: str = "fp32", batch_size: int = BATCH_SIZE, weights: str | None = None) -> None:
        if precision not in PRECISIONS:
            raise FacetwinError(f"unknown precision '{precision}' for dlib; choose one of: {', '.join(PRECISIONS)}.")
        self.precision = "fp32" if _precision.resolve(precision) == "fp32" else "bf16"
        self.batch_size = max(1, int(batch_size))
        self.network, self.weights_sha256 = load_network(weights)
        self.network.requires_grad_(False).to(memory_format=torch.channels_last)

    def _tensor(self, crops: np.ndarray) -> torch.Tensor:
        if crops.shape[1:3] != (CHIP_SIZE, CHIP_SIZE):
            import cv2

            crops = np.stack([cv2.resize(c, (CHIP_SIZE, CHIP_SIZE), interpolation=cv2.INTER_AREA) for c in crops])
        return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float()  # channels-last view

    def trunk(self, crops: np.ndarray) -> np.ndarray:
        crops = crop_batch(crops, "the dlib backbone", "(N, 150, 150, 3)")
        out = np.empty((len(crops), self.feature_dim), dtype=np.float32)
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=self.precision == "bf16"):
            for start in range(0, len(crops), self.batch_size):
                batch = self._tensor(crops[start : start + self.batch_size])
                out[start : start + len(batch)] = self.network(batch).float().numpy()
        return out

    def cut(self, where) -> Cut:
        """Trainable from a residual stage or ``fc`` (``dlib/cut.py``)."""
        from facetwin.backbones.dlib.cut import dlib_cut

        return dlib_cut(self, where)

    def describe(self) -> dict:
        crop = {"size": self.input.size, "alignment": self.input.alignment, "padding": PADDING,
                "yunet_template": YUNET_TEMPLATE.round(4).tolist()}
        return self._description(
            file=W.MODEL_FILE,
            preprocess="rgb 0-255 minus the file's mean pixel, /256",
            input=crop,
            runtime=f"pytorch {self.precision} (affines folded into convolutions)",
        )

    def __repr__(self) -> str:
        return f"DlibBackbone(weights={self.weights_sha256[:12]}, threshold={self.calibration.threshold})"
