"""InsightFace's ``w600k_mbf.onnx`` as a float32 graph, from the upstream file or its int8 derivative.

The int8 file (``onnxruntime.quantization.quantize_dynamic``) quantises every weight to 8 bits and every
activation at run time: ``DynamicQuantizeLinear(x) → ConvInteger/MatMulInteger → Cast → Mul(scale) → Add(bias)``,
which onnxruntime runs slowly. :func:`dequantize` turns each such chain back into the float node it came from
(``Conv_0_quant`` → ``Conv_0``, ``Gemm_96_MatMul_quant`` → ``Gemm_96``), its weight ``(q - zero) * scale`` a
float32 initializer under the upstream name (``518_quantized`` → ``518``) and its bias the upstream 1-D vector,
so the result has the structure of the upstream float file: 49 ``Conv`` (batch norms folded in), 34 ``PRelu``,
12 residual ``Add``, ``Flatten``, ``Gemm`` (``fc``) and ``BatchNormalization`` (``features``), ``input.1`` →
``516``, batch dimension ``N``.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetwin.core.onnx_graph import _dequantize, fixed_model
from facetwin.errors import FacetwinError

FLOAT_SHA256 = "9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f"  # buffalo_sc w600k_mbf.onnx
INT8_SHA256 = "7caa7fb0ad6c37b33e6c59f6411084b487aaabd596bba645d2cce391a5871120"  # its quantize_dynamic copy
INPUT, OUTPUT = "input.1", "516"
FORMS = {"float": "float", "int8": "int8-dequantised"}  # file form -> what the float graph is (describe())
DYNAMIC_OPS = {"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"}
INTEGER_OPS = DYNAMIC_OPS | {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "QGemm"}
# the op counts of w600k_mbf's float graph: what tells it apart from other networks with the same tensor names
SIGNATURE = Counter({"Conv": 49, "PRelu": 34, "Add": 12, "Flatten": 1, "Gemm": 1, "BatchNormalization": 1})


@dataclass(frozen=True)
class ArcFaceGraph:
    """The float graph of a weights file: ``model`` (``onnx.ModelProto``), the file's ``form`` (``float`` or
    ``int8``, see :data:`FORMS`) and its ``sha256``."""

    model: object
    form: str
    sha256: str


def _values(graph) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {init.name: numpy_helper.to_array(init) for init in graph.initializer}


def _upstream_name(node_name: str, fallback: str) -> str:
    """``Conv_0_quant`` → ``Conv_0``, ``Gemm_96_MatMul_quant`` → ``Gemm_96`` (the quantiser's naming)."""
    match = re.fullmatch(r"(.+?)(?:_MatMul)?_quant", node_name)
    return match.group(1) if match else fallback


def _float_node(node, producers: dict, consumers: dict, values: dict):
    """The float node replacing the chain that starts at the integer ``node`` and the initializers it reads."""
    from onnx import helper, numpy_helper

    def only_consumer(name: str, op: str):
        found = consumers.get(name, [])
        if len(found) != 1 or found[0].op_type != op:
            raise ValueError(f"{name} is not read by exactly one {op}")
        return found[0]

    x_q, w_q, w_zero = node.input[0], node.input[1], node.input[3] if len(node.input) > 3 else ""
    quantise = producers.get(x_q)
    if quantise is None or quantise.op_type != "DynamicQuantizeLinear" or w_q not in values:
        raise ValueError(f"{node.name}: its inputs are not a dynamic quantisation and a constant weight")
    scaled = only_consumer(only_consumer(node.output[0], "Cast").output[0], "Mul")
    scales = producers[next(name for name in scaled.input if name in producers and producers[name].op_type == "Mul")]
    w_scale = values[next(name for name in scales.input if name in values)]
    is_conv = node.op_type == "ConvInteger"
    weight = _dequantize(values[w_q], w_scale, values.get(w_zero), 0 if is_conv else -1, 0)
    out, bias = scaled.output[0], None
    add = consumers.get(out, [])
    if len(add) == 1 and add[0].op_type == "Add":
        other = next(name for name in add[0].input if name != out)
        source = producers.get(other)
        bias_name = source.input[0] if source is not None and source.op_type == "Reshape" else other
        if bias_name in values:
            out, bias = add[0].output[0], numpy_helper.from_array(values[bias_name].reshape(-1), bias_name)
    w_name = w_q.removesuffix("_quantized")
    name = _upstream_name(node.name, out)
    inputs = [quantise.input[0], w_name] + ([bias.name] if bias is not None else [])
    if is_conv:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        new = helper.make_node("Conv", inputs, [out], name=name, **attrs)
    else:  # Gemm as torch exports nn.Linear: weight (out, in), transB=1
        weight = weight.T
        new = helper.make_node("Gemm", inputs, [out], name=name, alpha=1.0, beta=1.0, transB=1)
    made = [numpy_helper.from_array(np.ascontiguousarray(weight, dtype=np.float32), w_name)]
    return new, made + ([bias] if bias is not None else [])


def dequantize(model):
    """Replace every dynamically quantised ``ConvInteger``/``MatMulInteger`` chain of ``model`` by the float
    ``Conv``/``Gemm`` it came from, in place (see the module docstring); unused nodes and initializers go."""
    graph = model.graph
    values = _values(graph)
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    nodes, made = [], {}
    replaced: set[str] = set()  # outputs of the chains' last nodes, now made by the float nodes
    for node in graph.node:
        if node.op_type in ("ConvInteger", "MatMulInteger"):
            new, inits = _float_node(node, producers, consumers, values)
            replaced.add(new.output[0])
            made.update((init.name, init) for init in inits)
            nodes.append(new)
        elif not any(out in replaced for out in node.output):
            nodes.append(node)
    needed, kept = {out.name for out in graph.output}, []
    for node in reversed(nodes):  # keep what the outputs depend on
        if any(out in needed for out in node.output):
            kept.append(node)
            needed.update(node.input)
    old = [init for init in graph.initializer if init.name in needed and init.name not in made]
    del graph.node[:]
    graph.node.extend(reversed(kept))
    del graph.initializer[:]
    graph.initializer.extend(old + [init for name, init in made.items() if name in needed])
    return model


# The tensor each stage of ``network.STAGES`` ends with (the table in network.py); "head" ends at OUTPUT.
STAGE_OUTPUTS = {"stem": "343", "down1": "529", "blocks1": "397", "down2": "574", "blocks2": "473", "down3": "637",
                 "blocks3": "505", "conv_sep": "509", "head": OUTPUT}


def prefix_graph(model, stage: str):
    """The float graph from the input to the end of ``stage`` (an ``onnx.ModelProto``, batch ``N``), or None when
    this graph does not name that stage's tensor as the upstream file does."""
    from onnx import TensorProto, helper

    name = STAGE_OUTPUTS.get(stage)
    if name is None or not any(name in node.output for node in model.graph.node):
        return None
    prefix = type(model)()
    prefix.CopyFrom(model)
    graph = prefix.graph
    needed, kept = {name}, []
    for node in reversed(list(graph.node)):  # the nodes the stage's tensor depends on
        if any(out in needed for out in node.output):
            kept.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    kept_inits = [init for init in graph.initializer if init.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return prefix


def _recognised(model, digest: str, label: str) -> str:
    """``"float"`` or ``"int8"`` for w600k_mbf's upstream graph or its int8 copy; otherwise an error."""
    graph = model.graph
    if digest == FLOAT_SHA256:
        return "float"
    if digest == INT8_SHA256:
        return "int8"
    if not graph.node:
        raise FacetwinError(f"{label}: not an ONNX model (it holds no graph).")
    inputs = [i.name for i in graph.input if i.name not in {init.name for init in graph.initializer}]
    outputs = [o.name for o in graph.output]
    if inputs != [INPUT] or outputs != [OUTPUT]:
        raise FacetwinError(
            f"{label}: an ONNX graph from {', '.join(inputs) or 'nothing'} to {', '.join(outputs) or 'nothing'}, not "
            f"InsightFace's w600k_mbf ({INPUT} to {OUTPUT})."
        )
    ops = {node.op_type for node in graph.node}
    if ops & INTEGER_OPS - DYNAMIC_OPS:
        raise FacetwinError(f"{label}: quantised with {', '.join(sorted(ops & INTEGER_OPS))}, a form facetwin does "
                            "not read (it reads the float w600k_mbf file and its quantize_dynamic int8 copy).")
    return "int8" if ops & DYNAMIC_OPS else "float"


def _check(model, label: str) -> None:
    """An error unless ``model`` is w600k_mbf's float graph: its op counts and a 512-d output."""
    graph = model.graph
    found = Counter(node.op_type for node in graph.node)
    shapes = {init.name: tuple(init.dims) for init in graph.initializer}
    fc = next((node for node in graph.node if node.op_type == "Gemm"), None)
    dim = shapes.get(fc.input[1], (0,))[0] if fc is not None else 0
    available = set(shapes) | {i.name for i in graph.input} | {out for node in graph.node for out in node.output}
    missing = sorted({name for node in graph.node for name in node.input if name and name not in available})
    if missing:
        raise FacetwinError(f"{label}: the graph reads {missing[0]}, which nothing defines (a damaged file?).")
    if found != SIGNATURE or dim != 512:
        ops = ", ".join(f"{count} {op}" for op, count in found.most_common())
        raise FacetwinError(f"{label}: not InsightFace's w600k_mbf network (its float graph has {ops}).")


def float_graph(data: bytes, label: str = "the ArcFace file") -> ArcFaceGraph:
    """The float graph of w600k_mbf's upstream file or its int8 copy (``data``), batch dimension ``N``; any
    other bytes raise a :class:`FacetwinError` naming ``label`` and the problem."""
    if not data:
        raise FacetwinError(f"{label}: the file is empty, not an ONNX model.")
    digest = hashlib.sha256(data).hexdigest()
    try:
        model = fixed_model(data)
    except Exception:  # protobuf's DecodeError and friends: truncated or not ONNX at all
        raise FacetwinError(f"{label}: not a readable ONNX file (truncated, or another kind of file).") from None
    form = _recognised(model, digest, label)
    if form == "int8":
        try:
            dequantize(model)
        except (ValueError, KeyError, StopIteration) as exc:
            raise FacetwinError(f"{label}: its int8 graph is not in quantize_dynamic's form ({exc}).") from None
    _check(model, label)
    return ArcFaceGraph(model, form, digest)


def read_graph(path: str | Path) -> ArcFaceGraph:
    """:func:`float_graph` of the file at ``path`` (a missing or unreadable file is an error naming it)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FacetwinError(f"{path}: cannot read the ArcFace weights file ({exc.strerror or exc}).") from None
    return float_graph(data, str(path))


def recognise(path: str | Path) -> str:
    """The form of a weights file, ``"float"`` or ``"int8"``, after checking that it is w600k_mbf and converts
    (the registry's ``WeightsFile.recognise``); any other file raises a :class:`FacetwinError` naming it."""
    return read_graph(path).form


__all__ = [
    "STAGE_OUTPUTS", "prefix_graph",
    "ArcFaceGraph", "FLOAT_SHA256", "FORMS", "INT8_SHA256", "dequantize", "float_graph", "read_graph", "recognise",
]
