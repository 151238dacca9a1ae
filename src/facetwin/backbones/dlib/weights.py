"""Read dlib's ``dlib_face_recognition_resnet_model_v1.dat`` without dlib, check it, cache it as safetensors.

dlib serialises a network from the outside in: each layer writes its own version number, then its whole
sub-network, then its own details, so in the byte stream the layer headers come outermost first and the layer
details innermost first. Primitive values (learned from dlib's ``serialize.h``):

- integers: one control byte (low nibble = number of bytes, bit 0x80 = negative), then little-endian bytes;
- floating point numbers: an int64 mantissa and an int16 exponent, both as integers (value = m * 2**e);
- strings: a length, then the bytes; bools: the character ``'0'`` or ``'1'``;
- tensors: version 2, four int64 dimensions (n, k, rows, cols), then float32 little endian; "alias tensors"
  (views into a layer's parameters) store only version 1 and the four dimensions.

The layer sequence is fixed by the network definition (see :mod:`facetwin.backbones.dlib`); every version string,
kernel size, stride and padding in the file is checked against it. Batch-norm layers saved as ``bn_con2`` are
turned into per-channel affine transforms the way dlib does (``gamma / sqrt(var + eps)``). Each convolution is
followed by an affine layer, which is folded into the convolution's weights and bias.

The first use converts the file into ``$FACETWIN_HOME/weights/dlib_resnet_v1.safetensors`` (metadata records the
``.dat`` SHA-256); later loads read that file after checking the ``.dat`` hash still matches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from facetwin.core import paths
from facetwin.core.paths import sha256_file
from facetwin.errors import FacetwinError

MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
MODEL_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"  # face-recognition-models 0.3.0
CACHE_FILE = "dlib_resnet_v1.safetensors"
FORMAT = "facetwin-dlib-resnet-1"
INSTALL_HINT = "pip install face-recognition-models (or, in a facetwin checkout, pip install -e '.[dlib]')"

# (channels, blocks, first block downsamples) per stage, in forward order (dlib's alevel4 .. alevel0).
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))
EMBEDDING_DIM = 128


class DatError(FacetwinError):
    """The ``.dat`` file is not the network this parser knows."""


class _Reader:
    """Primitive values of dlib's serialisation format, read from a byte string."""

    def __init__(self, data: bytes, name: str) -> None:
        self.data, self.pos, self.name = data, 0, name

    def fail(self, what: str) -> DatError:
        return DatError(f"{self.name}: {what} at byte {self.pos}; it is not dlib's face recognition ResNet v1.")

    def int(self) -> int:
        if self.pos >= len(self.data):
            raise self.fail("unexpected end of file")
        control = self.data[self.pos]
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70:
            raise self.fail(f"bad integer control byte {control:#04x}")
        raw = self.data[self.pos + 1 : self.pos + 1 + size]
        if len(raw) != size:
            raise self.fail("unexpected end of file")
        self.pos += 1 + size
        value = int.from_bytes(raw, "little")
        return -value if control & 0x80 else value

    def float(self) -> float:
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            raise self.fail("a floating point number in dlib's old text format")
        mantissa, exponent = self.int(), self.int()
        if exponent >= 32000:  # dlib's markers for inf, -inf, nan
            return {32000: float("inf"), 32001: float("-inf")}.get(exponent, float("nan"))
        return float(np.ldexp(float(mantissa), exponent))

    def string(self) -> str:
        size = self.int()
        raw = self.data[self.pos : self.pos + size]
        if len(raw) != size:
            raise self.fail("unexpected end of file")
        self.pos += size
        return raw.decode("latin-1")

    def bool(self) -> bool:
        char = self.data[self.pos : self.pos + 1]
        if char not in (b"0", b"1"):
            raise self.fail("bad bool")
        self.pos += 1
        return char == b"1"

    def version(self, expected: int | tuple[int, ...], what: str) -> int:
        value = self.int()
        if value not in ((expected,) if isinstance(expected, int) else expected):
            raise self.fail(f"{what} version {value}, expected {expected}")
        return value

    def tag(self, allowed: tuple[str, ...]) -> str:
        value = self.string()
        if value not in allowed:
            raise self.fail(f"layer '{value}', expected {' or '.join(allowed)}")
        return value

    def dims(self) -> tuple[int, int, int, int]:
        return (self.int(), self.int(), self.int(), self.int())

    def tensor(self) -> np.ndarray:
        self.version(2, "tensor")
        dims = self.dims()
        count = int(np.prod(dims))
        end = self.pos + 4 * count
        if end > len(self.data):
            raise self.fail("unexpected end of file in a tensor")
        values = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.pos).reshape(dims)
        self.pos = end
        return values.astype(np.float32)

    def alias(self) -> tuple[int, int, int, int]:
        self.version(1, "alias tensor")
        return self.dims()


