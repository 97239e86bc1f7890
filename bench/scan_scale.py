"""Scan and sanitize time and peak memory of sharded bf16 checkpoints at 1B, 3B and 7B.

Usage:
    python bench/scan_scale.py --sizes tiny                 # smoke run: a 2-layer checkpoint
    python bench/scan_scale.py                              # 1b, 3b and 7b (~22 GB of disk)
    python bench/scan_scale.py --sizes 1b --keep            # keep the files for a rerun

Writes Hugging Face style sharded safetensors checkpoints (BF16, Llama tensor names and
shapes) under ``--workdir``: shards ``model-0000N-of-0000M.safetensors`` of at most
``--shard-gb``, ``model.safetensors.index.json`` and a small ``config.json``. The values are
slices, at random offsets, of one pool of normal(0, 0.02) bf16 words (norm weights: near 1),
so generation runs at disk speed and in bounded memory; it is timed apart from the targets,
and skipped where a complete checkpoint is already there.

Each measurement runs in a child process, so its wall time and peak RSS (``wait4``) are its
own: reading every shard once (the I/O baseline), ``covertml scan DIR --json`` (the default
scan), and for the 1B checkpoint ``covertml sanitize DIR OUT --method lsb-randomize`` timed
against copying the same files (``shutil.copyfile``) before and after it.

Targets (the issue, on a 2-core machine): the default scan of 7B parameters in <= 60 s and
<= 2 GB peak RSS; ``lsb-randomize`` of the 1B checkpoint in <= 3x the time of the copy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common import OUT, markdown_table, save_record

GB = 1e9
INDEX = "model.safetensors.index.json"
POOL_WORDS = 64 * 2**20  # 64M bf16 words (128 MB) of weights, reused at random offsets
NORM_POOL_WORDS = 2**20
CHUNK_WORDS = 16 * 2**20  # 32 MB per write
SCAN_SECONDS, SCAN_RSS_GB, SANITIZE_RATIO = 60.0, 2.0, 3.0
SETTLE_SECONDS = 10.0  # idle before each timed copy/sanitize (see measure_sanitize_vs_copy)
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


@dataclass(frozen=True)
class Config:
    """Llama-style transformer shapes."""

    name: str
    hidden: int
    intermediate: int
    layers: int
    vocab: int
    kv: int  # k_proj / v_proj output size (num_key_value_heads * head_dim)
    tied: bool  # tied embeddings: no lm_head.weight

    def tensors(self) -> list[tuple[str, tuple[int, ...]]]:
        h, i, kv = self.hidden, self.intermediate, self.kv
        out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (self.vocab, h))]
        for n in range(self.layers):
            p = f"model.layers.{n}"
            out += [
                (f"{p}.self_attn.q_proj.weight", (h, h)),
                (f"{p}.self_attn.k_proj.weight", (kv, h)),
                (f"{p}.self_attn.v_proj.weight", (kv, h)),
                (f"{p}.self_attn.o_proj.weight", (h, h)),
                (f"{p}.mlp.gate_proj.weight", (i, h)),
                (f"{p}.mlp.up_proj.weight", (i, h)),
                (f"{p}.mlp.down_proj.weight", (h, i)),
                (f"{p}.input_layernorm.weight", (h,)),
                (f"{p}.post_attention_layernorm.weight", (h,)),
            ]
        out.append(("model.norm.weight", (h,)))
        if not self.tied:
            out.append(("lm_head.weight", (self.vocab, h)))
        return out

    @property
    def parameters(self) -> int:
        return sum(math.prod(s) for _, s in self.tensors())

    @property
    def nbytes(self) -> int:
        return 2 * self.parameters

    def hf_config(self) -> dict[str, Any]:
        heads = max(1, self.hidden // 128)
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": self.hidden,
            "intermediate_size": self.intermediate,
            "num_hidden_layers": self.layers,
            "num_attention_heads": heads,
            "num_key_value_heads": max(1, self.kv * heads // self.hidden),
            "vocab_size": self.vocab,
            "tie_word_embeddings": self.tied,
            "torch_dtype": "bfloat16",
            "rms_norm_eps": 1e-5,
            "note": "synthetic weights written by bench/scan_scale.py",
        }


CONFIGS = {
    "tiny": Config("tiny", 256, 688, 2, 1000, 256, tied=False),
    "1b": Config("1b", 2048, 8192, 16, 128256, 512, tied=True),
    "3b": Config("3b", 3072, 8192, 28, 128256, 1024, tied=True),
    "7b": Config("7b", 4096, 11008, 32, 32000, 4096, tied=False),
}


# ---------------------------------------------------------------- the checkpoint on disk


def to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 words, rounding to nearest even on the uint32 bits."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")


def make_pool(rng: np.random.Generator, n: int, mean: float, std: float) -> np.ndarray:
    pool = np.empty(n, dtype="<u2")
    step = 8 * 2**20  # bounded temporaries: 8M float32 at a time
    for a in range(0, n, step):
        b = min(n, a + step)
        pool[a:b] = to_bf16(rng.standard_normal(b - a, dtype=np.float32) * std + mean)
    return pool


def plan_shards(cfg: Config, shard_bytes: int) -> list[list[tuple[str, tuple[int, ...]]]]:
    """Tensors grouped into shards of at most ``shard_bytes`` (a larger tensor goes alone)."""
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in cfg.tensors():
        n = 2 * math.prod(shape)
        if shards[-1] and size + n > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += n
    return shards


def shard_header(tensors: list[tuple[str, tuple[int, ...]]]) -> bytes:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in tensors:
        n = 2 * math.prod(shape)
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw


def shard_names(count: int) -> list[str]:
    return [f"model-{k + 1:05d}-of-{count:05d}.safetensors" for k in range(count)]


def expected_files(cfg: Config, shard_bytes: int) -> dict[str, int]:
    """Shard file name -> its size in bytes."""
    shards = plan_shards(cfg, shard_bytes)
    return {
        name: len(shard_header(ts)) + sum(2 * math.prod(s) for _, s in ts)
        for name, ts in zip(shard_names(len(shards)), shards, strict=True)
    }


def is_complete(path: Path, cfg: Config, shard_bytes: int) -> bool:
    """A checkpoint this script wrote with these settings, every shard in full."""
    try:
        index = json.loads((path / INDEX).read_text())
    except (OSError, ValueError):
        return False
    want = expected_files(cfg, shard_bytes)
    if index.get("metadata", {}).get("total_size") != cfg.nbytes:
        return False
    if set(index.get("weight_map", {}).values()) != set(want):
        return False
    return all((path / f).is_file() and (path / f).stat().st_size == n for f, n in want.items())


def generate(path: Path, cfg: Config, shard_bytes: int, seed: int) -> dict[str, Any]:
    """Writes the checkpoint; the index last, so its presence means the shards are whole."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    pool = make_pool(rng, min(POOL_WORDS, cfg.parameters), 0.0, 0.02)
    norms = make_pool(rng, NORM_POOL_WORDS, 1.0, 0.02)
    pool_seconds = time.perf_counter() - t0
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    shards = plan_shards(cfg, shard_bytes)
    weight_map: dict[str, str] = {}
    written = 0
    for fname, tensors in zip(shard_names(len(shards)), shards, strict=True):
        with open(path / fname, "wb") as f:
            head = shard_header(tensors)
            f.write(head)
            written += len(head)
            for name, shape in tensors:
                src = norms if len(shape) == 1 else pool
                left = math.prod(shape)
                at = int(rng.integers(src.size))
                while left:
                    k = min(left, CHUNK_WORDS, src.size - at)
                    f.write(memoryview(src[at : at + k]))
                    left -= k
                    written += 2 * k
                    at = (at + k) % src.size
                weight_map[name] = fname
    (path / "config.json").write_text(json.dumps(cfg.hf_config(), indent=2) + "\n")
    index = {"metadata": {"total_size": cfg.nbytes}, "weight_map": weight_map}
    tmp = path / (INDEX + ".tmp")
    tmp.write_text(json.dumps(index, indent=2) + "\n")
    tmp.rename(path / INDEX)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "pool_seconds": pool_seconds,
        "bytes": written,
        "shards": len(shards),
        "mb_per_s": written / 1e6 / seconds,
    }


