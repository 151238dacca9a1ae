"""ArcFace MobileFaceNet (w600k_mbf): the dequantised float graph, its PyTorch twin and the backbone, on real files.

The float graph must compute what the int8 file computes, layer by layer: fed the int8 graph's own quantised
activations, every float ``Conv``/``Gemm`` reproduces its ``ConvInteger``/``MatMulInteger`` chain to float
rounding. End to end the two differ by the int8 file's dynamic activation quantisation (8 bits per tensor before
each of its 50 layers), not by the weights: cosine about 0.99 per face, not 0.999.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import DATA, SHARED, need

WEIGHTS = SHARED / "weights" / "arcface_w600k_mbf_int8.onnx"
PAIRS = 8  # same-person and different-person pairs each, the first of lfw-dev's pairs.txt


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def graph():
    from facetwin.backbones.arcface_mbf.graph import read_graph

    return read_graph(need(WEIGHTS))


@pytest.fixture(scope="module")
def pairs():
    """Crops of PAIRS same and PAIRS different lfw-dev pairs: (crops, index a, index b, same)."""
    from facetwin.evaluation.pairs_file import read_pairs
    from facetwin.vision.align import InputSpec
    from facetwin.vision.faces import face_crops

    root = need(DATA / "lfw-dev")
    listed = read_pairs(root / "pairs.txt").pairs
    chosen = [p for p in listed if p.same][:PAIRS] + [p for p in listed if not p.same][:PAIRS]
    files = sorted({p.a for p in chosen} | {p.b for p in chosen})
    crops = np.stack([face_crops(root / "images" / f, InputSpec(112, "five_point"))[0].crop for f in files])
    index = {f: i for i, f in enumerate(files)}
    return (crops, np.array([index[p.a] for p in chosen]), np.array([index[p.b] for p in chosen]),
            np.array([p.same for p in chosen]))


def _blob(crops: np.ndarray) -> np.ndarray:
    from facetwin.backbones.arcface_mbf.backbone import blob

    return blob(crops)


def test_int8_file_becomes_the_float_network(graph):
    from collections import Counter

    assert graph.form == "int8"
    ops = Counter(node.op_type for node in graph.model.graph.node)
    assert ops == Counter({"Conv": 49, "PRelu": 34, "Add": 12, "Flatten": 1, "Gemm": 1, "BatchNormalization": 1})
    assert [i.name for i in graph.model.graph.input] == ["input.1"] and graph.model.graph.output[0].name == "516"
    assert graph.model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    names = {i.name for i in graph.model.graph.initializer}
    assert {"518", "519", "fc.weight", "fc.bias", "features.running_var"} <= names


def test_every_float_layer_reproduces_its_int8_chain(graph, pairs):
    """Fed the int8 graph's own quantised input, each float Conv/Gemm gives that chain's output (float rounding)."""
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import helper, numpy_helper

    int8 = onnx.load(str(WEIGHTS))
    layers = [n for n in graph.model.graph.node if n.op_type in ("Conv", "Gemm")]
    wanted = sorted({f"{n.input[0]}_{part}" for n in layers for part in ("quantized", "scale", "zero_point")}
                    | {n.output[0] for n in layers})
    del int8.graph.output[:], int8.graph.value_info[:]
    uint8 = ("_quantized", "_zero_point")
    int8.graph.output.extend(
        helper.make_tensor_value_info(name, onnx.TensorProto.UINT8 if name.endswith(uint8) else onnx.TensorProto.FLOAT,
                                      None) for name in wanted)
    session = ort.InferenceSession(int8.SerializeToString(), providers=["CPUExecutionProvider"])
    tensors = dict(zip(wanted, session.run(None, {"input.1": _blob(pairs[0][:2])}), strict=True))
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).astype(np.float64))
               for i in graph.model.graph.initializer}
    for node in layers:
        x = node.input[0]
        q = tensors[f"{x}_quantized"].astype(np.float64) - tensors[f"{x}_zero_point"].astype(np.float64)
        x_float = torch.from_numpy(q * tensors[f"{x}_scale"].astype(np.float64))
        w, b = weights[node.input[1]], weights[node.input[2]]
        if node.op_type == "Conv":
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            y = torch.nn.functional.conv2d(x_float, w, b, attrs["strides"], attrs["pads"][:2], groups=attrs["group"])
        else:
            y = torch.nn.functional.linear(x_float, w, b)
        reference = tensors[node.output[0]]
        assert np.abs(y.numpy() - reference).max() <= 1e-5 * np.abs(reference).max(), node.name


def test_float_graph_is_close_to_the_int8_graph_end_to_end(graph, pairs):
    """Batch 1 (the int8 file's activation scales depend on the whole batch)."""
    from facetwin.core.runtimes import onnxruntime_runner

    int8 = onnxruntime_runner(WEIGHTS, 2)
    float32 = onnxruntime_runner(graph.model.SerializeToString(), 2)
    x = _blob(pairs[0])
    cosine = (_unit(np.concatenate([int8(x[i : i + 1]) for i in range(len(x))])) * _unit(float32(x))).sum(1)
    assert cosine.min() >= 0.95 and cosine.mean() >= 0.99, cosine  # lfw-dev: min 0.963, mean 0.996


def test_pytorch_twin_matches_the_float_graph_and_cuts_at_any_stage(graph, pairs):
    import torch

    from facetwin.backbones.arcface_mbf.network import STAGES, from_graph
    from facetwin.core.runtimes import onnxruntime_runner

    net = from_graph(graph.model)
    x = _blob(pairs[0][:8])
    reference = onnxruntime_runner(graph.model.SerializeToString(), 2)(x)
    with torch.inference_mode():
        out = net(torch.from_numpy(x))
        assert np.abs(out.numpy() - reference).max() <= 1e-4
        h = torch.from_numpy(x[:2])
        for stage, following in zip(STAGES, STAGES[1:], strict=False):  # stage by stage, and resumed after each
            h = net(h, first=stage, last=stage)
            assert torch.allclose(net(h, first=following), out[:2], atol=1e-5), stage
    assert all(p.requires_grad for p in net.parameters())  # trainable as built
    net.train()
    net(torch.from_numpy(x[:2])).square().sum().backward()
    assert all(p.grad is not None for p in getattr(net.stages, STAGES[0]).parameters())


def test_backbone_same_person_closer_than_different(pairs):
    from facetwin.backbones.arcface_mbf.backbone import ArcFaceMBF

    backbone = ArcFaceMBF(need(WEIGHTS))
    crops, a, b, same = pairs
    features = backbone.trunk(crops)
    assert features.shape == (len(crops), 512) and features.dtype == np.float32
    embeddings = backbone.embed(crops)
    similarity = (embeddings[a] * embeddings[b]).sum(1)
    assert similarity[same].min() > similarity[~same].max(), similarity
    described = backbone.describe()
    assert described["name"] == "arcface-mbf" and described["form"] == "int8-dequantised"
    assert described["weights_sha256"] == "7caa7fb0ad6c37b33e6c59f6411084b487aaabd596bba645d2cce391a5871120"
    assert described["feature_dim"] == described["embedding_dim"] == 512
    network = backbone.network()
    assert not any(p.requires_grad for p in network.parameters()) and not network.training
    import torch

    with torch.inference_mode():
        twin = _unit(network(torch.from_numpy(_blob(crops[:4]))).numpy())
    assert (twin * _unit(features[:4])).sum(1).min() >= 0.999  # bf16 or fp32 runtime


def test_float_file_and_modified_int8_file_are_recognised_by_their_graph(graph, pairs, tmp_path):
    import onnx

    from facetwin.backbones.arcface_mbf.backbone import ArcFaceMBF
    from facetwin.backbones.arcface_mbf.graph import recognise

    float_file = tmp_path / "w600k_mbf.onnx"
    float_file.write_bytes(graph.model.SerializeToString())
    int8 = onnx.load(str(WEIGHTS))
    int8.doc_string = "re-saved"
    int8_file = tmp_path / "other-int8.onnx"
    onnx.save(int8, str(int8_file))
    assert recognise(float_file) == "float"
    assert recognise(int8_file) == "int8"
    crops = pairs[0][:4]
    a = ArcFaceMBF(float_file, precision="fp32").trunk(crops)
    b = ArcFaceMBF(WEIGHTS, precision="fp32").trunk(crops)
    assert np.abs(a - b).max() <= 1e-5


def _sface_file():
    from facetwin.core import assets

    return assets.locate("sface")


@pytest.mark.parametrize("kind", ["truncated", "sface", "jpeg", "empty", "missing"])
def test_other_files_get_one_clear_error(kind, tmp_path):
    from facetwin.backbones.arcface_mbf.backbone import ArcFaceMBF
    from facetwin.errors import FacetwinError

    path = tmp_path / f"{kind}.onnx"
    if kind == "truncated":
        path.write_bytes(need(WEIGHTS).read_bytes()[:1_000_000])
    elif kind == "sface":
        path = _sface_file()
    elif kind == "jpeg":
        path.write_bytes(next(need(DATA / "lfw-dev" / "images").rglob("*.jpg")).read_bytes())
    elif kind == "empty":
        path.write_bytes(b"")
    with pytest.raises(FacetwinError) as caught:
        ArcFaceMBF(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and message.endswith(".") and "\n" not in message
    assert {"truncated": "not a readable ONNX file", "sface": "not InsightFace's w600k_mbf", "jpeg": "not a readable",
            "empty": "empty", "missing": "cannot read"}[kind] in message