@dataclass
class Layer:
    """One layer of the network: its kind, geometry (for checking) and parameters once read."""

    kind: str  # loss, fc, relu, add_prev, affine, con, tag, skip, avg_pool, max_pool, input
    geometry: tuple = ()  # con: (filters, size, stride); pools: (size, stride); fc: (outputs,)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def _block(channels: int, down: bool) -> list[Layer]:
    """dlib's ``ares`` / ``ares_down`` from the outside in (``ares_down`` skips through a 2×2 average pool)."""
    skip = [Layer("avg_pool", (2, 2)), Layer("skip"), Layer("tag")] if down else []
    body = [Layer("affine"), Layer("con", (channels, 3, 1)), Layer("relu"), Layer("affine")]
    return [Layer("relu"), Layer("add_prev"), *skip, *body, Layer("con", (channels, 3, 2 if down else 1)), Layer("tag")]


def network_layers() -> list[Layer]:
    """The layers of dlib's face recognition ResNet v1, outermost (loss) first, innermost (input) last."""
    layers = [Layer("loss"), Layer("fc", (EMBEDDING_DIM,)), Layer("avg_pool", (0, 1))]
    for channels, blocks, down in reversed(STAGES):
        for index in reversed(range(blocks)):
            layers += _block(channels, down and index == 0)
    layers += [Layer("max_pool", (3, 2)), Layer("relu"), Layer("affine"), Layer("con", (32, 7, 2)), Layer("input")]
    return layers


def _padding(size: int, stride: int) -> int:
    return size // 2 if stride == 1 else 0  # dlib's default for convolutions and pools


def _read_details(r: _Reader, layer: Layer) -> None:
    kind = layer.kind
    if kind == "relu":
        if r.tag(("relu_", "relu_2")) == "relu_2" and r.bool():
            raise r.fail("a disabled relu")
    elif kind == "add_prev":
        r.tag(("add_prev_",))
    elif kind in ("avg_pool", "max_pool"):
        r.tag((f"{kind}_2",))
        size, stride = layer.geometry
        found = r.dims() + (r.int(), r.int())  # rows, cols, stride y, stride x, padding y, padding x
        pad = 0 if size == 0 else _padding(size, stride)
        if found != (size, size, stride, stride, pad, pad):
            raise r.fail(f"{kind} geometry {found}")
    elif kind == "con":
        _read_con(r, layer)
    elif kind == "affine":
        _read_affine(r, layer)
    elif kind == "fc":
        _read_fc(r, layer)
    else:  # pragma: no cover - network_layers() yields no other kind here
        raise AssertionError(kind)


