"""Reading EdgeFace weight files without pickle code: ``torch.load(weights_only=True)``, checked, as a float network.

Idiap publishes two forms, both state dicts of the wrapper :class:`~.network.EdgeFace` mirrors:

- quantised (``edgeface_xs_q.pt``, ``edgeface_xxs_q.pt``): saved after
  ``torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, torch.qint8)``. Each linear layer is stored as
  ``NAME.scale``, ``NAME.zero_point`` (unused by dynamic quantisation), ``NAME._packed_params.dtype`` (qint8) and
  ``NAME._packed_params._packed_params`` = (per-tensor qint8 weight, float bias). ``weights_only=True`` reads
  these: its unpickler rebuilds quantised tensors, ``torch.dtype`` and ``Parameter`` and nothing else. Each
  linear becomes a float ``nn.Linear`` with the dequantised weight ``(q - zero_point) * scale``;
- float (``edgeface_xxs.pt``): ``NAME.weight`` and ``NAME.bias`` as they are.

The file is recognised by its SHA-256 (:data:`KNOWN`) and, failing that, by its keys and shapes: the stem's width
tells the variant, packed parameters the form; then the float state dict must load into the variant's network
with ``strict=True``. Anything else (another network, a truncated file, not a torch file) raises one
:class:`~facetwin.errors.FacetwinError` sentence naming the file and the problem.
"""

from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from facetwin.backbones.edgeface.network import VARIANTS, EdgeFace
from facetwin.core.paths import sha256_file
from facetwin.errors import FacetwinError

# sha256 -> (variant, form) of Idiap's published files
KNOWN = {
    "a31314377876ab9fa2a75e5638bc528efe79fd17d5c9c0a228fb7f846d7581a6": ("xs", "quantised"),  # edgeface_xs_q.pt
    "46be7cc7e8d6e23501c0627fe5fbef101922ee9b85ccbef476987ab1a320b053": ("xxs", "quantised"),  # edgeface_xxs_q.pt
    "5b6bac48ea660aca185be8a8ac934db2093b51259461721da53c468230bc24c9": ("xxs", "float"),  # edgeface_xxs.pt
}
PACKED = "._packed_params._packed_params"
STEM = "model.stem.0.weight"
NAMES = {"xs": "EdgeFace-XS", "xxs": "EdgeFace-XXS"}


@dataclass(frozen=True)
class EdgeFaceWeights:
    """A loaded file: the float ``network`` (eval mode), its ``variant`` (xs/xxs), ``form`` (quantised/float),
    ``sha256`` and ``path``."""

    network: EdgeFace
    variant: str
    form: str
    sha256: str
    path: Path


def _reason(exc: Exception) -> str:
    """What a failed ``torch.load(weights_only=True)`` means, in a few words."""
    text = str(exc)
    if isinstance(exc, EOFError):
        return "it ends early: empty or truncated"
    if "zip archive" in text:
        return "truncated, or not a zip archive as torch.save writes"
    if "Unsupported global" in text:
        return "it holds Python objects, such as a whole pickled model, which loading without pickle code refuses"
    if isinstance(exc, pickle.UnpicklingError):
        return "no valid pickle stream"
    return f"{type(exc).__name__}: {text.splitlines()[0][:80] if text else 'no detail'}"


def _read(path: Path) -> dict:
    """The state dict in ``path`` by the weights-only unpickler, or an error naming the file."""
    if not path.is_file():
        raise FacetwinError(f"{path}: no such EdgeFace weights file.")
    try:
        with warnings.catch_warnings():  # torch 2.13 deprecates quantised tensors and TypedStorage; both load
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip errors, truncation, pickle refusals: all mean "not a usable torch file"
        raise FacetwinError(f"{path}: not a readable PyTorch weights file ({_reason(exc)}).") from None
    if not isinstance(state, dict) or not all(isinstance(key, str) for key in state):
        raise FacetwinError(f"{path}: holds a {type(state).__name__}, not the state dict of an EdgeFace network.")
    return state


def _packed_pair(value) -> bool:
    return (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], torch.Tensor)
            and value[0].is_quantized and value[0].dtype == torch.qint8 and isinstance(value[1], torch.Tensor))


