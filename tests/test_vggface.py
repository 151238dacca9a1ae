"""VGG-Face: Keras parity on the real-Keras fixture, both HDF5 layouts, broken files, splits, bf16 agreement."""

from __future__ import annotations

import gc
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from facetwin import FacetwinError
from facetwin.backbones import get_backbone
from facetwin.backbones.vggface import network as V
from facetwin.backbones.vggface import weights as W
from facetwin.backbones.vggface.backbone import VGGFACE_MEAN_BGR, preprocess

from conftest import FIXTURES, need

KERAS = FIXTURES / "vggface-keras"
H5 = KERAS / "vggface_keras_legacy.h5"
NPZ = KERAS / "vggface_parity_io.npz"
FIXTURE_SHA = "8c123cef70e13df169569d2895144968ea7ae7c46aae6d3a9e78297981acf8f1"
TOL = 1e-4


@pytest.fixture(scope="module")
def parity():
    return dict(np.load(need(NPZ)))




@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The fixture converted once to safetensors for this module (backbones load it without reconverting)."""
    return str(W.convert(need(H5), tmp_path_factory.mktemp("vggface") / "fixture.safetensors").path)


@pytest.fixture
def network():
    """The network with the fixture weights read straight from the HDF5 file (no cache involved); built for each
    test that needs it, so its 550 MB are not held through the tests that build backbones of their own."""
    model = V.VGGFace()
    model.load_state_dict(W.keras_to_state_dict(W.read_keras_h5(need(H5))))
    return model.eval()


def _nchw(parity) -> torch.Tensor:
    return torch.from_numpy(parity["input_bgr01"]).permute(0, 3, 1, 2)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


# --- topology ---------------------------------------------------------------------------------------------


def test_topology_is_deepfaces_38_layers():
    model = V.VGGFace()
    assert len(model.layers) == 38
    kinds = [spec.kind for spec in V.LAYERS]
    assert kinds[:5] == ["pad", "conv", "pad", "conv", "pool"]
    assert [i for i, k in enumerate(kinds) if k == "pool"] == [4, 9, 16, 23, 30]
    assert kinds[30:] == ["pool", "dense", "dropout", "dense", "dropout", "dense", "flatten", "softmax"]
    assert len(V.WEIGHTED_LAYERS) == 16
    assert [s.index for s in V.WEIGHTED_LAYERS][-3:] == [31, 33, 35]
    assert V.output_shape(30) == (512, 7, 7)
    assert V.output_shape(34) == (4096,) and V.output_shape(36) == (2622,)
    fc8 = model.layers[35]
    assert sum(p.numel() for p in fc8.parameters()) == 10_742_334  # the paper's trainable parameter count


def test_keras_kernel_mapping_matches_a_real_convolution():
    """A Keras (kh, kw, in, out) kernel, correlated by hand in NHWC, equals our mapped PyTorch conv."""
    rng = np.random.default_rng(0)
    spec = V.WEIGHTED_LAYERS[1]  # conv1_2: 64 -> 64
    kernel = rng.standard_normal((3, 3, 64, 64)).astype(np.float32)
    x = rng.standard_normal((1, 5, 5, 64)).astype(np.float32)
    expected = np.einsum("hwc,hwco->o", x[0, 1:4, 1:4, :], kernel)  # Keras 'valid' output at (1, 1)
    weight = W.keras_kernel_to_torch(spec, torch.from_numpy(kernel))
    got = torch.nn.functional.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2), weight)[0, :, 1, 1]
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-4)


# --- parity with Keras ------------------------------------------------------------------------------------


def test_fp32_parity_with_keras(network, parity):
    with torch.inference_mode():
        out = network.outputs(_nchw(parity), [33, 36, 37])
    for index, key in ((33, "fc7_relu"), (36, "fc8_linear"), (37, "softmax")):
        assert out[index].shape == parity[key].shape
        np.testing.assert_allclose(out[index].numpy(), parity[key], atol=TOL, rtol=0, err_msg=key)


def test_paper_extractor_parity_and_splits(network, parity):
    x = _nchw(parity)
    with torch.inference_mode():
        trunk, head = network.split(34)  # the paper: fc7 features, tanh(fc8) head
        features = trunk(x)
        assert features.shape == (4, 4096)
        np.testing.assert_allclose(features.numpy(), parity["fc7_relu"], atol=TOL, rtol=0)
        np.testing.assert_allclose(head(features).numpy(), parity["paper_tanh_extractor"], atol=TOL, rtol=0)
        # Earlier splits (after pool5, and between a padding and its convolution) give the same fc8.
        for k in (30, 28):
            trunk, head = network.split(k, head_activation=None)
            features = trunk(x)
            assert features.shape == (4, V.feature_dim(k))
            np.testing.assert_allclose(head(features).numpy(), parity["fc8_linear"], atol=TOL, rtol=0)
    # The head is an independent, trainable copy: training it leaves the network untouched.
    trunk, head = network.split(34)
    assert not trunk.training and not head.training  # same mode as the (eval) network: no dropout at inference
    assert all(p.requires_grad for p in head.parameters())
    with torch.no_grad():
        next(head.parameters()).add_(1.0)
    assert not torch.equal(next(head.parameters()), network.layers[35].weight)


def test_backbone_parity_fp32_and_bf16_agreement(parity, converted):
    fp32 = get_backbone("vggface", weights=converted, precision="fp32")
    x = _nchw(parity)
    f32 = fp32.trunk_preprocessed(x).numpy()
    np.testing.assert_allclose(f32, parity["fc7_relu"], atol=TOL, rtol=0)
    with torch.inference_mode():
        e32 = fp32.pretrained_head()(torch.from_numpy(f32)).numpy()
    np.testing.assert_allclose(e32, parity["paper_tanh_extractor"], atol=TOL, rtol=0)
    del fp32
    bf16 = get_backbone("vggface", weights=converted, precision="bf16")
    fb = bf16.trunk_preprocessed(x).numpy()
    with torch.inference_mode():
        eb = bf16.pretrained_head()(torch.from_numpy(fb)).numpy()
    assert _cosine(fb, f32).min() >= 0.999
    assert _cosine(eb, e32).min() >= 0.999
    assert bf16.describe()["trunk_precision"] != "fp32"  # the feature-cache key tells precisions apart


def test_embed_from_uint8_crops_and_layers(parity, converted):
    crops = np.clip(np.rint(parity["input_bgr01"][..., ::-1] * 255.0), 0, 255).astype(np.uint8)  # RGB uint8
    backbone = get_backbone("vggface", weights=converted, layer="fc8", precision="fp32", batch_size=3)
    emb = backbone.embed(crops)
    assert emb.shape == (4, 2622) and emb.dtype == np.float32
    # uint8 quantisation of the input moves outputs a little; the answer is still Keras' within rounding.
    assert _cosine(emb, parity["fc8_linear"]).min() > 0.99
    trunk, d, options = backbone.trunk(crops), backbone.describe(), backbone.options()
    assert d["name"] == "vggface" and d["weights_sha256"] == FIXTURE_SHA
    assert (d["layer"], d["split"], d["preprocess"]) == ("fc8", 34, "deepface")
    assert backbone.distance == "euclidean" and backbone.input.size == 224
    assert np.isnan(backbone.calibration.threshold)
    del backbone  # one VGG-Face at a time (each is about 1 GB): the suite's peak memory
    gc.collect()
    fc7 = get_backbone("vggface", weights=converted, layer="fc7", precision="fp32")
    assert fc7.feature_dim == fc7.embedding_dim == 4096
    np.testing.assert_allclose(fc7.embed(crops), trunk, atol=1e-5)
    del fc7
    gc.collect()
    assert get_backbone("vggface", **options).describe() == d
    with pytest.raises(FacetwinError, match="split"):
        get_backbone("vggface", weights=converted, layer="fc7", split=35)
    with pytest.raises(FacetwinError, match="layer"):
        get_backbone("vggface", weights=converted, layer="fc9")


def test_preprocessing_modes():
    crop = np.zeros((1, 224, 224, 3), np.uint8)
    crop[..., 0], crop[..., 1], crop[..., 2] = 200, 100, 50  # R, G, B
    deep = preprocess(crop, "deepface")
    assert deep.shape == (1, 3, 224, 224) and deep.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(deep[0, :, 0, 0].numpy(), [50 / 255, 100 / 255, 200 / 255], rtol=1e-6)  # BGR
    vgg = preprocess(crop, "vggface")
    expected = [50 - VGGFACE_MEAN_BGR[0], 100 - VGGFACE_MEAN_BGR[1], 200 - VGGFACE_MEAN_BGR[2]]
    np.testing.assert_allclose(vgg[0, :, 0, 0].numpy(), expected, rtol=1e-6)
    assert preprocess(np.zeros((2, 100, 100, 3), np.uint8)).shape == (2, 3, 224, 224)  # plain resize
    with pytest.raises(FacetwinError, match="uint8"):
        preprocess(np.zeros((1, 224, 224, 3), np.float32))
    with pytest.raises(FacetwinError, match="preprocessing"):
        preprocess(crop, "caffe")


# --- weight files: layouts, cache, broken files -----------------------------------------------------------


def _copy_h5(src, dst, *, under_model_weights=False, drop_last_weighted=False, reshape=None):
    """Rewrite the fixture: optionally under `model_weights`, without fc8, or with one dataset reshaped."""
    with h5py.File(src, "r") as fin, h5py.File(dst, "w") as fout:
        root = fout.create_group("model_weights") if under_model_weights else fout
        names = [n.decode() if isinstance(n, bytes) else n for n in fin.attrs["layer_names"]]
        if drop_last_weighted:
            names.remove("conv2d_15")
        for key, value in fin.attrs.items():
            root.attrs[key] = value
        root.attrs["layer_names"] = np.array([n.encode() for n in names])
        for name in names:
            fin.copy(fin[name], root, name=name)
        if reshape is not None:
            layer, dataset, shape = reshape
            path = f"{layer}/{dataset}"
            del root[path]
            root.create_dataset(path, data=np.zeros(shape, np.float32))


def test_model_weights_layout_loads(tmp_path, parity, facetwin_home):
    wrapped = tmp_path / "saved_with_model_save.h5"
    _copy_h5(need(H5), wrapped, under_model_weights=True)
    state = W.keras_to_state_dict(W.read_keras_h5(wrapped))
    reference = W.keras_to_state_dict(W.read_keras_h5(need(H5)))
    assert state.keys() == reference.keys()
    for key, value in reference.items():
        assert torch.equal(state[key], value), key
    del reference  # 550 MB: one copy of the weights at a time beside the model (the suite's peak memory)
    model = V.VGGFace()
    model.load_state_dict(state)
    del state
    with torch.inference_mode():
        trunk, head = model.eval().split(34)
        out = head(trunk(_nchw(parity))).numpy()
    np.testing.assert_allclose(out, parity["paper_tanh_extractor"], atol=TOL, rtol=0)


def test_conversion_is_cached_and_reused(tmp_path, facetwin_home, monkeypatch):
    with pytest.raises(FacetwinError, match="weights fetch vggface"):
        W.load(None)  # nothing imported yet: say how to get the weights
    imported = W.import_h5(need(H5))
    assert imported.path == facetwin_home / "weights" / "vggface.safetensors"
    assert imported.sha256 == FIXTURE_SHA

    def no_hdf5(*args, **kwargs):
        raise AssertionError("the converted file should have been used")

    monkeypatch.setattr(W, "read_keras_h5", no_hdf5)
    again = W.load(None)
    assert again.sha256 == FIXTURE_SHA and again.path == imported.path
    by_h5 = W.load(H5)  # an explicit HDF5 path whose digest matches the imported file: no reconversion
    assert by_h5.path == imported.path
    for key in imported.state_dict:
        assert torch.equal(again.state_dict[key], imported.state_dict[key])
    del imported, again, by_h5  # three 550 MB state dicts: not kept beside the backbone below
    gc.collect()
    # The backbone with weights=None uses the imported file.
    assert get_backbone("vggface", precision="fp32", runtime="torch").describe()["weights_sha256"] == FIXTURE_SHA


def test_broken_files_get_one_sentence(tmp_path, facetwin_home):
    src = need(H5)
    text = tmp_path / "weights.h5"
    text.write_text("this is not HDF5\n")
    with pytest.raises(FacetwinError, match=r"weights\.h5 is not an HDF5 file"):
        W.load(text)

    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(FacetwinError, match=r"truncated\.h5 is truncated") as info:
        W.load(truncated)
    assert "\n" not in str(info.value)

    fifteen = tmp_path / "fifteen.h5"
    _copy_h5(src, fifteen, drop_last_weighted=True)
    with pytest.raises(FacetwinError, match="has 15 weighted layers, but deepface's VGG-Face has 16"):
        W.load(fifteen)

    wrong = tmp_path / "wrong_shape.h5"
    _copy_h5(src, wrong, reshape=("conv2d_3", "conv2d_3/kernel:0", (3, 3, 128, 64)))
    with pytest.raises(FacetwinError) as info:
        W.load(wrong)
    message = str(info.value)
    assert "'conv2d_3'" in message and "conv2_2" in message
    assert "(3, 3, 128, 64)" in message and "expected (3, 3, 128, 128)" in message

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        handle.create_dataset("x", data=np.zeros(3))
    with pytest.raises(FacetwinError, match="not a Keras weights file"):
        W.load(other)

    assert not list((facetwin_home / "weights").glob("*.safetensors"))  # nothing half-converted left behind


def test_cli_import_and_list(tmp_path, facetwin_home):
    env = {"FACETWIN_HOME": str(facetwin_home), "PATH": ""}
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x00" * 100)
    run = [sys.executable, "-c", "import sys; from facetwin.cli import main; sys.exit(main(sys.argv[1:]))"]
    result = subprocess.run([*run, "weights", "import", "vggface", str(bad)], capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "not an HDF5 file" in result.stderr
    copy = tmp_path / "vgg_face_weights.h5"
    shutil.copy(need(H5), copy)
    result = subprocess.run([*run, "weights", "import", "vggface", str(copy)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    result = subprocess.run([*run, "weights", "list"], capture_output=True, text=True, env=env)
    assert result.returncode == 0 and "present" in result.stdout and FIXTURE_SHA in result.stdout


def test_exported_runtimes_match_torch_fp32(parity, converted):
    """The same fp32 trunk exported to ONNX (once) and run by OpenVINO (the fp32 default) or onnxruntime:
    Keras' features, as PyTorch's are."""
    from facetwin.backbones.base import identity
    from facetwin.core.precision import has_openvino

    crops = np.clip(np.rint(parity["input_bgr01"][..., ::-1] * 255.0), 0, 255).astype(np.uint8)
    torch_fp32 = get_backbone("vggface", weights=converted, precision="fp32", runtime="torch")
    expected, described = torch_fp32.embed(crops), torch_fp32.describe()
    del torch_fp32  # one VGG-Face at a time (each is about 1 GB): the suite's peak memory
    for runtime in ("onnxruntime", "openvino") if has_openvino() else ("onnxruntime",):
        other = get_backbone("vggface", weights=converted, precision="fp32", runtime=runtime)
        assert _cosine(other.embed(crops), expected).min() >= 0.9999, runtime
        assert other.describe() == described  # same features: run directories and caches stay valid
        del other
        gc.collect()
    if has_openvino():
        assert get_backbone("vggface", weights=converted, precision="fp32").runtime == "openvino"
    gc.collect()
    with pytest.raises(FacetwinError, match="fp32"):
        get_backbone("vggface", weights=converted, precision="bf16", runtime="onnxruntime")
    # a run trained with bf16 (the earlier default on CPUs without AMX) is the same model for loading
    bf16 = get_backbone("vggface", weights=converted, precision="bf16")
    assert identity(bf16.describe()) == identity(described) and bf16.describe() != described