# ---------------------------------------------------------------- measured children

READ_CODE = """
import sys
buf = bytearray(64 * 2**20)
view = memoryview(buf)
total = 0
for p in sys.argv[1:]:
    with open(p, "rb", buffering=0) as f:
        while n := f.readinto(view):
            total += n
print(total)
"""

COPY_CODE = """
import pathlib, shutil, sys
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
dst.mkdir(parents=True)
total = 0
for p in sorted(src.iterdir()):
    if p.is_file():
        shutil.copyfile(p, dst / p.name)
        total += p.stat().st_size
print(total)
"""


def child_env(threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    if threads is not None:
        for var in THREAD_VARS:
            env[var] = str(threads)
    return env


# Children are started by this small launcher (``python -S``: no site, a few MB), not by
# the benchmark itself: at exec a child's peak RSS starts from the high-water mark of the
# process that spawned it, which here holds torch and the generator's pool.
LAUNCHER = """
import os, signal, sys, time
out, err, timeout, cmd = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4:]
flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
fds = [(os.POSIX_SPAWN_DUP2, os.open(p, flags, 0o600), k) for k, p in ((1, out), (2, err))]
t = time.perf_counter()
pid = os.posix_spawn(cmd[0], cmd, os.environ, file_actions=fds)
signal.signal(signal.SIGALRM, lambda *a: os.kill(pid, signal.SIGKILL))
signal.setitimer(signal.ITIMER_REAL, timeout)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - t
print(os.waitstatus_to_exitcode(status), repr(seconds), usage.ru_maxrss)
"""


def run_child(
    cmd: list[str], env: dict[str, str], timeout: float, sync_after: bool = False
) -> dict[str, Any]:
    """Runs ``cmd``; its exit code, wall time, peak RSS (GB), stdout and stderr tail.

    ``sync_after``: also time flushing what it wrote to disk (``sync_seconds``).
    """
    os.sync()  # earlier writes are flushed before the clock starts, not during the run
    with tempfile.TemporaryDirectory() as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        launch = [sys.executable, "-S", "-c", LAUNCHER, str(out), str(err), str(timeout), *cmd]
        done = subprocess.run(launch, capture_output=True, text=True, env=env, check=False)
        t = time.perf_counter()
        if sync_after:
            os.sync()
        sync_seconds = time.perf_counter() - t if sync_after else None
        stdout = out.read_text(errors="replace") if out.exists() else ""
        stderr = err.read_text(errors="replace") if err.exists() else ""
    try:
        code_s, seconds_s, maxrss_s = done.stdout.split()
        code, seconds, maxrss_kib = int(code_s), float(seconds_s), int(maxrss_s)
    except ValueError:  # the launcher itself failed
        code, seconds, maxrss_kib = -1, 0.0, 0
        stderr += f"\n(launcher: exit {done.returncode}) {done.stderr[-1000:]}"
    return {
        "cmd": [Path(c).name if c == sys.executable else c for c in cmd],
        "exit": code,
        "seconds": seconds,
        "peak_rss_gb": maxrss_kib * 1024 / GB,  # ru_maxrss: KiB on Linux
        "sync_seconds": sync_seconds,
        "timed_out": code == -9 and seconds >= timeout,
        "stdout": stdout,
        "stderr_tail": stderr[-2000:],
    }


def report_failure(what: str, r: dict[str, Any]) -> None:
    why = "timed out" if r["timed_out"] else f"exit {r['exit']}"
    print(f"  !! {what} failed ({why}) after {r['seconds']:.1f} s; stderr tail:", flush=True)
    for line in r["stderr_tail"].strip().splitlines()[-15:]:
        print(f"     {line}", flush=True)


def parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    for opener in ("{", "["):  # anything printed before the JSON
        at = text.find(opener)
        if at >= 0:
            try:
                return json.loads(text[at:])
            except ValueError:
                continue
    return None


def scan_summary(doc: Any) -> dict[str, Any]:
    """Verdict and findings of a scan's JSON, whatever of them is there."""
    if isinstance(doc, dict) and "verdict" not in doc and isinstance(doc.get("scans"), list):
        doc = doc["scans"][0] if len(doc["scans"]) == 1 else doc
    if not isinstance(doc, dict):
        return {"json": doc is not None}
    out: dict[str, Any] = {"json": True}
    for key in ("verdict", "flagged", "tests", "values", "format"):
        if key in doc:
            out[key] = doc[key]
    if "seconds" in doc:  # the scan's own clock, inside the process
        out["report_seconds"] = doc["seconds"]
    reports = doc.get("detectors", doc.get("reports"))
    if isinstance(reports, list):
        findings = [f for r in reports if isinstance(r, dict) for f in r.get("findings") or []]
        out["detectors"] = [r.get("detector") for r in reports if isinstance(r, dict)]
        out["findings"] = len(findings)
        out["flagged_findings"] = sum(
            bool(f.get("flagged")) for f in findings if isinstance(f, dict)
        )
    if isinstance(doc.get("skipped"), dict):
        out["skipped"] = doc["skipped"]
    if isinstance(doc.get("skipped_tensors"), list | dict):
        out["skipped_tensors"] = len(doc["skipped_tensors"])
    return out


def measure_floor(env: dict[str, str], timeout: float) -> dict[str, Any]:
    """What every child costs before it does anything: Python, and importing covertml's CLI."""
    out = {}
    for label, code in (("python", "pass"), ("import covertml cli", "import covertml.cli.main")):
        r = run_child([sys.executable, "-c", code], env, timeout)
        if r["exit"] != 0:
            report_failure(label, r)
        out[label] = {k: r[k] for k in ("exit", "seconds", "peak_rss_gb")}
        print(
            f"  floor, {label}: {r['seconds']:.2f} s, peak RSS {r['peak_rss_gb']:.3f} GB",
            flush=True,
        )
    return out


def measure_read(path: Path, env: dict[str, str], timeout: float) -> dict[str, Any]:
    shards = sorted(str(p) for p in path.glob("*.safetensors"))
    r = run_child([sys.executable, "-c", READ_CODE, *shards], env, timeout)
    ok = r["exit"] == 0
    if not ok:
        report_failure("read", r)
    nbytes = int(r["stdout"].strip() or 0) if ok else 0
    return {
        "ok": ok,
        "seconds": r["seconds"],
        "peak_rss_gb": r["peak_rss_gb"],
        "bytes": nbytes,
        "mb_per_s": nbytes / 1e6 / r["seconds"] if ok else None,
    }


def measure_scan(path: Path, env: dict[str, str], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "covertml", "scan", str(path), "--json"]
    r = run_child(cmd, env, timeout)
    ok = r["exit"] in (0, 1)
    if not ok:
        report_failure("scan", r)
    return {
        "ok": ok,
        "exit": r["exit"],
        "seconds": r["seconds"],
        "peak_rss_gb": r["peak_rss_gb"],
        **scan_summary(parse_json(r["stdout"]) if ok else None),  # no key "seconds"
        **({} if ok else {"stderr_tail": r["stderr_tail"]}),
    }


def measure_copy(path: Path, env: dict[str, str], timeout: float) -> dict[str, Any]:
    dst = path.with_name(path.name + "-copy")
    shutil.rmtree(dst, ignore_errors=True)
    cmd = [sys.executable, "-c", COPY_CODE, str(path), str(dst)]
    r = run_child(cmd, env, timeout, sync_after=True)
    shutil.rmtree(dst, ignore_errors=True)
    ok = r["exit"] == 0
    if not ok:
        report_failure("copy", r)
    keys = ("seconds", "sync_seconds", "peak_rss_gb")
    return {"ok": ok, **{k: r[k] for k in keys}}


def measure_sanitize(path: Path, env: dict[str, str], timeout: float) -> dict[str, Any]:
    dst = path.with_name(path.name + "-sanitized")
    shutil.rmtree(dst, ignore_errors=True)
    cmd = [sys.executable, "-m", "covertml", "sanitize", str(path), str(dst)]
    cmd += ["--method", "lsb-randomize", "--json"]
    r = run_child(cmd, env, timeout, sync_after=True)
    written = sum(p.stat().st_size for p in dst.rglob("*") if p.is_file()) if dst.exists() else 0
    ok = r["exit"] == 0 and dst.exists()
    shutil.rmtree(dst, ignore_errors=True)
    if not ok:
        if r["exit"] == 0:
            r["stderr_tail"] += f"\n(exit 0, but {dst} was not written)"
        report_failure("sanitize", r)
    doc = parse_json(r["stdout"]) if ok else None
    extra = {}
    if isinstance(doc, dict):
        extra = {k: doc[k] for k in ("values", "values_changed") if k in doc}
    return {
        "ok": ok,
        "exit": r["exit"],
        "seconds": r["seconds"],
        "sync_seconds": r["sync_seconds"],
        "peak_rss_gb": r["peak_rss_gb"],
        "bytes_written": written,
        **extra,
        **({} if ok else {"stderr_tail": r["stderr_tail"]}),
    }


# ---------------------------------------------------------------- the run


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cpus": os.cpu_count()}
    with contextlib.suppress(AttributeError, OSError):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["ram_gb"] = int(line.split()[1]) * 1024 / GB
    except OSError:
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def check_disk(workdir: Path, need: int, what: str) -> None:
    free = shutil.disk_usage(workdir).free
    if free < need:
        sys.exit(
            f"scan_scale: not enough free disk in {workdir} for {what}: need "
            f"{need / GB:.1f} GB, {free / GB:.1f} GB free (use --workdir, --sizes or free space)"
        )


def fmt(x: Any) -> str:
    return f"{x:.2f}" if isinstance(x, int | float) else "?"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1b,3b,7b", help=f"of {', '.join(CONFIGS)}")
    parser.add_argument("--quick", action="store_true", help="the tiny checkpoint alone")
    parser.add_argument("--workdir", type=Path, default=OUT / "scan_scale")
    parser.add_argument("--shard-gb", type=float, default=2.0, help="largest shard (GB)")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoints for a rerun")
    parser.add_argument("--skip-sanitize", action="store_true")
    parser.add_argument(
        "--sanitize-size",
        default=None,
        help="the checkpoint timed by sanitize vs copy (default: 1b, else the first size)",
    )
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS etc.")
    parser.add_argument("--timeout", type=float, default=1800.0, help="per child (s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--settle", type=float, default=SETTLE_SECONDS, help="idle seconds before each timed copy"
    )
    args = parser.parse_args()
    sizes = ["tiny"] if args.quick else [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in CONFIGS]
    if unknown:
        parser.error(f"unknown size(s) {unknown}; known: {', '.join(CONFIGS)}")
    if args.sanitize_size is None:
        args.sanitize_size = "1b" if "1b" in sizes else sizes[0]
    shard_bytes = int(args.shard_gb * GB)
    env = child_env(args.threads)
    args.workdir.mkdir(parents=True, exist_ok=True)
    info = machine()
    print(
        f"machine: {info.get('cpus')} cpus, {info.get('ram_gb', 0):.1f} GB RAM; "
        f"threads: {args.threads or 'default'}; workdir: {args.workdir}",
        flush=True,
    )
    for s in sizes:
        cfg = CONFIGS[s]
        print(f"  {s}: {cfg.parameters:,} parameters, {cfg.nbytes / GB:.2f} GB bf16", flush=True)

    def need(s: str) -> int:  # disk while checkpoint s is measured: it, plus a copy/output
        extra = s == args.sanitize_size and not args.skip_sanitize
        return CONFIGS[s].nbytes * (2 if extra else 1) + int(GB)

    todo = [s for s in sizes if not is_complete(args.workdir / s, CONFIGS[s], shard_bytes)]
    if todo:
        if args.keep:
            total = sum(CONFIGS[s].nbytes for s in todo) + max(
                need(s) - CONFIGS[s].nbytes for s in sizes
            )
        else:
            total = max(need(s) for s in sizes)
        check_disk(args.workdir, total, "the checkpoints")

    floor = measure_floor(env, args.timeout)
    results: list[dict[str, Any]] = []
    for s in sizes:
        cfg = CONFIGS[s]
        path = args.workdir / s
        res: dict[str, Any] = {"config": s, "parameters": cfg.parameters, "bytes": cfg.nbytes}
        print(f"\n== {s}: {cfg.parameters:,} parameters ==", flush=True)
        if is_complete(path, cfg, shard_bytes):
            print(f"  generate: reusing {path}", flush=True)
            res["generate"] = {"reused": True}
        else:
            check_disk(args.workdir, need(s), f"the {s} checkpoint")
            g = generate(path, cfg, shard_bytes, args.seed)
            res["generate"] = g
            print(
                f"  generate: {g['bytes'] / GB:.2f} GB in {g['shards']} shards, "
                f"{g['seconds']:.1f} s ({g['mb_per_s']:.0f} MB/s; pool {g['pool_seconds']:.1f} s)",
                flush=True,
            )
        res["shards"] = len(list(path.glob("*.safetensors")))
        res["read"] = rd = measure_read(path, env, args.timeout)
        if rd["ok"]:
            print(
                f"  read once: {rd['seconds']:.2f} s ({rd['mb_per_s']:.0f} MB/s), "
                f"peak RSS {rd['peak_rss_gb']:.2f} GB",
                flush=True,
            )
        res["scan"] = sc = measure_scan(path, env, args.timeout)
        if sc["ok"]:
            print(
                f"  scan: {sc['seconds']:.2f} s (in-process {fmt(sc.get('report_seconds'))} s), "
                f"peak RSS {sc['peak_rss_gb']:.2f} GB, "
                f"exit {sc['exit']}, verdict {sc.get('verdict', '?')}, "
                f"findings {sc.get('findings', '?')} ({sc.get('flagged_findings', '?')} flagged)",
                flush=True,
            )
        if s == args.sanitize_size and not args.skip_sanitize:
            res["sanitize"] = measure_sanitize_vs_copy(path, env, args.timeout, args.settle)
        if not args.keep:
            shutil.rmtree(path, ignore_errors=True)
        results.append(res)

    print_tables(results, sizes)
    cli = floor["import covertml cli"]
    print(
        f"(every covertml child first spends {cli['seconds']:.2f} s and "
        f"{cli['peak_rss_gb']:.2f} GB importing the CLI; included in the figures above)"
    )
    record = {
        "sizes": sizes,
        "shard_gb": args.shard_gb,
        "threads": args.threads,
        "machine": info,
        "floor": floor,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "targets": {
            "scan_7b_seconds": SCAN_SECONDS,
            "scan_7b_peak_rss_gb": SCAN_RSS_GB,
            "sanitize_over_copy": SANITIZE_RATIO,
        },
        "results": results,
    }
    print(f"\nrecord: {save_record('scan_scale', record)}")


def measure_sanitize_vs_copy(
    path: Path, env: dict[str, str], timeout: float, settle: float = SETTLE_SECONDS
) -> dict[str, Any]:
    """lsb-randomize against copying the same files, timed before and after it.

    Every timed child starts from the same state: the previous output deleted, flushed, and
    ``settle`` seconds idle. In this VM, writing GBs into page cache is fast only into pages
    the guest freed moments before; a few seconds later the host has taken them back and
    the next writer pays to get them again (measured on 1b: a copy takes 1.5 s right after
    deleting a copy, 7.8-8.9 s after 5-10 s idle). A copy that starts writing at once would
    otherwise be timed warm and the sanitize, which writes only after the CLI's seconds of
    start-up, cold. The ratio is against the mean of the timed copies; ``ratio_with_sync``
    also counts flushing the written files to disk (``os.sync`` after each child).
    """
    warmup = measure_copy(path, env, timeout)

    def settled(measure: Any) -> dict[str, Any]:
        time.sleep(settle)
        result: dict[str, Any] = measure(path, env, timeout)
        return result

    before = settled(measure_copy)
    san = settled(measure_sanitize)
    after = settled(measure_copy)
    copies = [c for c in (before, after) if c["ok"]]
    copy_mean = sum(c["seconds"] for c in copies) / len(copies) if copies else None
    synced = sum(c["seconds"] + c["sync_seconds"] for c in copies) / len(copies) if copies else None
    ratio = san["seconds"] / copy_mean if san["ok"] and copy_mean else None
    ratio_sync = (san["seconds"] + san["sync_seconds"]) / synced if san["ok"] and synced else None
    out = {
        "copy_warmup": warmup,
        "copy_before": before,
        "lsb_randomize": san,
        "copy_after": after,
        "copy_mean_seconds": copy_mean,
        "copy_mean_seconds_with_sync": synced,
        "ratio": ratio,
        "ratio_with_sync": ratio_sync,
        "pass": ratio is not None and ratio <= SANITIZE_RATIO,
    }
    c = " / ".join(f"{x['seconds']:.2f}" for x in copies) or "failed"
    s = f"{san['seconds']:.2f} s, peak RSS {san['peak_rss_gb']:.2f} GB" if san["ok"] else "failed"
    print(
        f"  copy (warm-up {warmup['seconds']:.2f} s untimed; before / after): {c} s; "
        f"lsb-randomize: {s}",
        flush=True,
    )
    print(
        f"  lsb-randomize / copy: {fmt(ratio)}x (target <= {SANITIZE_RATIO:g}x): "
        f"{verdict(out['pass'])}; with the writes synced to disk: {fmt(ratio_sync)}x",
        flush=True,
    )
    return out


def print_tables(results: list[dict[str, Any]], sizes: list[str]) -> None:
    rows = []
    for res in results:
        sc, rd = res["scan"], res["read"]
        check = ""
        if res["config"] == "7b":
            t_ok = sc["ok"] and sc["seconds"] <= SCAN_SECONDS
            m_ok = sc["ok"] and sc["peak_rss_gb"] <= SCAN_RSS_GB
            check = (
                f"<= {SCAN_SECONDS:g} s: {verdict(t_ok)}; <= {SCAN_RSS_GB:g} GB: {verdict(m_ok)}"
            )
            res["targets"] = {"seconds": t_ok, "peak_rss": m_ok}
        rows.append(
            [
                res["config"],
                f"{res['parameters']:,}",
                f"{res['bytes'] / GB:.2f} GB",
                f"{rd['seconds']:.2f} s" if rd["ok"] else "failed",
                f"{sc['seconds']:.2f} s" if sc["ok"] else f"failed (exit {sc['exit']})",
                f"{sc['peak_rss_gb']:.2f} GB" if sc["ok"] else "-",
                f"{sc['seconds'] / res['parameters'] * 1e9:.1f} s" if sc["ok"] else "-",
                sc.get("verdict", "-") if sc["ok"] else "-",
                check,
            ]
        )
    print("\nscan time and peak memory against the parameter count:")
    header = ["config", "parameters", "bytes", "read once", "scan", "scan peak RSS"]
    header += ["scan per 1e9 params", "verdict", "targets (7b)"]
    print(markdown_table(header, rows))
    if "7b" not in sizes:
        print("(the 7b targets are checked only when --sizes includes 7b)")
    for res in results:
        san = res.get("sanitize")
        if san:
            print(
                f"\nlsb-randomize of {res['config']} vs copying its files: "
                + f"{fmt(san['ratio'])}x (target <= {SANITIZE_RATIO:g}x): {verdict(san['pass'])}"
                + f"; synced to disk: {fmt(san['ratio_with_sync'])}x"
            )


if __name__ == "__main__":
    main()
