"""Import deepface's ``vgg_face_weights.h5`` without TensorFlow, check it, and cache it as safetensors.

deepface loads the file with Keras' ``model.load_weights``, which matches layers by order: the root
attribute ``layer_names`` lists every layer (38 for deepface's model, weighted or not), and the group
of a weighted layer has an attribute ``weight_names`` (kernel, bias) naming its datasets. Files written
by ``model.save`` put the same tree under a group ``model_weights``; both layouts load here. Names
differ between Keras versions (``conv2d`` vs ``conv2d_1``), so only the order and the shapes matter: 16
weighted layers, kernels ``(kh, kw, in, out)``, biases ``(out,)``.

The first import converts the file once into ``$FACETWIN_HOME/weights/`` (safetensors, PyTorch layout,
metadata records the source file's SHA-256); later loads read the converted file.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from facetwin.backbones.vggface.network import WEIGHTED_LAYERS, LayerSpec
from facetwin.core import paths
from facetwin.core.paths import sha256_file
from facetwin.errors import FacetwinError

WEIGHTS_URL = "https://github.com/serengil/deepface_models/releases/download/v1.0/vgg_face_weights.h5"
DEFAULT_FILENAME = "vggface.safetensors"
FORMAT = "facetwin-vggface-1"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
IMPORT_HINT = (
    f"download {WEIGHTS_URL} by hand (e.g. with a browser or `curl -L -O URL`) and run "
    "`facetwin weights import vggface vgg_face_weights.h5`"
)


def state_dict_keys() -> list[str]:
    """The parameter names of :class:`VGGFace` in Keras weight order (kernel, bias per weighted layer)."""
    keys = []
    for spec in WEIGHTED_LAYERS:
        keys += [f"layers.{spec.index}.weight", f"layers.{spec.index}.bias"]
    return keys


def torch_weight_shape(spec: LayerSpec) -> tuple[int, ...]:
    """The PyTorch shape of a weighted layer's weight."""
    if spec.kind == "conv":
        return (spec.out_channels, spec.in_channels, 3, 3)
    return (spec.out_channels, spec.kernel * spec.kernel * spec.in_channels)


def keras_kernel_to_torch(spec: LayerSpec, kernel: torch.Tensor) -> torch.Tensor:
    """Keras ``(kh, kw, in, out)`` kernel to this module's weight (conv ``(out, in, kh, kw)``; dense
    ``(out, kh*kw*in)`` in NHWC flatten order)."""
    if spec.kind == "conv":
        return kernel.permute(3, 2, 0, 1).contiguous()
    return kernel.reshape(-1, spec.out_channels).t().contiguous()


@dataclass(frozen=True)
class LoadedWeights:
    """A VGG-Face state dict in PyTorch layout plus where it came from."""

    state_dict: dict[str, torch.Tensor]
    sha256: str  # SHA-256 of the source HDF5 file (or of the safetensors file when the source is unknown)
    path: Path  # the file the tensors were read from
    source: str  # the original file name


def weights_dir() -> Path:
    """``$FACETWIN_HOME/weights`` (created on demand)."""
    folder = paths.home() / "weights"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def default_path() -> Path:
    """Where ``facetwin weights import vggface FILE`` puts the converted weights."""
    return paths.home() / "weights" / DEFAULT_FILENAME


