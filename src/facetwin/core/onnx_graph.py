"""Repairs and rewrites of OpenCV Zoo's int8 ONNX files, in memory, so onnxruntime runs them fast.

- :func:`fixed_model`: ``graph.input`` keeps only names some node consumes (the files declare unused inputs,
  leftovers of the quantisation script, which onnxruntime refuses), and the batch dimension becomes ``N``;
- :func:`fold_weights`: constant ``DequantizeLinear`` chains become float32 initializers (onnxruntime would
  dequantise every weight on every call);
- :func:`split_prelu`: ``PRelu`` becomes ``a*y + (1-a)*relu(y)``, the same function, which onnxruntime fuses
  into the convolutions (it has no fast kernel for a per-channel slope).
"""

from __future__ import annotations

import numpy as np


def fixed_model(data: bytes):
    """The SFace ``onnx.ModelProto`` repaired so onnxruntime runs it batched (see the module docstring).

    ``graph.input`` keeps only names some node consumes that are not initializers (in the file, 29 inputs
    are unused and every batch-norm constant is also declared an input, which blocks constant folding);
    the batch dimension of the input and output becomes the symbolic ``N``; the stale shape annotations
    (``value_info``, batch 1) are dropped.
    """
    import onnx

    model = onnx.load_from_string(data)
    graph = model.graph
    consumed = {name for node in graph.node for name in node.input}
    initializers = {init.name for init in graph.initializer}
    keep = [inp for inp in graph.input if inp.name in consumed and inp.name not in initializers]
    del graph.input[:]
    graph.input.extend(keep)
    del graph.value_info[:]
    for value in list(graph.input)[:1] + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "N"
    return model


def _dequantize(x: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, axis: int, block: int) -> np.ndarray:
    """ONNX ``DequantizeLinear`` in numpy: per-tensor, per-axis or blocked (``block_size``) scales."""
    x = x.astype(np.float32)
    zero = np.zeros_like(scale, dtype=np.float32) if zero is None else zero.astype(np.float32)
    scale = scale.astype(np.float32)
    if scale.ndim == 0 or scale.size == 1:
        return (x - zero.reshape(())) * scale.reshape(())
    axis = axis % x.ndim
    if block:
        index = [slice(None)] * x.ndim
        index[axis] = slice(0, x.shape[axis])
        scale = np.repeat(scale, block, axis=axis)[tuple(index)]
        zero = np.repeat(zero, block, axis=axis)[tuple(index)]
        return (x - zero) * scale
    shape = [1] * x.ndim
    shape[axis] = -1
    return (x - zero.reshape(shape)) * scale.reshape(shape)


def fold_weights(model):
    """Replace the constant ``DequantizeLinear`` (+ ``Reshape``) chains by float32 initializers, in place.

    onnxruntime keeps quantise/dequantise pairs unfolded (for its int8 kernels) and would dequantise every
    weight on every call; folded, batch-1 inference is about twice as fast. Outputs agree to ~1e-6.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    kept = []
    for node in graph.node:
        inputs = [name for name in node.input if name]
        if node.op_type == "DequantizeLinear" and all(name in values for name in inputs):
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            zero = values[node.input[2]] if len(node.input) > 2 and node.input[2] else None
            values[node.output[0]] = _dequantize(
                values[node.input[0]], values[node.input[1]], zero, int(attrs.get("axis", 1)),
                int(attrs.get("block_size", 0)),
            )
        elif node.op_type == "Reshape" and all(name in values for name in inputs):
            values[node.output[0]] = values[node.input[0]].reshape(values[node.input[1]])
        else:
            kept.append(node)
    used = {name for node in kept for name in node.input} | {out.name for out in graph.output}
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in values.items() if k in used)
    return model


def split_prelu(model):
    """Rewrite every ``PRelu(y)`` with a constant slope ``a`` as ``a*y + (1-a)*relu(y)``, in place.

    Same function (exact for any slope), but onnxruntime has no fast kernel for a per-channel ``PRelu``
    (a generic broadcast loop: 15 of the 21 ms of a batch-1 call, 1 thread); the rewritten form is a ``Relu``
    plus two per-channel ``Mul`` and an ``Add`` that its graph optimiser fuses into the neighbouring
    convolutions (NCHWc), so a batch-1 call takes about 8 ms. Outputs agree to ~1e-6.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    values = {init.name: init for init in graph.initializer}
    nodes = []
    for node in graph.node:
        slope = values.get(node.input[1]) if node.op_type == "PRelu" else None
        if slope is None:
            nodes.append(node)
            continue
        y, out = node.input[0], node.output[0]
        one_minus = (1.0 - numpy_helper.to_array(slope)).astype(np.float32)
        keep = numpy_helper.from_array(one_minus, f"{out}_one_minus_slope")
        graph.initializer.append(keep)
        nodes += [
            helper.make_node("Relu", [y], [f"{out}_relu"]),
            helper.make_node("Mul", [f"{out}_relu", keep.name], [f"{out}_positive"]),
            helper.make_node("Mul", [y, slope.name], [f"{out}_linear"]),
            helper.make_node("Add", [f"{out}_positive", f"{out}_linear"], [out]),
        ]
    del graph.node[:]
    graph.node.extend(nodes)
    return model