def _read_con(r: _Reader, layer: Layer) -> None:
    version = r.tag(("con_4", "con_5", "con_6"))
    params = r.tensor().reshape(-1)
    filters, size, stride = layer.geometry
    found = (r.int(), r.int(), r.int(), r.int(), r.int(), r.int(), r.int())
    pad = _padding(size, stride)
    if found != (filters, size, size, stride, stride, pad, pad):
        raise r.fail(f"convolution geometry {found}")
    shape, bias_shape = r.alias(), r.alias()
    for _ in range(4):  # learning-rate and weight-decay multipliers
        r.float()
    use_bias = r.bool() if version in ("con_5", "con_6") else True
    if version == "con_6" and r.bool():
        raise r.fail("a convolution with a fused relu")
    count = int(np.prod(shape))
    if shape[0] != filters or shape[2:] != (size, size) or not use_bias or params.size != count + filters:
        raise r.fail(f"convolution parameters {shape} / {bias_shape} / {params.size}")
    layer.arrays = {"weight": params[:count].reshape(shape), "bias": params[count:]}


def _read_affine(r: _Reader, layer: Layer) -> None:
    version = r.tag(("affine_", "affine_2", "bn_con2"))
    params = r.tensor().reshape(-1)
    channels = int(np.prod(r.alias()))
    r.alias()
    gamma, beta = params[:channels], params[channels : 2 * channels]
    if version == "bn_con2":
        for _ in range(2):  # batch statistics of the last training step
            r.tensor()
        mean, var = r.tensor().reshape(-1), r.tensor().reshape(-1)
        r.int(), r.int()  # number of updates, running-statistics window
        for _ in range(4):
            r.float()
        eps = np.float32(r.float())
        gamma = gamma / np.sqrt(var + eps)
        beta = beta - gamma * mean
    else:
        if r.int() != 0:  # layer mode: 0 = convolutional (per channel), 1 = fully connected
            raise r.fail("an affine layer not in convolution mode")
        if version == "affine_2" and r.bool():
            raise r.fail("a disabled affine layer")
    layer.arrays = {"gamma": gamma.astype(np.float32), "beta": beta.astype(np.float32)}


def _read_fc(r: _Reader, layer: Layer) -> None:
    r.tag(("fc_2", "fc_3"))
    outputs, inputs = r.int(), r.int()
    params = r.tensor().reshape(-1)
    shape = r.alias()
    r.alias()
    if r.int() != 1:  # bias mode 1 = no bias (fc_no_bias)
        raise r.fail("a fully connected layer with a bias")
    for _ in range(4):
        r.float()
    if outputs != layer.geometry[0] or shape[:2] != (inputs, outputs) or params.size != inputs * outputs:
        raise r.fail(f"fully connected shape {shape}")
    layer.arrays = {"weight": params.reshape(inputs, outputs).T.copy()}


def _read_input(r: _Reader, layer: Layer) -> None:
    r.tag(("input_rgb_image_sized",))
    layer.arrays = {"mean_rgb": np.array([r.float(), r.float(), r.float()], np.float32)}
    if (r.int(), r.int()) != (150, 150):
        raise r.fail("an input size other than 150×150")


def _skip_state(r: _Reader, tensors: int, expansion: bool) -> None:
    """The training state dlib stores after each layer's details: three flags, gradient and output buffers."""
    for _ in range(3):
        r.bool()
    for _ in range(tensors):
        r.tensor()
    if expansion:
        r.int()  # sample expansion factor


def parse(data: bytes, name: str = MODEL_FILE) -> list[Layer]:
    """All layers of the network in ``data`` (outermost first), parameters filled in and checked."""
    r = _Reader(data, name)
    layers = network_layers()
    versions: dict[int, int] = {}
    for index, layer in enumerate(layers[:-2]):  # headers, outside in
        if layer.kind == "loss":
            r.version(1, "loss layer")
            if r.tag(("loss_metric_", "loss_metric_2")) == "loss_metric_2":
                r.float(), r.float()  # margin and distance threshold of the training loss
        elif layer.kind in ("tag", "skip"):
            r.version(1, layer.kind)
        else:
            versions[index] = r.version((1, 2), "layer")
    input_version = r.version((2, 3), "input layer")  # the innermost layer also holds the input layer
    _read_input(r, layers[-1])
    _read_details(r, layers[-2])
    _skip_state(r, tensors=3, expansion=input_version >= 3)
    for index in sorted(versions, reverse=True):  # details, inside out
        _read_details(r, layers[index])
        _skip_state(r, tensors=3 if versions[index] == 2 else 2, expansion=False)
    if r.pos != len(data):
        raise r.fail(f"{len(data) - r.pos} bytes left over")
    return layers