def _decode(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_keras_h5(path: str | Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The 16 ``(layer name, kernel, bias)`` triples of a deepface VGG-Face HDF5 file, checked.

    Raises :class:`FacetwinError` (one sentence) when the file is not HDF5, is truncated, holds another
    number of weighted layers, or a kernel/bias of the wrong shape.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FacetwinError(f"{path}: no such file.")
    with open(path, "rb") as handle:
        head = handle.read(len(HDF5_SIGNATURE))
    if head != HDF5_SIGNATURE and not h5py.is_hdf5(str(path)):
        raise FacetwinError(f"{path} is not an HDF5 file (expected deepface's vgg_face_weights.h5).")
    size = path.stat().st_size
    try:
        with h5py.File(path, "r") as handle:
            root = handle["model_weights"] if "model_weights" in handle else handle
            if "layer_names" not in root.attrs:
                raise FacetwinError(
                    f"{path} is an HDF5 file but not a Keras weights file (no 'layer_names' attribute)."
                )
            weighted: list[tuple[str, list[str]]] = []
            for raw in root.attrs["layer_names"]:
                name = _decode(raw)
                group = root[name]
                names = [_decode(n) for n in group.attrs.get("weight_names", [])]
                if names:
                    weighted.append((name, names))
            if len(weighted) != len(WEIGHTED_LAYERS):
                raise FacetwinError(
                    f"{path} has {len(weighted)} weighted layers, but deepface's VGG-Face has "
                    f"{len(WEIGHTED_LAYERS)} (13 convolutions, fc6, fc7, fc8)."
                )
            result = []
            for position, ((name, names), spec) in enumerate(zip(weighted, WEIGHTED_LAYERS, strict=True), 1):
                if len(names) != 2:
                    raise FacetwinError(
                        f"{path}: layer '{name}' (weighted layer {position} of 16, {spec.name}) has "
                        f"{len(names)} weight arrays, expected 2 (kernel and bias)."
                    )
                group = root[name]
                kernel_ds, bias_ds = group[names[0]], group[names[1]]
                for what, dataset, expected in (
                    ("kernel", kernel_ds, spec.keras_kernel_shape),
                    ("bias", bias_ds, spec.keras_bias_shape),
                ):
                    if tuple(dataset.shape) != expected:
                        raise FacetwinError(
                            f"{path}: layer '{name}' (weighted layer {position} of 16, {spec.name}) {what} "
                            f"has shape {tuple(dataset.shape)}, expected {expected}."
                        )
                kernel = np.asarray(kernel_ds[()], dtype=np.float32)
                bias = np.asarray(bias_ds[()], dtype=np.float32)
                result.append((name, kernel, bias))
    except FacetwinError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        text = str(exc)
        if "truncated" in text:
            stored = re.search(r"stored_eof\s*=\s*(\d+)", text)
            expected = f" of the {int(stored.group(1)):,} it declares" if stored else ""
            raise FacetwinError(f"{path} is truncated: it holds {size:,} bytes{expected}.") from None
        raise FacetwinError(f"{path} is damaged or truncated: HDF5 could not read it ({text}).") from None
    for name, kernel, bias in result:
        if not (np.isfinite(kernel).all() and np.isfinite(bias).all()):
            raise FacetwinError(f"{path}: layer '{name}' holds NaN or infinite values.")
    return result


def check_h5(path: str | Path) -> None:
    """Structural check only (the ``verify`` callback of a download): raises :class:`FacetwinError`."""
    read_keras_h5(path)


def keras_to_state_dict(triples: list[tuple[str, np.ndarray, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Map Keras kernels/biases (by order) to :class:`~facetwin.backbones.vggface.VGGFace` parameters."""
    state: dict[str, torch.Tensor] = {}
    for spec, (_name, kernel, bias) in zip(WEIGHTED_LAYERS, triples, strict=True):
        weight = keras_kernel_to_torch(spec, torch.from_numpy(kernel))
        assert tuple(weight.shape) == torch_weight_shape(spec)
        state[f"layers.{spec.index}.weight"] = weight
        state[f"layers.{spec.index}.bias"] = torch.from_numpy(bias).contiguous()
    return state


def _write_safetensors(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    paths.remove_stale_temps(path)  # a killed import left its half-written copy (hundreds of MB)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=paths.temp_prefix(path), suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata=metadata)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def convert(h5_path: str | Path, out_path: str | Path, *, sha256: str | None = None) -> LoadedWeights:
    """Read and check ``h5_path``, write ``out_path`` (safetensors, atomic), return the loaded weights."""
    h5_path, out_path = Path(h5_path), Path(out_path)
    state = keras_to_state_dict(read_keras_h5(h5_path))
    digest = sha256 or sha256_file(h5_path)
    metadata = {"format": FORMAT, "source_sha256": digest, "source": h5_path.name}
    _write_safetensors(out_path, state, metadata)
    return LoadedWeights(state, digest, out_path, h5_path.name)


def import_h5(h5_path: str | Path) -> LoadedWeights:
    """``facetwin weights import vggface FILE``: convert into the cache as the default VGG-Face weights."""
    return convert(h5_path, default_path())


def _read_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def load_safetensors(path: str | Path) -> LoadedWeights:
    """Load converted weights, checking every tensor's presence and shape."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FacetwinError(f"{path}: no such file.")
    try:
        metadata = _read_metadata(path)
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise FacetwinError(f"{path} is not a readable safetensors file ({exc}).") from None
    for spec in WEIGHTED_LAYERS:
        for key, expected in (
            (f"layers.{spec.index}.weight", torch_weight_shape(spec)),
            (f"layers.{spec.index}.bias", (spec.out_channels,)),
        ):
            if key not in state:
                raise FacetwinError(f"{path} lacks the tensor '{key}' ({spec.name}); it is not VGG-Face weights.")
            if tuple(state[key].shape) != expected:
                raise FacetwinError(
                    f"{path}: tensor '{key}' ({spec.name}) has shape {tuple(state[key].shape)}, expected {expected}."
                )
    extra = sorted(set(state) - set(state_dict_keys()))
    if extra:
        raise FacetwinError(f"{path} holds unexpected tensors ({', '.join(extra[:3])}); it is not VGG-Face weights.")
    digest = metadata.get("source_sha256") or sha256_file(path)
    return LoadedWeights(state, digest, path, metadata.get("source", path.name))


def load(weights: str | Path | None = None) -> LoadedWeights:
    """VGG-Face weights from ``weights`` (an ``.h5`` from deepface or a converted ``.safetensors``), or,
    with ``None``, the weights imported into the cache.

    An HDF5 file is converted once: the result is cached under its SHA-256 and reused afterwards.
    """
    if weights is None:
        path = default_path()
        if not path.is_file():
            raise FacetwinError(
                f"no VGG-Face weights in {path.parent}: run `facetwin weights fetch vggface`, or {IMPORT_HINT}."
            )
        return load_safetensors(path)
    path = Path(weights)
    if not path.is_file():
        raise FacetwinError(f"{path}: no such file.")
    with open(path, "rb") as handle:
        magic = handle.read(len(HDF5_SIGNATURE))
    if magic != HDF5_SIGNATURE and path.suffix.lower() == ".safetensors":
        return load_safetensors(path)
    if magic != HDF5_SIGNATURE:
        import h5py

        if not h5py.is_hdf5(str(path)):
            try:
                json.loads(_safetensors_header(path))
            except (ValueError, OSError):
                raise FacetwinError(
                    f"{path} is not an HDF5 file (expected deepface's vgg_face_weights.h5, "
                    "or weights converted by facetwin)."
                ) from None
            return load_safetensors(path)
    digest = sha256_file(path)
    default = default_path()
    if default.is_file():
        try:
            if _read_metadata(default).get("source_sha256") == digest:
                return load_safetensors(default)
        except Exception:  # a damaged cache file is simply rebuilt below
            pass
    cached = weights_dir() / f"vggface-{digest[:16]}.safetensors"
    if cached.is_file():
        try:
            loaded = load_safetensors(cached)
            if loaded.sha256 == digest:
                return loaded
        except FacetwinError:
            pass
    return convert(path, cached, sha256=digest)


def _safetensors_header(path: Path) -> str:
    with open(path, "rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        if not 0 < size < 100_000_000:
            raise ValueError("bad header size")
        return handle.read(size).decode("utf-8")
