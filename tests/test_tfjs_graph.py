"""TF.js graph models in torch (`models.tfjs_graph`) equal TensorFlow.js' own CPU backend, and HSE FaceRes (the
offline identity network it runs) tells people apart."""

import base64
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from drfhq_tools.errors import DrfhqError
from drfhq_tools.models.tfjs_graph import TfjsGraph
from drfhq_tools.models.weights import try_resolve

ROOT = Path(__file__).resolve().parents[1]
NODE_MODULES = ROOT / ".venv" / "node" / "node_modules"


def _faceres():
    graph, weights = try_resolve("faceres-json"), try_resolve("faceres-bin")
    if graph is None or weights is None:
        pytest.skip("HSE FaceRes not fetched (`drfhq models setup-offline` needs npm)")
    return graph.path, weights.path


def _tfjs(model_json: Path, x: np.ndarray, outputs: list[str], tmp_path: Path, shards: dict | None = None) -> dict:
    """The outputs TensorFlow.js computes (tests/tfjs_reference.cjs)."""
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "@tensorflow" / "tfjs-converter").is_dir():
        pytest.skip("TensorFlow.js not installed (`make setup` puts it in .venv/node where npm exists)")
    x = np.ascontiguousarray(x, dtype=np.float32)
    (tmp_path / "input.f32").write_bytes(x.tobytes())
    result = subprocess.run([node, str(ROOT / "tests" / "tfjs_reference.cjs"), str(model_json), str(tmp_path / "input.f32"),
                             ",".join(map(str, x.shape)), *[f"{k}={v}" for k, v in (shards or {}).items()], *outputs],
                            capture_output=True, text=True, env={"NODE_PATH": str(NODE_MODULES), "PATH": ""}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return {k: np.array(v["values"], dtype=np.float64).reshape(v["shape"]) for k, v in json.loads(result.stdout).items()}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _toy_graph(folder: Path) -> Path:
    """A graph with what the converter emits: a strided SAME convolution on an odd size (TF pads after), a fused
    depthwise convolution with PReLU, uint8- and float16-quantised weights, element-wise maths, a mean and a
    fused matrix product."""
    rng = np.random.default_rng(0)
    weights = [("conv/w", rng.normal(size=(3, 3, 3, 4)), "uint8"), ("conv/b", rng.normal(size=4), None),
               ("dw/w", rng.normal(size=(3, 3, 4, 2)), "float16"), ("dw/b", rng.normal(size=8), None),
               ("dw/alpha", rng.uniform(0.1, 0.3, size=8), None), ("scale", rng.normal(size=8), None),
               ("axes", np.array([1, 2]), None), ("fc/w", rng.normal(size=(8, 5)), None), ("fc/b", rng.normal(size=5), None)]
    specs, blobs = [], []
    for name, value, quant in weights:
        dtype = "int32" if value.dtype.kind == "i" else "float32"
        spec = {"name": name, "shape": list(value.shape), "dtype": dtype}
        if quant == "uint8":
            lo, scale = float(value.min()), float(value.max() - value.min()) / 255
            blobs.append(np.round((value - lo) / scale).astype(np.uint8).tobytes())
            spec["quantization"] = {"dtype": "uint8", "scale": scale, "min": lo}
        elif quant == "float16":
            blobs.append(value.astype(np.float16).tobytes())
            spec["quantization"] = {"dtype": "float16"}
        else:
            blobs.append(value.astype(dtype).tobytes())
        specs.append(spec)
    (folder / "toy.bin").write_bytes(b"".join(blobs))

    def node(name, op, inputs=(), **attr):
        return {"name": name, "op": op, "input": list(inputs), "attr": attr}
    strides = lambda s: {"list": {"i": ["1", str(s), str(s), "1"]}}
    nodes = [node("x", "Placeholder", dtype={"type": "DT_FLOAT"}),
             *[node(name, "Const", dtype={"type": "DT_INT32" if name == "axes" else "DT_FLOAT"}) for name, _, _ in weights],
             node("conv", "_FusedConv2D", ("x", "conv/w", "conv/b"), strides=strides(2), padding={"s": _b64("SAME")},
                  fused_ops={"list": {"s": [_b64("BiasAdd"), _b64("Relu")]}}, data_format={"s": _b64("NHWC")}, num_args={"i": "1"}),
             node("dw", "FusedDepthwiseConv2dNative", ("conv", "dw/w", "dw/b", "dw/alpha"), strides=strides(2),
                  padding={"s": _b64("SAME")}, fused_ops={"list": {"s": [_b64("BiasAdd"), _b64("Prelu")]}}, num_args={"i": "2"}),
             node("scaled", "Mul", ("dw", "scale")), node("abs", "Abs", ("scaled",)), node("sub", "Sub", ("scaled", "abs")),
             node("pool", "Mean", ("sub", "axes"), keep_dims={"b": False}),
             node("fc", "_FusedMatMul", ("pool", "fc/w", "fc/b"), fused_ops={"list": {"s": [_b64("BiasAdd")]}},
                  transpose_a={"b": False}, transpose_b={"b": False}, num_args={"i": "1"}),
             node("out", "Softmax", ("fc",))]
    model = {"format": "graph-model", "modelTopology": {"node": nodes, "versions": {"producer": 1395}},
             "signature": {"outputs": {"out": {"name": "out:0"}}},
             "weightsManifest": [{"paths": ["toy.bin"], "weights": specs}]}
    (folder / "toy.json").write_text(json.dumps(model))
    return folder / "toy.json"


def test_a_graph_with_the_converters_operations_equals_tensorflow_js(tmp_path):
    model_json = _toy_graph(tmp_path)
    x = np.random.default_rng(1).normal(size=(2, 7, 9, 3)).astype(np.float32)     # odd sizes: SAME pads unevenly
    graph = TfjsGraph(model_json)
    assert graph.output_name == "out" and graph.input_name == "x"
    expected = _tfjs(model_json, x, ["out", "sub"], tmp_path)
    with torch.no_grad():
        assert np.abs(graph(torch.from_numpy(x)).numpy() - expected["out"]).max() < 1e-5
        inner = TfjsGraph(model_json, output="sub")(torch.from_numpy(x)).numpy()
    assert inner.shape == expected["sub"].shape == (2, 2, 3, 8)
    assert np.abs(inner - expected["sub"]).max() < 1e-4 * np.abs(expected["sub"]).max()


def test_faceres_equals_tensorflow_js_on_face_crops(fixtures, tmp_path):
    from drfhq_tools.models import faces
    from drfhq_tools.models.identity import FaceResIdentity

    model_json, shard = _faceres()
    net = FaceResIdentity()
    images = [np.asarray(Image.open(fixtures / name).convert("RGB")) for name in
              ("real/frl_lisa_cc0/lisa_lisa1.jpg", "render/replicantface_2ids_mit/var_r00c00.jpg")]
    lm68 = [faces.landmarks(rgb, max(faces.detect_faces(rgb), key=lambda b: b.area).box, 68) for rgb in images]
    crops = net.crops(images, lm68).astype(np.float32)
    outputs = ["global_pooling/Mean", "age_pred/Softmax", "gender_pred/Sigmoid"]
    expected = _tfjs(model_json, crops, outputs, tmp_path, {"faceres.bin": shard})
    for name in outputs:
        with torch.no_grad():
            ours = TfjsGraph(model_json, output=name, shards={"faceres.bin": shard})(torch.from_numpy(crops)).numpy()
        assert np.abs(ours - expected[name]).max() <= 1e-5 * max(1.0, np.abs(expected[name]).max()), name
    assert np.allclose(net(images, None, lm68), expected["global_pooling/Mean"], atol=1e-4)


def test_faceres_scores_the_same_person_above_others(fixture_dataset):
    from drfhq_tools.dataset.rows import dataset_rows
    from drfhq_tools.models.identity import FaceResIdentity, identity_names

    _faceres()
    rows, _ = dataset_rows(fixture_dataset, None)
    lisa = [r for r in rows if r["source_path"].startswith("real/frl_lisa_cc0/")]
    others = [r for r in rows if r["source_path"].startswith("real/frl_canada/")][:12]
    net = FaceResIdentity()
    embed = lambda rs: net([np.asarray(Image.open(r["image_file"]).convert("RGB")) for r in rs], None,
                           [r["aligned_lm68"] for r in rs])
    unit = lambda e: e / np.linalg.norm(e, axis=1, keepdims=True)
    e_lisa, e_other = unit(embed(lisa)), unit(embed(others))
    same = (e_lisa @ e_lisa.T)[np.triu_indices(len(lisa), 1)]
    cross = e_lisa @ e_other.T
    assert e_lisa.shape[1] == 1024
    assert same.mean() > cross.mean() + 0.2 and np.median(same) > np.quantile(cross, 0.95)
    assert identity_names("auto")[-1] == "faceres" and identity_names("faceres,dlib") == ["faceres", "dlib"]


def test_an_unknown_operation_or_a_missing_shard_is_refused_naming_the_file(tmp_path):
    model_json = _toy_graph(tmp_path)
    model = json.loads(model_json.read_text())
    model["modelTopology"]["node"][-1]["op"] = "NonMaxSuppressionV5"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(model))
    with pytest.raises(DrfhqError, match=r"bad\.json: node out uses operation NonMaxSuppressionV5"):
        TfjsGraph(bad)
    (tmp_path / "toy.bin").unlink()
    with pytest.raises(DrfhqError, match=r"toy\.json: weight shard .*toy\.bin not found"):
        TfjsGraph(model_json)