def to_state_dict(layers: list[Layer]) -> dict[str, torch.Tensor]:
    """The parsed layers as the state dict of :class:`facetwin.backbones.dlib.DlibResNet` (affines folded)."""
    forward = list(reversed(layers))
    convs: list[dict[str, np.ndarray]] = []
    for layer, following in zip(forward, forward[1:], strict=False):
        if layer.kind == "con":
            if following.kind != "affine":
                raise DatError(f"{MODEL_FILE}: a convolution not followed by an affine layer.")
            gamma, beta = following.arrays["gamma"], following.arrays["beta"]
            weight = layer.arrays["weight"] * gamma[:, None, None, None]
            convs.append({"weight": weight, "bias": layer.arrays["bias"] * gamma + beta})
    names = ["stem"] + [
        f"stages.{s}.{b}.conv{i}" for s, (_, blocks, _) in enumerate(STAGES) for b in range(blocks) for i in (1, 2)
    ]
    state = {"mean_rgb": torch.from_numpy(forward[0].arrays["mean_rgb"].copy())}
    for name, conv in zip(names, convs, strict=True):
        state[f"{name}.weight"] = torch.from_numpy(np.ascontiguousarray(conv["weight"], dtype=np.float32))
        state[f"{name}.bias"] = torch.from_numpy(np.ascontiguousarray(conv["bias"], dtype=np.float32))
    state["fc.weight"] = torch.from_numpy(layers[1].arrays["weight"])
    return state


def find_dat() -> Path:
    """The ``.dat`` file inside the installed ``face-recognition-models`` wheel (its package is not imported:
    it needs ``pkg_resources``)."""
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "models" / MODEL_FILE
        if path.is_file():
            return path
    raise FacetwinError(f"the dlib backbone needs {MODEL_FILE} from the face-recognition-models wheel: {INSTALL_HINT}.")


@dataclass(frozen=True)
class LoadedWeights:
    """A :class:`DlibResNet` state dict and the ``.dat`` file it came from."""

    state_dict: dict[str, torch.Tensor]
    sha256: str  # SHA-256 of the .dat file
    source: Path


def load(dat: str | Path | None = None) -> LoadedWeights:
    """The network's weights: from the safetensors cache when it was made from this ``.dat``, else parsed.

    ``dat`` defaults to the file in the ``face-recognition-models`` wheel; its SHA-256 must be the published one.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file, save

    source = Path(dat) if dat else find_dat()
    if not source.is_file():
        raise FacetwinError(f"{source}: no such file.")
    digest = sha256_file(source)
    if digest != MODEL_SHA256:
        raise FacetwinError(
            f"{source} has SHA-256 {digest[:12]}…, not the {MODEL_FILE} of face-recognition-models "
            f"({MODEL_SHA256[:12]}…); reinstall it with {INSTALL_HINT}."
        )
    cache = paths.home() / "weights" / CACHE_FILE
    if cache.is_file():
        try:
            with safe_open(str(cache), framework="pt") as handle:
                metadata = dict(handle.metadata() or {})
            if metadata.get("format") == FORMAT and metadata.get("source_sha256") == digest:
                return LoadedWeights(load_file(str(cache)), digest, source)
        except (OSError, ValueError, RuntimeError):
            pass  # a damaged cache is rebuilt below
    state = to_state_dict(parse(source.read_bytes(), source.name))
    metadata = {"format": FORMAT, "source_sha256": digest, "source": source.name}
    paths.atomic_write_bytes(cache, save(state, metadata=metadata))
    return LoadedWeights(state, digest, source)