def float_state_dict(state: dict, path: Path) -> dict[str, torch.Tensor]:
    """The float state dict of a quantised or float one: every packed linear as ``weight`` (dequantised) and
    ``bias``; any other value must be a float tensor."""
    out: dict[str, torch.Tensor] = {}
    packed = {key[: -len(PACKED)] for key in state if key.endswith(PACKED)}
    for key, value in state.items():
        if key.endswith(PACKED):
            if not _packed_pair(value):
                raise FacetwinError(f"{path}: {key} is not the (qint8 weight, bias) pair of a quantised linear layer.")
            name = key[: -len(PACKED)]
            out[f"{name}.weight"] = value[0].dequantize().contiguous()
            out[f"{name}.bias"] = value[1].detach().float()
        elif key.rsplit(".", 1)[0].removesuffix("._packed_params") in packed:
            continue  # scale, zero_point and _packed_params.dtype of a packed layer: the float layer needs none
        elif not isinstance(value, torch.Tensor) or not value.is_floating_point():
            kind = value.dtype if isinstance(value, torch.Tensor) else type(value).__name__
            raise FacetwinError(f"{path}: {key} is a {kind}, not a float tensor.")
        else:
            out[key] = value.float()
    return out


def identify(state: dict, sha256: str) -> tuple[str, str]:
    """``(variant, form)`` of a state dict: by ``sha256`` where known, else by the stem's width and packed keys."""
    if sha256 in KNOWN:
        return KNOWN[sha256]
    form = "quantised" if any(key.endswith(PACKED) for key in state) else "float"
    stem = state.get(STEM)
    width = stem.shape[0] if isinstance(stem, torch.Tensor) and stem.ndim == 4 else None
    variant = next((name for name, v in VARIANTS.items() if v.dims[0] == width), None)
    return variant or "", form


def load(path: str | Path, variant: str | None = None) -> EdgeFaceWeights:
    """The float EdgeFace network of a weights file (quantised or float), checked; ``variant`` (xs/xxs), when
    given, must be the file's."""
    path = Path(path)
    state = _read(path)
    sha256 = sha256_file(path)
    found, form = identify(state, sha256)
    if not found:
        if any(".linear1." in key for key in state):
            raise FacetwinError(f"{path}: holds a low-rank EdgeFace (the gamma variants), which facetwin does not run.")
        raise FacetwinError(f"{path}: is not an EdgeFace-XS or -XXS state dict (no stem of width 32 or 24 at {STEM}).")
    if variant is not None and variant != found:
        raise FacetwinError(f"{path}: holds {NAMES[found]} weights, not {NAMES.get(variant, variant)}.")
    weights = float_state_dict(state, path)
    network = EdgeFace(found)
    expected = network.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = [key for key in expected if key in weights and tuple(weights[key].shape) != tuple(expected[key].shape)]
    if missing or unexpected or wrong:
        first = (missing and f"lacks {missing[0]}") or (unexpected and f"has an unknown key {unexpected[0]}") or (
            f"has {wrong[0]} of shape {tuple(weights[wrong[0]].shape)}, not {tuple(expected[wrong[0]].shape)}")
        count = len(missing) + len(unexpected) + len(wrong)
        raise FacetwinError(f"{path}: is not an {NAMES[found]} state dict: it {first} ({count} mismatches in all).")
    network.load_state_dict(weights, strict=True)
    return EdgeFaceWeights(network.eval(), found, form, sha256, path)


def recognise_xs(path: str | Path) -> str:
    """The form (``quantised`` or ``float``) of an EdgeFace-XS weights file, after loading it strictly (the
    registry's ``WeightsFile.recognise``); any other file raises a :class:`FacetwinError` naming it."""
    return load(path, "xs").form


def recognise_xxs(path: str | Path) -> str:
    """As :func:`recognise_xs`, for EdgeFace-XXS."""
    return load(path, "xxs").form


__all__ = ["KNOWN", "EdgeFaceWeights", "float_state_dict", "identify", "load", "recognise_xs", "recognise_xxs"]
