"""``covertml scan`` / ``sanitize`` on real-world checkpoint layouts, checked from outside.

Every input is built here with ``safetensors.torch.save_file`` and hand-written shard
indexes (never with covertml's writers), and every output is read back with safetensors
and compared bit for bit against references computed here with numpy.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

SHARDS = tuple(f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3))
INDEX = "model.safetensors.index.json"
SIDE_FILES = {
    "config.json": b'{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}\n',
    "tokenizer.json": b'{"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0}}}\n',
    "tokenizer.model": bytes(range(256)) * 3,  # binary side file
}
PAYLOAD = b"Patient 0042, DOB 1971-03-04, diagnosis: J45.909 asthma; " * 400


# ----------------------------------------------------------------------------- builders


def _bf16(shape: tuple[int, ...], g: torch.Generator, *, scale: float = 0.02) -> torch.Tensor:
    return (torch.randn(shape, generator=g) * scale).to(torch.bfloat16)


def _norm(n: int, g: torch.Generator) -> torch.Tensor:
    return (1 + 0.01 * torch.randn(n, generator=g)).to(torch.bfloat16)


def _llama_shards(seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return {
        SHARDS[0]: {
            "model.embed_tokens.weight": _bf16((64, 32), g),
            "model.layers.0.input_layernorm.weight": _norm(32, g),
        },
        SHARDS[1]: {
            "model.layers.0.self_attn.q_proj.weight": _bf16((32, 32), g),
            "model.layers.0.self_attn.k_proj.weight": _bf16((32, 32), g),
            "model.layers.0.mlp.up_proj.weight": _bf16((128, 32), g),  # 4096: lsb-stats runs
        },
        SHARDS[2]: {
            "model.layers.0.post_attention_layernorm.weight": _norm(32, g),
            "model.norm.weight": _norm(32, g),
            "lm_head.weight": _bf16((64, 32), g),
            "model.rotary_emb.position_ids": torch.arange(48, dtype=torch.int64).mul(7919),
        },
    }


def _write_index(directory: Path, weight_map: dict[str, str], total_size: int = 0) -> None:
    index = {"metadata": {"total_size": total_size}, "weight_map": weight_map}
    (directory / INDEX).write_text(json.dumps(index, indent=2))


def _make_sharded(
    directory: Path, shards: dict[str, dict[str, torch.Tensor]], *, side_files: bool = True
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    weight_map, total = {}, 0
    for fname, tensors in shards.items():
        save_file(tensors, str(directory / fname), metadata={"format": "pt"})
        for name, t in tensors.items():
            weight_map[name] = fname
            total += t.numel() * t.element_size()
    _write_index(directory, weight_map, total)
    if side_files:
        for name, data in SIDE_FILES.items():
            (directory / name).write_bytes(data)
    return directory


def _llama_dir(root: Path, seed: int = 0) -> tuple[Path, dict[str, dict[str, torch.Tensor]]]:
    shards = _llama_shards(seed)
    return _make_sharded(root / "llama", shards), shards


def _with_payload(w: torch.Tensor, payload: bytes = PAYLOAD) -> torch.Tensor:
    """fp32 ``w`` with its low 16 mantissa bits replaced by plain text, in storage order."""
    words = w.contiguous().view(torch.int32).numpy().view(np.uint32).reshape(-1).copy()
    low = np.frombuffer(payload[: 2 * words.size], dtype="<u2").astype(np.uint32)
    assert low.size == words.size
    words = (words & np.uint32(0xFFFF0000)) | low
    return torch.from_numpy(words.view(np.int32)).view(torch.float32).reshape(w.shape)


def _fp32(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 0.02


def _flagged_file(path: Path) -> Path:
    save_file(
        {"encoder.weight": _with_payload(_fp32((128, 64), 1)), "encoder.bias": torch.zeros(64)},
        str(path),
    )
    return path


def _clean_file(path: Path) -> Path:
    save_file({"encoder.weight": _fp32((128, 64), 2), "encoder.bias": torch.zeros(64)}, str(path))
    return path


def _tree_digest(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _words(t: torch.Tensor) -> np.ndarray:
    """The bit patterns of a float tensor, flat, as signed ints of its width."""
    wide = torch.int32 if t.element_size() == 4 else torch.int16
    return t.contiguous().view(wide).numpy().reshape(-1)


def _one_line_error(code: int, err: str) -> None:
    assert code == 2, err
    assert err.strip(), "no error message on stderr"
    assert err.strip().count("\n") == 0, err
    assert "Traceback" not in err and err.startswith("error:"), err


def _scan_json(cli, *argv: str) -> tuple[int, dict | None, str]:
    code, out, err = cli("scan", *argv, "--json")
    return code, (json.loads(out) if out.strip() else None), err


def _flagged_findings(report: dict) -> list[tuple[str, str | None]]:
    return [
        (d["detector"], f["layer"])
        for d in report["detectors"]
        for f in d["findings"]
        if f["flagged"]
    ]


def _uri_path(uri: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(url2pathname(parsed.path)).resolve()
    assert not parsed.scheme, uri
    return (Path.cwd() / url2pathname(uri)).resolve()


# ------------------------------------------------------------- 1. a sharded Llama checkpoint


def test_scan_of_sharded_bf16_directory_covers_every_shard(cli, tmp_path) -> None:
    directory, shards = _llama_dir(tmp_path)
    code, report, err = _scan_json(cli, str(directory))
    assert code == 0, (err, report and _flagged_findings(report))
    assert report["verdict"] == "no findings" and report["flagged"] is False
    assert report["format"] == "safetensors-sharded"
    assert Path(report["model"]).parent == directory
    everything = [t for tensors in shards.values() for t in tensors.values()]
    assert report["values"] == sum(t.numel() for t in everything) == 10384
    assert report["skipped_tensors"] == {}
    # the per-tensor detectors visited the weight matrices of all three shards
    matrices = {n for tensors in shards.values() for n, t in tensors.items() if t.ndim == 2}
    by_detector = {d["detector"]: {f["layer"] for f in d["findings"]} for d in report["detectors"]}
    assert by_detector["distribution"] == matrices
    assert "model.layers.0.mlp.up_proj.weight" in by_detector["lsb-stats"]


def test_sanitize_sharded_directory_keeps_layout_and_rewrites_two_low_bits(cli, tmp_path) -> None:
    directory, shards = _llama_dir(tmp_path)
    before = _tree_digest(directory)
    out = tmp_path / "clean"
    code, stdout, err = cli("sanitize", str(directory), str(out), "-m", "lsb-randomize", "--json")
    assert code == 0, err
    assert _tree_digest(directory) == before  # the input is untouched, nothing added
    report = json.loads(stdout)

    # same file names, nothing else (no temporary files left over)
    assert sorted(p.name for p in out.iterdir()) == sorted(before)
    for name, data in SIDE_FILES.items():
        assert (out / name).read_bytes() == data

    # the index maps each tensor to the shard that really holds it
    index = json.loads((out / INDEX).read_text())
    loaded = {fname: load_file(str(out / fname)) for fname in SHARDS}
    actual = {name: fname for fname, tensors in loaded.items() for name in tensors}
    expected = {name: fname for fname, tensors in shards.items() for name in tensors}
    assert index["weight_map"] == actual == expected
    nbytes = sum(t.numel() * t.element_size() for ts in loaded.values() for t in ts.values())
    assert index["metadata"]["total_size"] == nbytes
    for fname in SHARDS:  # transformers refuses safetensors shards without format=pt
        with safe_open(str(out / fname), "pt") as f:
            assert (f.metadata() or {}).get("format") == "pt"

    old_words, new_words = [], []
    for fname, tensors in shards.items():
        for name, t in tensors.items():
            new = loaded[fname][name]
            assert new.dtype == t.dtype and new.shape == t.shape, name
            if not t.is_floating_point():
                assert new.numpy().tobytes() == t.numpy().tobytes(), name
                continue
            a, b = _words(t), _words(new)
            assert not ((a ^ b) & np.int16(~0b11)).any(), f"{name}: bits above bit 1 changed"
            old_words.append(a)
            new_words.append(b)
    a, b = np.concatenate(old_words), np.concatenate(new_words)
    assert a.size == 10336
    changed = a != b
    assert 0.72 < changed.mean() < 0.78  # 2 random bits: 3/4 of the values change
    low = np.bincount((b & 0b11).astype(np.int64), minlength=4) / b.size
    assert np.all(np.abs(low - 0.25) < 0.03), low  # the new low bits are uniform

    assert report["bits"] == {"bfloat16": 2}
    assert report["values"] == a.size
    assert report["values_changed"] == int(changed.sum())
    assert report["tensors_changed"] == 8
    assert Path(report["output"]) == out
    assert {Path(f).name for f in report["files"]} == set(before)


# ------------------------------------------------------------ 2. float16 single-file sanitize


@pytest.fixture
def fp16_file(tmp_path) -> Path:
    g = torch.Generator().manual_seed(3)
    path = tmp_path / "half.safetensors"
    save_file(
        {
            "w": torch.randn(64, 64, generator=g).half(),
            "b": (torch.randn(64, generator=g) * 0.1).half(),
            "step": torch.tensor([123456789], dtype=torch.int64),
        },
        str(path),
    )
    return path


def test_lsb_zero_three_bits_on_float16_matches_numpy(cli, fp16_file, tmp_path) -> None:
    out = tmp_path / "zero.safetensors"
    code, stdout, err = cli(
        "sanitize", str(fp16_file), str(out), "-m", "lsb-zero", "--bits", "3", "--json"
    )
    assert code == 0, err
    a, b = load_file(str(fp16_file)), load_file(str(out))
    assert set(b) == set(a)
    changed = 0
    for name, t in a.items():
        assert b[name].dtype == t.dtype and b[name].shape == t.shape
        if t.dtype == torch.int64:
            assert torch.equal(b[name], t)
            continue
        expect = _words(t) & np.int16(~0b111)
        assert np.array_equal(_words(b[name]), expect), name
        changed += int((_words(t) != expect).sum())
    report = json.loads(stdout)
    assert report["bits"] == {"float16": 3}
    assert report["values"] == 64 * 64 + 64 and report["values_changed"] == changed


def test_lsb_randomize_four_bits_on_float16(cli, fp16_file, tmp_path) -> None:
    out = tmp_path / "rand.safetensors"
    code, stdout, err = cli(
        "sanitize", str(fp16_file), str(out), "-m", "lsb-randomize", "--bits", "4", "--json"
    )
    assert code == 0, err
    a, b = load_file(str(fp16_file)), load_file(str(out))
    assert torch.equal(a["step"], b["step"])
    old = np.concatenate([_words(a["w"]), _words(a["b"])])
    new = np.concatenate([_words(b["w"]), _words(b["b"])])
    assert b["w"].dtype == torch.float16 and b["w"].shape == (64, 64)
    assert not ((old ^ new) & np.int16(~0b1111)).any()  # only the low 4 bits differ
    counts = np.bincount((new & 0b1111).astype(np.int64), minlength=16)
    assert counts.size == 16 and counts.min() > 0.6 * new.size / 16  # spread over all 16
    assert counts.max() < 1.4 * new.size / 16
    assert 0.9 < (old != new).mean() < 0.975  # 15/16 change
    assert json.loads(stdout)["bits"] == {"float16": 4}
    # another seed gives other bits; the same seed the same ones
    again = tmp_path / "again.safetensors"
    assert cli("sanitize", str(fp16_file), str(again), "-m", "lsb-randomize", "--bits", "4")[0] == 0
    assert again.read_bytes() == out.read_bytes()
    other = tmp_path / "other.safetensors"
    argv = ("sanitize", str(fp16_file), str(other), "-m", "lsb-randomize", "--bits", "4")
    assert cli(*argv, "--seed", "1")[0] == 0
    assert not np.array_equal(_words(load_file(str(other))["w"]), _words(b["w"]))


@pytest.mark.parametrize("method", ["lsb-randomize", "lsb-zero"])
def test_bits_beyond_the_float16_mantissa_is_a_one_line_error(
    cli, fp16_file, tmp_path, method
) -> None:
    out = tmp_path / "o.safetensors"
    code, _, err = cli("sanitize", str(fp16_file), str(out), "-m", method, "--bits", "11")
    _one_line_error(code, err)
    assert "11" in err and "float16" in err and "10" in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == [fp16_file.name]


def test_bits_beyond_bfloat16_mantissa_in_a_sharded_directory_writes_nothing(cli, tmp_path) -> None:
    directory, _ = _llama_dir(tmp_path)
    out = tmp_path / "o"
    code, _, err = cli("sanitize", str(directory), str(out), "-m", "lsb-zero", "--bits", "8")
    _one_line_error(code, err)
    assert "bfloat16" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["llama"]


# -------------------------------------------------------------------------------- 3. SARIF


def _check_sarif_against(sarif: dict, report: dict) -> list[dict]:
    assert sarif["version"] == "2.1.0"
    assert "sarif" in sarif["$schema"]
    (run,) = sarif["runs"]
    assert run["tool"]["driver"]["name"] == "covertml"
    rules = run["tool"]["driver"]["rules"]
    results = run["results"]
    flagged = _flagged_findings(report)
    assert len(results) == len(flagged)
    seen = []
    for r in results:
        assert r["ruleId"] and r["level"] in {"error", "warning", "note"}
        assert r["message"]["text"]
        assert rules[r["ruleIndex"]]["id"] == r["ruleId"]
        loc = r["locations"][0]
        assert loc["physicalLocation"]["artifactLocation"]["uri"]
        seen.append((r["ruleId"], loc["logicalLocations"][0]["name"]))
    assert sorted(seen) == sorted((d, layer or "(model)") for d, layer in flagged)
    return results


def test_sarif_of_a_flagged_file(cli, tmp_path) -> None:
    model = _flagged_file(tmp_path / "leaky.safetensors")
    sarif_path = tmp_path / "out.sarif"
    code, report, err = _scan_json(cli, str(model), "--sarif", str(sarif_path))
    assert code == 1, err
    assert report["verdict"] == "suspicious"
    assert ("lsb-stats", "encoder.weight") in _flagged_findings(report)
    results = _check_sarif_against(json.loads(sarif_path.read_text()), report)
    for r in results:
        uri = r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        assert _uri_path(uri) == model.resolve()
        assert r["locations"][0]["logicalLocations"][0]["name"] == "encoder.weight"
        assert "encoder.weight" in r["message"]["text"]


def test_sarif_of_a_sharded_directory_points_at_the_shard(cli, tmp_path, monkeypatch) -> None:
    directory = _make_sharded(
        tmp_path / "ck",
        {
            "model-00001-of-00002.safetensors": {"encoder.weight": _fp32((64, 64), 4)},
            "model-00002-of-00002.safetensors": {
                "decoder.weight": _with_payload(_fp32((128, 64), 5)),
                "decoder.bias": torch.zeros(64),
            },
        },
        side_files=False,
    )
    monkeypatch.chdir(tmp_path)  # locations under the working directory are relative
    code, report, err = _scan_json(cli, "ck", "--sarif", "scan.sarif")
    assert code == 1, err
    assert _flagged_findings(report) == [("lsb-stats", "decoder.weight")]
    (result,) = _check_sarif_against(json.loads(Path("scan.sarif").read_text()), report)
    uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert not uri.startswith(("/", "file:")), uri
    assert _uri_path(uri) == (directory / "model-00002-of-00002.safetensors").resolve()
    assert result["locations"][0]["logicalLocations"][0]["name"] == "decoder.weight"


def test_sarif_of_a_clean_model_has_no_results(cli, tmp_path) -> None:
    model = _clean_file(tmp_path / "clean.safetensors")
    sarif_path = tmp_path / "clean.sarif"
    code, _, err = cli("scan", str(model), "--sarif", str(sarif_path))
    assert code == 0, err
    sarif = json.loads(sarif_path.read_text())
    assert sarif["version"] == "2.1.0" and sarif["runs"][0]["results"] == []
    assert sarif["runs"][0]["invocations"][0]["executionSuccessful"] is True


# ------------------------------------------------------------------------------- 4. errors


def _missing_shard(root: Path) -> tuple[Path, str]:
    directory, _ = _llama_dir(root)
    (directory / SHARDS[1]).unlink()
    return directory, SHARDS[1]


def _truncated_shard(root: Path) -> tuple[Path, str]:
    directory, _ = _llama_dir(root)
    shard = directory / SHARDS[1]
    shard.write_bytes(shard.read_bytes()[:-1000])
    return directory, "truncated"


def _index_names_absent_tensor(root: Path) -> tuple[Path, str]:
    directory, shards = _llama_dir(root)
    weight_map = {n: f for f, ts in shards.items() for n in ts}
    weight_map["model.layers.0.self_attn.v_proj.weight"] = SHARDS[1]
    _write_index(directory, weight_map)
    return directory, "model.layers.0.self_attn.v_proj.weight"


def _index_names_wrong_shard(root: Path) -> tuple[Path, str]:
    directory, shards = _llama_dir(root)
    weight_map = {n: f for f, ts in shards.items() for n in ts}
    weight_map["lm_head.weight"] = SHARDS[0]  # it is in the third
    _write_index(directory, weight_map)
    return directory, "lm_head.weight"


def _not_an_index(root: Path) -> tuple[Path, str]:
    directory, _ = _llama_dir(root)
    (directory / INDEX).write_text('{"weight_map": ')
    return directory / INDEX, "not a shard index"  # the directory alone scans as a tree


def _unknown_format(root: Path) -> tuple[Path, str]:
    path = root / "model.xyz"
    path.write_bytes(b"this is not a model, just some bytes\n" * 20)
    return path, "model.xyz"


def _npz(root: Path) -> tuple[Path, str]:
    path = root / "weights.npz"
    np.savez(path, w=np.zeros((4, 4), np.float32))
    return path, "weights.npz"


def _pickle(root: Path) -> tuple[Path, str]:
    path = root / "pytorch_model.bin"
    torch.save({"w": torch.zeros(4, 4)}, path)
    return path, "--allow-pickle"


BROKEN = {
    "missing-shard": _missing_shard,
    "truncated-shard": _truncated_shard,
    "index-names-absent-tensor": _index_names_absent_tensor,
    "index-names-wrong-shard": _index_names_wrong_shard,
    "corrupt-index": _not_an_index,
    "unknown-format": _unknown_format,
    "npz": _npz,
    "pickle-without-allow-pickle": _pickle,
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_unreadable_checkpoints_are_one_line_errors(cli, tmp_path, case) -> None:
    (tmp_path / "in").mkdir()
    path, needle = BROKEN[case](tmp_path / "in")
    before = _tree_digest(tmp_path)
    code, out, err = cli("scan", str(path))
    _one_line_error(code, err)
    assert needle in err, err
    assert out == ""
    code, out, err = cli("scan", str(path), "--json")
    _one_line_error(code, err)
    assert out == ""
    dst = tmp_path / "out"
    code, _, err = cli("sanitize", str(path), str(dst), "-m", "lsb-zero")
    _one_line_error(code, err)
    assert needle in err, err
    assert _tree_digest(tmp_path) == before and not dst.exists()  # nothing half-written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_pickle_is_read_with_allow_pickle(cli, tmp_path) -> None:
    path, _ = _pickle(tmp_path)
    code, report, err = _scan_json(cli, str(path), "--allow-pickle")
    assert code == 0, err
    assert report["format"] == "pickle" and report["values"] == 16


def test_sanitize_of_a_directory_without_checkpoint_is_one_line(cli, tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("no weights here\n")
    code, _, err = cli("sanitize", str(empty), str(tmp_path / "out"), "-m", "lsb-zero")
    _one_line_error(code, err)
    assert "no model file" in err and not (tmp_path / "out").exists()


def test_scan_of_a_directory_without_checkpoint_is_an_error(cli, tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("no weights here\n")
    code, _, err = cli("scan", str(empty))
    _one_line_error(code, err)
    assert "no model file" in err or "no checkpoint" in err


def test_scan_sees_a_tensor_the_index_does_not_list(cli, tmp_path) -> None:
    directory, shards = _llama_dir(tmp_path)
    hidden = dict(shards[SHARDS[1]])
    hidden["extra.payload"] = _with_payload(_fp32((128, 64), 6))
    save_file(hidden, str(directory / SHARDS[1]), metadata={"format": "pt"})  # index unchanged
    code, out, err = cli("scan", str(directory), "--json")
    assert code != 0 or "extra.payload" in out, ("the unlisted tensor went unseen", err)


def test_sanitize_does_not_silently_drop_an_unlisted_tensor(cli, tmp_path) -> None:
    directory, shards = _llama_dir(tmp_path)
    hidden = dict(shards[SHARDS[1]])
    hidden["extra.payload"] = _fp32((16, 16), 7)
    save_file(hidden, str(directory / SHARDS[1]), metadata={"format": "pt"})
    out = tmp_path / "clean"
    code, stdout, err = cli("sanitize", str(directory), str(out), "-m", "lsb-zero", "--json")
    if code != 0:  # refusing, with the reason, is as good as keeping or reporting it
        _one_line_error(code, err)
        assert "extra.payload" in err
        return
    kept = "extra.payload" in load_file(str(out / SHARDS[1]))
    assert kept or "extra.payload" in stdout, "the unlisted tensor was dropped without a word"


# ------------------------------------------------------------------- 5. several paths at once


def test_batch_errors_are_reported_on_stderr(cli, tmp_path) -> None:
    clean = _clean_file(tmp_path / "clean.safetensors")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(clean.read_bytes()[:500])
    code, _, err = cli("scan", str(clean), str(broken))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(broken) in lines[0] and "truncated" in lines[0], err


def test_several_paths_in_one_scan(cli, tmp_path) -> None:
    clean = _clean_file(tmp_path / "clean.safetensors")
    directory, shards = _llama_dir(tmp_path)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(clean.read_bytes()[:500])
    flagged = _flagged_file(tmp_path / "leaky.safetensors")
    index = str(directory / INDEX)

    sarif_path = tmp_path / "batch.sarif"
    args = (str(clean), str(directory), str(broken), "--sarif", str(sarif_path))
    code, batch, err = _scan_json(cli, *args)
    assert code == 2, err
    assert batch["checkpoints"] == 3 and batch["flagged"] == []
    assert list(batch["errors"]) == [str(broken)]
    assert "truncated" in batch["errors"][str(broken)]
    status = {s["model"]: s for s in batch["scans"]}
    assert set(status) == {str(clean), index}
    assert status[str(clean)]["verdict"] == "no findings"
    assert status[str(clean)]["values"] == 128 * 64 + 64
    assert status[index]["format"] == "safetensors-sharded"
    assert status[index]["values"] == sum(t.numel() for ts in shards.values() for t in ts.values())
    invocation = json.loads(sarif_path.read_text())["runs"][0]["invocations"][0]
    assert invocation["executionSuccessful"] is False
    assert any(
        str(broken) in n["message"]["text"] for n in invocation["toolExecutionNotifications"]
    )

    code, batch, err = _scan_json(cli, str(clean), str(directory))
    assert code == 0, err
    assert batch["checkpoints"] == 2 and batch["errors"] == {} and batch["flagged"] == []

    code, batch, err = _scan_json(cli, str(clean), str(directory), str(flagged))
    assert code == 1, err
    assert batch["flagged"] == [str(flagged)] and batch["errors"] == {}
    verdicts = {s["model"]: s["verdict"] for s in batch["scans"]}
    assert verdicts == {str(clean): "no findings", index: "no findings", str(flagged): "suspicious"}

    code, out, err = cli("scan", str(clean), str(directory), str(broken))  # the table form
    assert code == 2 and "error" in out and str(broken) in err and "truncated" in err


def test_a_tree_of_checkpoints_lists_shards_once(cli, tmp_path) -> None:
    root = tmp_path / "hub"
    directory, _ = _llama_dir(root)
    (root / "other").mkdir()
    _clean_file(root / "other" / "model.safetensors")
    code, batch, err = _scan_json(cli, str(root))
    assert code == 0, err
    models = sorted(s["model"] for s in batch["scans"])
    assert models == sorted([str(directory / INDEX), str(root / "other" / "model.safetensors")])


# ------------------------------------------------------------- 6. never writes over the input


def test_sanitize_refuses_to_write_over_its_input(cli, tmp_path, fp16_file) -> None:
    directory, _ = _llama_dir(tmp_path)
    before = _tree_digest(tmp_path)
    index = directory / INDEX
    cases = [
        (fp16_file, fp16_file),
        (directory, directory),
        (directory, directory / ".." / "llama"),
        (index, index),
        (index, directory),
        (directory, directory / SHARDS[0]),
        (directory / SHARDS[1], directory),
    ]
    for src, dst in cases:
        for extra in ((), ("--overwrite",)):
            code, _, err = cli("sanitize", str(src), str(dst), "-m", "lsb-zero", *extra)
            _one_line_error(code, err)
            assert "input" in err or "already exists" in err, (src, dst, extra, err)
            if extra:
                assert "input" in err, (src, dst, err)
    assert _tree_digest(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["llama", fp16_file.name])


def test_sanitize_into_an_existing_directory_needs_overwrite(cli, tmp_path) -> None:
    directory, _ = _llama_dir(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = cli("sanitize", str(directory), str(out), "-m", "lsb-zero")
    _one_line_error(code, err)
    assert "--overwrite" in err and (out / "keep.txt").read_text() == "mine"
    code, _, err = cli("sanitize", str(directory), str(out), "-m", "lsb-zero", "--overwrite")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted(_tree_digest(directory))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["llama", "out"]  # no leftovers
