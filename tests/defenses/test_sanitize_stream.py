"""Sanitizing files chunk by chunk: checked bit by bit against a NumPy reference.

The inputs are written with ``safetensors`` itself and read back with it, so nothing of
covertml's reader or writer is trusted; the chunk and part sizes are shrunk so that tensors
span several chunks and several threads' parts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from covertml.defenses import create_sanitizer, files, stream
from covertml.defenses.stream import Tally, WordStream
from covertml.models.checkpoint import info_of

SIGNED = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}
MASK = {torch.float32: 0xFFFFFFFF, torch.float16: 0xFFFF, torch.bfloat16: 0xFFFF}


def words(t: torch.Tensor) -> np.ndarray:
    """Unsigned bit patterns, computed with NumPy alone."""
    raw = t.contiguous().view(SIGNED[t.dtype]).numpy().astype(np.int64)
    return raw & MASK[t.dtype]


def values64(t: torch.Tensor) -> np.ndarray:
    return t.to(torch.float64).numpy()


@pytest.fixture
def small_chunks(monkeypatch) -> None:
    monkeypatch.setattr(files, "CHUNK", 5000)
    monkeypatch.setattr(stream, "PART", 1100)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    g = torch.Generator().manual_seed(3)
    tensors = {
        "emb.weight": (torch.randn(120, 97, generator=g) * 0.02).to(torch.bfloat16),
        "norm.weight": (1 + 0.01 * torch.randn(97, generator=g)).to(torch.bfloat16),
        "head.weight": (torch.randn(64, 130, generator=g) * 0.05).to(torch.float16),
        "head.bias": torch.randn(64, generator=g),
        "big.weight": torch.randn(9000, generator=g),  # two chunks of 5000
        "steps": torch.arange(7, dtype=torch.int64),
    }
    path = tmp_path / "m.safetensors"
    save_file(tensors, path, metadata={"owner": "someone else"})
    return path


DEFAULT_BITS = {torch.float32: 16, torch.float16: 5, torch.bfloat16: 2}


@pytest.mark.parametrize("seed", [0, 7])
def test_lsb_randomize_changes_only_the_default_low_bits(model, tmp_path, small_chunks, seed):
    before = load_file(model)
    out = tmp_path / "clean.safetensors"
    result = files.sanitize_file(model, out, create_sanitizer("lsb-randomize"), seed=seed)
    after = load_file(out)
    assert list(after) == list(before) and result.bits == {
        "bfloat16": 2,
        "float16": 5,
        "float32": 16,
    }
    changed = total = count = 0
    for name, x in before.items():
        y = after[name]
        assert y.dtype == x.dtype and y.shape == x.shape
        if not x.is_floating_point():
            assert torch.equal(x, y)
            continue
        bits = DEFAULT_BITS[x.dtype]
        wx, wy = words(x), words(y)
        low = (1 << bits) - 1
        assert not ((wx ^ wy) & ~low).any(), name  # sign, exponent, high mantissa kept
        # the new low bits are uniform: every value of them shows up, none dominates
        counts = np.bincount((wy & low).reshape(-1), minlength=low + 1)
        if wy.size >= 50 * (low + 1):
            assert counts.min() > 0 and counts.max() < 3 * wy.size / (low + 1), name
        changed += int((wx != wy).sum())
        total += float(np.abs(values64(y) - values64(x)).sum())
        count += x.numel()
    assert result.values == count
    assert result.values_changed == changed
    assert result.mean_abs_change == pytest.approx(total / count, rel=1e-4)
    assert result.tensors_changed == 5
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
    assert meta["owner"] == "someone else" and "lsb-randomize" in meta["sanitized"]


def test_lsb_zero_matches_the_numpy_reference(model, tmp_path, small_chunks):
    before = load_file(model)
    out = tmp_path / "zero.safetensors"
    files.sanitize_file(model, out, create_sanitizer("lsb-zero", bits=6))
    after = load_file(out)
    for name, x in before.items():
        if x.is_floating_point():
            np.testing.assert_array_equal(words(after[name]), words(x) & ~0x3F, err_msg=name)


def test_same_seed_same_file_and_another_seed_another(model, tmp_path, small_chunks):
    s = create_sanitizer("lsb-randomize", bits=7)
    paths = [tmp_path / f"{k}.safetensors" for k in "abc"]
    for path, seed in zip(paths, (1, 1, 2), strict=True):
        files.sanitize_file(model, path, s, seed=seed)
    a, b, c = (load_file(p) for p in paths)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["emb.weight"], c["emb.weight"])


def test_chunked_stream_matches_the_whole_tensor_bits_and_threads_do_not_matter():
    x = (torch.randn(50_000) * 3).to(torch.float16)
    outs = []
    for workers in (1, 2, 3):
        tally = Tally()
        ws = WordStream(
            create_sanitizer("lsb-randomize", bits=9),
            rng=np.random.default_rng(5),
            tally=tally,
            size=x.numel(),
            workers=workers,
        )
        outs.append(ws(info_of("x", x), x).clone())
        ws.close()
        wx, wy = words(x), words(outs[-1])
        assert tally.changed == int((wx != wy).sum()) and tally.values == x.numel()
        assert tally.total == pytest.approx(
            float(np.abs(values64(outs[-1]) - values64(x)).sum()), rel=1e-4
        )
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[1], outs[2])


def test_tally_counts_nan_and_sign_changes_by_bit_pattern():
    before = torch.tensor([0.0, 1.0, float("nan"), 2.0], dtype=torch.bfloat16)
    after = torch.tensor([-0.0, 1.0, float("nan"), 2.5], dtype=torch.bfloat16)
    tally = Tally()
    tally.add("t", before, after)
    assert tally.changed == 2 and tally.total == pytest.approx(0.5)


def test_dtypes_without_a_bit_format_are_named_not_silently_passed(tmp_path, cli):
    from covertml.audit import scan_paths

    src = tmp_path / "odd.safetensors"
    tensors = {
        "w": torch.randn(64, 64),
        "d": torch.randn(10, dtype=torch.float64),
        "e": torch.randn(8, 8).to(torch.float8_e4m3fn),
    }
    save_file(tensors, src)
    code, _, err = cli("sanitize", str(src), str(tmp_path / "a.safetensors"), "-m", "lsb-zero")
    assert code == 2 and "tensor d is float64" in err and len(err.strip().splitlines()) == 1
    out = tmp_path / "b.safetensors"
    code, _, err = cli("sanitize", str(src), str(out), "-m", "lsb-zero", "--scope", "weights")
    assert code == 0, err
    after = load_file(out)
    assert torch.equal(after["d"], tensors["d"])  # 1-D: out of scope, copied as it was
    assert torch.equal(after["e"].view(torch.uint8), tensors["e"].view(torch.uint8))
    report = scan_paths([src], detectors=["lsb-stats"]).reports[0]
    assert set(report.skipped_tensors) == {"d", "e"}
    assert "float64" in report.skipped_tensors["d"]


def test_a_slow_disk_does_not_change_a_byte(model, tmp_path, small_chunks, monkeypatch):
    """The writer thread lags behind: the ring of output buffers must not be reused early."""
    import time

    from covertml.models.checkpoint import background

    fast = tmp_path / "fast.safetensors"
    files.sanitize_file(model, fast, create_sanitizer("lsb-randomize", bits=7), seed=3)
    real_run = background.BackgroundWriter._run

    def slow_run(self):
        write = self.handle.write

        def lagging(data):
            time.sleep(0.01)
            return write(data)

        self.handle = type("Slow", (), {"write": staticmethod(lagging)})()
        real_run(self)

    monkeypatch.setattr(background.BackgroundWriter, "_run", slow_run)
    slow = tmp_path / "slow.safetensors"
    files.sanitize_file(model, slow, create_sanitizer("lsb-randomize", bits=7), seed=3)
    assert slow.read_bytes() == fast.read_bytes()
