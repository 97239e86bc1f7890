"""Pickle, sharded pickle, ONNX and GGUF checkpoints, written by their own libraries."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path

import gguf
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from safetensors import safe_open

from covertml.errors import ConfigError, ModelFileError
from covertml.floats import float_format, from_words, to_words
from covertml.models.checkpoint import TensorInfo, open_checkpoint, write_like
from covertml.models.checkpoint import pickle_format as pf

RNG = np.random.default_rng(7)


def flip_low_bit(info: TensorInfo, values: torch.Tensor) -> torch.Tensor:
    fmt = float_format(values.dtype)
    if fmt is None:
        return values
    return from_words(to_words(values) ^ 1, fmt, tuple(values.shape))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def bf16_bits(n: int) -> np.ndarray:
    """bfloat16 words of random normal values (the high halves of float32 words)."""
    return (RNG.standard_normal(n).astype("<f4").view("<u4") >> 16).astype("<u2")


def words(t: torch.Tensor) -> np.ndarray:
    return to_words(t)


# --- pickle ------------------------------------------------------------------------------


def state_dict() -> dict[str, torch.Tensor]:
    return {
        "z.weight": torch.from_numpy(RNG.standard_normal((3, 4)).astype(np.float32)),
        "a.half": torch.from_numpy(RNG.standard_normal(5).astype(np.float16)),
        "m.bf16": torch.from_numpy(bf16_bits(6).view(np.int16).copy()).view(torch.bfloat16),
        "steps": torch.arange(4, dtype=torch.int64),
    }


@pytest.mark.parametrize("zipped", [True, False])
def test_pickle_reads_the_saved_values_in_order(tmp_path: Path, zipped: bool) -> None:
    sd = state_dict()
    path = tmp_path / "pytorch_model.bin"
    torch.save(sd, path, _use_new_zipfile_serialization=zipped)
    with pytest.raises(ModelFileError, match="pickle"):
        open_checkpoint(path)
    ck = open_checkpoint(path, allow_pickle=True)
    assert ck.format == "pickle" and list(ck) == list(sd) and ck.files == (str(path),)
    for name, tensor in sd.items():
        assert ck.infos[name].dtype == str(tensor.dtype).removeprefix("torch.")
        assert ck.infos[name].shape == tuple(tensor.shape)
        assert ck.infos[name].nbytes == tensor.numel() * tensor.element_size()
        assert ck[name].dtype == tensor.dtype and torch.equal(ck[name], tensor)
    assert torch.equal(ck.read_range("z.weight", 2, 5), sd["z.weight"].reshape(-1)[2:7])


def test_pickle_with_state_dict_key_keeps_its_metadata(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "metadata": {"note": "x", "n": 3}}, path)
    ck = open_checkpoint(path, allow_pickle=True)
    assert list(ck) == ["w"] and ck.metadata == {"note": "x", "n": "3"}


def test_pickle_training_checkpoints_flatten_and_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}, path)
    ck = open_checkpoint(path, allow_pickle=True)
    assert {"model.weight", "model.bias", "optimizer.state.0.exp_avg"} <= set(ck)
    assert torch.equal(ck["model.weight"], model.weight.detach())
    assert ck.metadata["epoch"] == "3"
    torch.save({"epoch": 3}, path)
    with pytest.raises(ModelFileError, match="no tensors"):
        open_checkpoint(path, allow_pickle=True)
    torch.save({"w": torch.ones(2), "opt": Path("x")}, path)
    with pytest.raises(ModelFileError, match="could not be read safely"):
        open_checkpoint(path, allow_pickle=True)
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    with pytest.raises(ModelFileError, match="could not be read safely"):
        open_checkpoint(path, allow_pickle=True)


def test_pickle_is_written_as_safetensors(tmp_path: Path) -> None:
    sd = state_dict()
    path = tmp_path / "pytorch_model.bin"
    torch.save(sd, path)
    before = digest(path)
    ck = open_checkpoint(path, allow_pickle=True)
    with pytest.raises(ConfigError, match="safetensors"):
        write_like(ck, tmp_path / "out.bin", flip_low_bit, metadata={})
    result = write_like(ck, tmp_path / "out.safetensors", flip_low_bit, metadata={"k": "v"})
    with safe_open(result.output, framework="pt") as f:
        assert list(f.keys()) == sorted(sd) and f.metadata() == {"k": "v"}
        for name, tensor in sd.items():
            got = f.get_tensor(name)
            assert got.dtype == tensor.dtype
            if tensor.is_floating_point():
                assert np.array_equal(words(got), words(tensor) ^ 1)
            else:
                assert torch.equal(got, tensor)
    assert digest(path) == before


# --- sharded pickle ----------------------------------------------------------------------


def write_sharded(d: Path) -> dict[str, torch.Tensor]:
    shard1 = {"b.weight": torch.randn(2, 3), "a.bias": torch.randn(3).half()}
    shard2 = {"c.weight": torch.randn(4, 2).bfloat16(), "c.count": torch.tensor([5])}
    names = ["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"]
    torch.save(shard1, d / names[0])
    torch.save(shard2, d / names[1])
    weight_map = {k: names[0] for k in shard1} | {k: names[1] for k in shard2}
    index = {"metadata": {"total_size": 123}, "weight_map": weight_map}
    (d / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    (d / "config.json").write_text("{}")
    return shard1 | shard2


def test_sharded_pickle_reads_shard_by_shard_one_at_a_time(tmp_path, monkeypatch) -> None:
    tensors = write_sharded(tmp_path)
    ck = open_checkpoint(tmp_path, allow_pickle=True)
    assert ck.format == "pickle-sharded" and list(ck) == list(tensors)
    assert [Path(f).name for f in ck.files] == [
        "pytorch_model-00001-of-00002.bin",
        "pytorch_model-00002-of-00002.bin",
    ]
    assert ck.extra["index_metadata"] == {"total_size": 123}
    loads: list[str] = []
    real = pf.load_state_dict

    def counting(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        loads.append(path.name)
        return real(path)

    monkeypatch.setattr(pf, "load_state_dict", counting)
    for name, tensor in tensors.items():
        assert ck[name].dtype == tensor.dtype and torch.equal(ck[name], tensor)
    assert loads == [Path(f).name for f in ck.files]  # each shard loaded once, in turn
    assert ck.loader is not None and getattr(ck.loader, "file", None) == ck.files[1]


def test_sharded_pickle_errors(tmp_path: Path) -> None:
    write_sharded(tmp_path)
    index = tmp_path / "pytorch_model.bin.index.json"
    data = json.loads(index.read_text())
    data["weight_map"]["ghost"] = "pytorch_model-00001-of-00002.bin"
    index.write_text(json.dumps(data))
    with pytest.raises(ModelFileError, match="names tensor ghost"):
        open_checkpoint(index, allow_pickle=True)
    with pytest.raises(ModelFileError, match="pickle"):
        open_checkpoint(index)
    (tmp_path / "pytorch_model-00002-of-00002.bin").unlink()
    missing = re.escape("names shard pytorch_model-00002-of-00002.bin")
    with pytest.raises(ModelFileError, match=missing):
        open_checkpoint(index, allow_pickle=True)


def test_sharded_pickle_is_written_as_sharded_safetensors(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    tensors = write_sharded(src)
    ck = open_checkpoint(src, allow_pickle=True)
    out = tmp_path / "out"
    result = write_like(ck, out, flip_low_bit, metadata={"sanitized": "[]"})
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
    ]
    assert len(result.files) == 4
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert index["weight_map"]["c.weight"] == "model-00002-of-00002.safetensors"
    assert index["metadata"]["sanitized"] == "[]"
    back = open_checkpoint(out)
    assert back.format == "safetensors-sharded" and set(back) == set(tensors)
    for name, tensor in tensors.items():
        if tensor.is_floating_point():
            assert np.array_equal(words(back[name]), words(tensor) ^ 1)
        else:
            assert torch.equal(back[name], tensor)


# --- ONNX --------------------------------------------------------------------------------


def onnx_model(path: Path) -> dict[str, np.ndarray]:
    """A small graph with float32, float16, bfloat16, int64 and float8 initializers.

    Returns each initializer's words (float types) or values (int64), as written.
    """
    w32 = RNG.standard_normal((2, 3)).astype(np.float32)
    w16 = RNG.standard_normal(3).astype(np.float16)
    bf = bf16_bits(4)
    bf_values = (bf.astype(np.uint32) << 16).view(np.float32)
    shape = np.array([3, 2], dtype=np.int64)
    inits = [
        onnx.numpy_helper.from_array(w32, "w32"),
        onnx.numpy_helper.from_array(w16, "w16"),
        helper.make_tensor("wbf", TensorProto.BFLOAT16, [2, 2], bf_values.tolist()),
        onnx.numpy_helper.from_array(shape, "shape"),
        helper.make_tensor("f8", TensorProto.FLOAT8E4M3FN, [2], [1.0, 2.0]),
    ]
    nodes = [
        helper.make_node("Add", ["x", "w32"], ["y"]),
        helper.make_node("Reshape", ["y", "shape"], ["z"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [3, 2])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    helper.set_model_props(model, {"author": "someone"})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return {"w32": w32.view("<u4"), "w16": w16.view("<u2"), "wbf": bf, "shape": shape}


def test_onnx_reads_initializers(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    ref = onnx_model(path)
    ck = open_checkpoint(path)
    assert ck.format == "onnx" and list(ck) == ["w32", "w16", "wbf", "shape"]
    assert ck.metadata == {"author": "someone"}
    assert {k: ck.infos[k].dtype for k in ck} == {
        "w32": "float32",
        "w16": "float16",
        "wbf": "bfloat16",
        "shape": "int64",
    }
    assert ck.infos["wbf"].shape == (2, 2) and ck.infos["w32"].nbytes == 24
    assert "f8" in ck.skipped and ck.infos["f8"].dtype == "FLOAT8E4M3FN"
    for name in ("w32", "w16", "wbf"):
        assert np.array_equal(words(ck[name]), ref[name].reshape(-1))
    assert ck["shape"].dtype == torch.int64 and ck["shape"].tolist() == [3, 2]


def test_onnx_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    ref = onnx_model(path)
    before = digest(path)
    ck = open_checkpoint(path)
    meta = {"author": "someone", "sanitized": '[{"method": "x"}]'}
    result = write_like(ck, tmp_path / "out.onnx", flip_low_bit, metadata=meta)
    assert digest(path) == before
    model = onnx.load(result.output)
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["Add", "Reshape"]
    out = open_checkpoint(result.output)
    assert out.metadata == meta and list(out) == list(ck)
    for name in ("w32", "w16", "wbf"):
        assert out.infos[name] == replace(ck.infos[name], file=result.output)
        assert np.array_equal(words(out[name]), ref[name].reshape(-1) ^ 1)
    assert out["shape"].tolist() == [3, 2]
    f8 = {i.name: i for i in model.graph.initializer}["f8"]
    f8_in = {i.name: i for i in onnx.load(str(path)).graph.initializer}["f8"]
    assert f8 == f8_in


def test_onnx_garbage_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"this is not an onnx model at all, just text")
    with pytest.raises(ModelFileError, match=re.escape(str(path))):
        open_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(ModelFileError, match="not an ONNX model"):
        open_checkpoint(path)


# --- GGUF --------------------------------------------------------------------------------


def gguf_file(path: Path, *, endianess: gguf.GGUFEndian = gguf.GGUFEndian.LITTLE) -> dict:
    """A GGUF with F32, F16, BF16 and Q8_0 tensors; returns what was written."""
    f32 = RNG.standard_normal((2, 3)).astype(np.float32)
    f16 = RNG.standard_normal((4,)).astype(np.float16)
    bf = bf16_bits(6).reshape(3, 2)
    q8 = gguf.quants.quantize(
        RNG.standard_normal((2, 64)).astype(np.float32), gguf.GGMLQuantizationType.Q8_0
    )
    w = gguf.GGUFWriter(path, "llama", endianess=endianess)
    w.add_name("tiny")
    w.add_uint32("llama.block_count", 2)
    w.add_float32("llama.rope.freq_base", 10000.5)
    w.add_bool("llama.flag", True)
    w.add_array("tokenizer.ggml.tokens", ["<s>", "a", "b"])
    w.add_array("llama.ints", [1, 2, 3])
    w.add_tensor("f32", f32)
    w.add_tensor("f16", f16)
    w.add_tensor("bf16", bf, raw_dtype=gguf.GGMLQuantizationType.BF16)
    w.add_tensor("q8", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {"f32": f32.view("<u4"), "f16": f16.view("<u2"), "bf16": bf, "q8": q8}


def fields(path: Path) -> dict[str, tuple[list, object]]:
    reader = gguf.GGUFReader(path)
    return {
        k: (f.types, f.contents()) for k, f in reader.fields.items() if not k.startswith("GGUF.")
    }


def test_gguf_reads_plain_tensors_and_lists_quantized_ones(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    ref = gguf_file(path)
    ck = open_checkpoint(path)
    assert ck.format == "gguf" and list(ck) == ["f32", "f16", "bf16"]
    assert {k: (i.dtype, i.shape) for k, i in ck.infos.items()} == {
        "f32": ("float32", (2, 3)),
        "f16": ("float16", (4,)),
        "bf16": ("bfloat16", (3, 2)),
        "q8": ("Q8_0", (2, 64)),
    }
    assert "block-scaled" in ck.skipped["q8"]
    for name in ("f32", "f16", "bf16"):
        assert np.array_equal(words(ck[name]), ref[name].reshape(-1))
        assert ck[name].shape == ref[name].shape
    assert ck.metadata["general.architecture"] == "llama"
    assert ck.metadata["general.name"] == "tiny"
    assert ck.metadata["llama.block_count"] == "2"
    assert ck.metadata["llama.rope.freq_base"] == "10000.5"
    assert json.loads(ck.metadata["tokenizer.ggml.tokens"]) == ["<s>", "a", "b"]
    assert not any(k.startswith("GGUF.") for k in ck.metadata)


def test_gguf_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    ref = gguf_file(path)
    before = digest(path)
    ck = open_checkpoint(path)
    meta = {**ck.metadata, "sanitized": '[{"method": "x"}]', "covertml.tool": "0.1"}
    meta["general.name"] = "ignored: GGUF fields are copied with their types"
    result = write_like(ck, tmp_path / "out.gguf", flip_low_bit, metadata=meta)
    assert digest(path) == before
    got, want = fields(Path(result.output)), fields(path)
    assert got.pop("covertml.sanitized")[1] == '[{"method": "x"}]'
    assert got.pop("covertml.tool")[1] == "0.1"
    assert got == want and list(got) == list(want)
    out = open_checkpoint(result.output)
    assert out.metadata["sanitized"] == '[{"method": "x"}]'
    assert [(i.name, i.dtype, i.shape) for i in out.infos.values()] == [
        (i.name, i.dtype, i.shape) for i in ck.infos.values()
    ]
    for name in ("f32", "f16", "bf16"):
        assert np.array_equal(words(out[name]), ref[name].reshape(-1) ^ 1)
    reader = gguf.GGUFReader(result.output)
    q8 = next(t for t in reader.tensors if t.name == "q8")
    assert q8.tensor_type == gguf.GGMLQuantizationType.Q8_0
    assert np.array_equal(np.asarray(q8.data), ref["q8"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_gguf_truncated_or_big_endian_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    gguf_file(path)
    data = path.read_bytes()
    last = gguf.GGUFReader(path).tensors[-1]
    for cut in (last.data_offset + last.n_bytes - 1, 40):
        bad = tmp_path / f"cut{cut}.gguf"
        bad.write_bytes(data[:cut])
        with pytest.raises(ModelFileError, match=re.escape(str(bad))):
            open_checkpoint(bad)
    big = tmp_path / "big.gguf"
    gguf_file(big, endianess=gguf.GGUFEndian.BIG)
    with pytest.raises(ModelFileError, match="big-endian"):
        open_checkpoint(big)


# ------------------------------------------------------------- sharded safetensors oddities


def _two_shards(tmp_path: Path) -> Path:
    from safetensors.torch import save_file

    d = tmp_path / "ck"
    d.mkdir()
    a = {"a.weight": torch.ones(4, 4, dtype=torch.bfloat16)}
    b = {
        "b.weight": torch.full((3, 3), 2.0, dtype=torch.bfloat16),
        "a.weight": torch.full((4, 4), 7.0, dtype=torch.bfloat16),  # also here, not indexed
        "hidden": torch.full((5,), 3.0, dtype=torch.float16),  # in no index entry
    }
    save_file(a, d / "model-00001-of-00002.safetensors", metadata={"format": "pt", "s": "1"})
    save_file(b, d / "model-00002-of-00002.safetensors", metadata={"format": "pt", "s": "2"})
    index = {
        "metadata": {"total_size": 0},
        "weight_map": {
            "a.weight": "model-00001-of-00002.safetensors",
            "b.weight": "model-00002-of-00002.safetensors",
        },
    }
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    return d


def test_tensors_the_index_does_not_name_are_read_and_copied(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    ck = open_checkpoint(_two_shards(tmp_path))
    second = "model-00002-of-00002.safetensors"
    assert set(ck) == {"a.weight", "b.weight", "hidden", f"{second}:a.weight"}
    assert ck[f"{second}:a.weight"].float().unique().tolist() == [7.0]
    assert ck["a.weight"].float().unique().tolist() == [1.0]
    assert sorted(ck.extra["unlisted"]) == ["hidden", f"{second}:a.weight"]

    out = write_like(ck, tmp_path / "out", lambda i, v: v, metadata={**ck.metadata, "x": "y"})
    written = Path(out.output)
    shard2 = load_file(written / second)
    assert set(shard2) == {"b.weight", "a.weight", "hidden"}
    assert shard2["a.weight"].float().unique().tolist() == [7.0]
    index = json.loads((written / "model.safetensors.index.json").read_text())["weight_map"]
    assert index == {
        "a.weight": "model-00001-of-00002.safetensors",
        "b.weight": second,
        "hidden": second,
    }
    for name, own in (("model-00001-of-00002.safetensors", "1"), (second, "2")):
        with safe_open(str(written / name), "pt") as f:
            assert f.metadata() == {"format": "pt", "s": own, "x": "y"}  # each keeps its own


def test_written_files_follow_the_umask_not_mkstemp(tmp_path: Path) -> None:
    import os

    ck = open_checkpoint(_two_shards(tmp_path))
    old = os.umask(0o022)
    try:
        out = Path(write_like(ck, tmp_path / "out", lambda i, v: v, metadata={}).output)
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o755
    assert (out / "model-00001-of-00002.safetensors").stat().st_mode & 0o777 == 0o644
