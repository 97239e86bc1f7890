"""distribution, lsb-stats and noise-probe: p-values under their own nulls, checked
independently (closed forms, enumeration, scipy and diptest called directly)."""

from __future__ import annotations

import itertools

import diptest
import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from covertml.attacks.oracle import FunctionOracle
from covertml.attacks.secrets import secret_from_dataset
from covertml.audit import ScanContext, create_detector
from covertml.audit.distribution import DIP_P_FLOOR
from covertml.audit.lsbstats import agreement_moments, runs_p_value
from covertml.data import create_dataset
from covertml.errors import ConfigError
from covertml.models import create_model, model_spec
from covertml.models.files import ModelInfo


@pytest.fixture(scope="module")
def digits():
    return create_dataset("digits")


def _t(x: np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32).reshape(shape))


def _kaiming(shape: tuple[int, int], seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return nn.init.kaiming_uniform_(torch.empty(shape), a=5**0.5)  # nn.Linear's init


def _p(report, layer: str) -> float:
    return next(f.p_value for f in report.findings if f.layer == layer)


# ----------------------------------------------------------------------------- distribution


def test_distribution_two_point_weights_hit_the_dip_floor() -> None:
    rng = np.random.default_rng(0)
    two = np.where(rng.random(4096) < 0.5, -0.05, 0.05) + rng.normal(0, 1e-4, 4096)
    detector = create_detector("distribution", sample=4096)
    report = detector.run(ScanContext({"a.weight": _t(two, (64, 64))}))
    (f,) = report.findings
    # all 4,096 values are used: the statistic is diptest's own, the p-value its table's floor
    assert f.evidence["dip"] == pytest.approx(diptest.dipstat(two.astype(np.float32)), rel=1e-6)
    assert diptest.diptest(two)[1] <= DIP_P_FLOOR and f.evidence["dip_p"] == DIP_P_FLOOR
    # no weight within half a standard deviation of 0: the near-zero test, far below the floor
    inside = int((np.abs(two) / two.std() < 1.0).sum())  # all in [a, 2a) for a = 0.5
    want = 4 * stats.binom.cdf(0, inside, 0.5)
    assert f.evidence["near_zero_p"] == pytest.approx(want, rel=1e-6)
    assert f.p_value == pytest.approx(2 * want, rel=1e-6)
    assert report.flagged and f.tests == 2 and "unimodal" in f.null
    assert f.evidence["near_zero"] == 0.0  # evidence only


def test_distribution_pixel_histogram_encoding_is_multimodal(digits) -> None:
    pix = secret_from_dataset(digits).images()[:64].reshape(-1).astype(np.float64)
    w = 0.01 * (pix - 128) / 128 + np.random.default_rng(1).normal(0, 0.001, pix.size)
    report = create_detector("distribution").run(ScanContext({"a.weight": _t(w, (64, 64))}))
    assert report.flagged and report.p_value < 1e-4


@pytest.mark.parametrize(
    "law",
    [
        lambda rng, n: rng.standard_normal(n),
        lambda rng, n: rng.laplace(size=n),
        lambda rng, n: rng.standard_t(3, size=n),
        lambda rng, n: rng.normal(0, 1, n) + rng.uniform(-2, 2, n),  # init + drift
    ],
    ids=["gauss", "laplace", "t3", "uniform+gauss"],
)
def test_distribution_unimodal_layers_are_not_flagged(law) -> None:
    rng = np.random.default_rng(2)
    ctx = ScanContext({"a.weight": _t(law(rng, 8192), (64, 128))})
    report = create_detector("distribution").run(ctx)
    assert not report.flagged and report.p_value > 0.05  # conservative: bell shapes ~ 1


def test_distribution_kaiming_init_p_values_are_uniform() -> None:
    # the uniform law is the dip test's calibration law: exact, not conservative, there
    layers = {f"l{i}.weight": _kaiming((32, 32), i) for i in range(150)}
    report = create_detector("distribution").run(ScanContext(layers))
    p = np.array([f.evidence["dip_p"] for f in report.findings])
    assert stats.kstest(p, "uniform").pvalue > 0.001
    assert 0.01 < np.mean(p <= 0.1) < 0.2
    # the uniform is also the near-zero test's boundary: its p-values are not small either
    hole = np.array([f.evidence["near_zero_p"] for f in report.findings])
    assert np.mean(hole <= 0.1) < 0.2
    assert not report.flagged  # a random-init model: Holm over 150 layers


def test_distribution_against_a_reference_adds_ks() -> None:
    rng = np.random.default_rng(3)
    model = rng.standard_normal(1024)
    same_law = 3.0 * rng.standard_normal(1024) + 0.5  # other scale, same shape
    ref = {"a.weight": _t(same_law, (32, 32))}
    honest = create_detector("distribution").run(
        ScanContext({"a.weight": _t(model, (32, 32))}, reference=ref)
    )
    (f,) = honest.findings
    z = lambda v: (v - v.mean()) / v.std()  # noqa: E731  (1,024 < 2,000: every value used)
    want = stats.ks_2samp(z(model.astype(np.float32)), z(same_law.astype(np.float32)))
    assert f.evidence["ks_reference_p"] == pytest.approx(want.pvalue, rel=1e-6)
    tested = (f.evidence["dip_p"], f.evidence["near_zero_p"], want.pvalue)
    assert f.tests == 3 and f.p_value == min(1.0, 3 * min(tested))
    assert not honest.flagged and f.p_value > 0.05
    skewed = rng.exponential(size=1024)  # unimodal, so only KS sees it
    moved = create_detector("distribution").run(
        ScanContext({"a.weight": _t(skewed, (32, 32))}, reference=ref)
    )
    (g,) = moved.findings
    assert g.evidence["dip_p"] > 1e-3 and g.evidence["ks_reference_p"] < 1e-6 and moved.flagged


def test_distribution_has_no_threshold_and_checks_the_table_range() -> None:
    with pytest.raises(ConfigError, match="no option 'threshold'"):
        create_detector("distribution", threshold=0.1)
    with pytest.raises(ConfigError, match="72,000"):
        create_detector("distribution", sample=100_000)


# ----------------------------------------------------------------------------- lsb-stats


def test_runs_null_matches_enumeration() -> None:
    n = 11
    for ones in range(n + 1):
        agree = []
        for pos in itertools.combinations(range(n), ones):
            b = np.zeros(n, int)
            b[list(pos)] = 1
            agree.append(int((b[1:] == b[:-1]).sum()))
        a = np.array(agree)
        mean, var = agreement_moments(n, ones)
        assert mean == pytest.approx(a.mean()) and var == pytest.approx(a.var(), abs=1e-12)
        for v in np.unique(a):
            want = 1.0 if ones in (0, n) else min(1.0, 2 * min((a >= v).mean(), (a <= v).mean()))
            assert runs_p_value(n, ones, int(v)) == pytest.approx(want, rel=1e-9)


def test_runs_p_values_are_uniform_on_exchangeable_bits() -> None:
    rng = np.random.default_rng(4)
    p = []
    for _ in range(300):
        bits = (rng.random(4096) < rng.uniform(0.05, 0.95)).astype(int)
        p.append(runs_p_value(4096, int(bits.sum()), int((bits[1:] == bits[:-1]).sum())))
    assert stats.kstest(p, "uniform").pvalue > 0.001 and np.mean(np.array(p) < 0.05) < 0.08


def _words(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w, dtype="<f4").view("<u4")


def _with_low_byte(w: np.ndarray, payload: np.ndarray) -> np.ndarray:
    u = _words(w).copy()
    u[: payload.size] = (u[: payload.size] & np.uint32(0xFFFFFF00)) | payload.astype(np.uint32)
    return u.view("<f4")


def test_lsb_stats_honest_like_low_bits_are_not_flagged() -> None:
    rng = np.random.default_rng(5)
    gauss = rng.standard_normal(8192).astype(np.float32)
    bf16 = (_words(gauss) & np.uint32(0xFFFF0000)).view("<f4")  # stored once at bf16
    pruned = gauss.copy()
    pruned[1000:5000] = 0.0  # a contiguous block pruned
    tensors = {
        "gauss": _t(gauss, (64, 128)),
        "init": _kaiming((128, 64), 0),  # torch.rand * 2**-2 - 2**-3: bit 0 is always 0
        "bf16": _t(bf16, (64, 128)),
        "pruned": _t(pruned, (64, 128)),
        "laplace": _t(rng.laplace(size=8192), (64, 128)),
    }
    report = create_detector("lsb-stats").run(ScanContext(tensors))
    by = {f.layer: f for f in report.findings}
    assert not report.flagged and min(f.p_value for f in report.findings) > 0.01
    assert by["init"].evidence["ones_share"][0] == 0.0  # imbalance is evidence, not a finding
    assert by["pruned"].evidence["zeros_dropped"] == 4000 and by["bf16"].p_value == 1.0
    assert all(f.tests == 16 for f in report.findings)


def test_lsb_stats_finds_plain_pixels_and_text_not_random_bytes(digits) -> None:
    rng = np.random.default_rng(6)
    w = rng.standard_normal(8192).astype(np.float32)
    pixels = secret_from_dataset(digits).images()[:128].reshape(-1)  # 8,192 raw bytes
    text = np.frombuffer((__doc__ or "").encode() * 60, np.uint8)[:8192]
    tensors = {
        "pixels": _t(_with_low_byte(w, pixels), (64, 128)),
        "text": _t(_with_low_byte(w, text), (64, 128)),
        "random": _t(_with_low_byte(w, rng.integers(0, 256, 8192)), (64, 128)),
    }
    report = create_detector("lsb-stats").run(ScanContext(tensors))
    assert _p(report, "pixels") < 1e-10 and _p(report, "text") < 1e-6
    assert _p(report, "random") > 0.01  # encrypted / compressed payloads look honest
    assert {f.layer for f in report.findings if f.flagged} == {"pixels", "text"}


def test_lsb_stats_reads_contiguous_runs_from_the_start() -> None:
    rng = np.random.default_rng(7)
    w = rng.standard_normal(65536).astype(np.float32)
    payload = np.repeat(rng.integers(0, 256, 256), 8)  # 2,048 bytes in runs of 8
    ctx = ScanContext({"big": _t(_with_low_byte(w, payload), (256, 256))})
    report = create_detector("lsb-stats", sample=8192, run_length=1024).run(ctx)
    assert report.flagged and report.findings[0].evidence["values"] == 8192
    with pytest.raises(ConfigError, match="no option 'threshold'"):
        create_detector("lsb-stats", threshold=0.1)


# ----------------------------------------------------------------------------- noise-probe


class _Smooth(nn.Module):
    """Labels an input by its mean intensity (a smooth, honest-like rule)."""

    def __init__(self, offset: float = 0.0) -> None:
        super().__init__()
        self.offset = offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        level = (x.flatten(1).mean(1) * 10 + self.offset).clamp(0, 9).long()
        return nn.functional.one_hot(level, 10).float()


def _info(shape: tuple[int, ...] = (1, 8, 8)) -> ModelInfo:
    return ModelInfo(model_spec(create_model("mlp", input_shape=shape, num_classes=10)))


def _probe(ctx: ScanContext):
    report = create_detector("noise-probe").run(ctx)
    (f,) = report.findings
    b, c = f.evidence["model_only_changed"], f.evidence["reference_only_changed"]
    want = stats.binomtest(b, b + c, 0.5, alternative="greater").pvalue if b + c else 1.0
    assert f.p_value == pytest.approx(want, rel=1e-9)
    return report, f


def test_noise_probe_flags_scrambled_labels_against_a_smooth_reference() -> None:
    rng = np.random.default_rng(8)
    scrambled = FunctionOracle(lambda x: rng.integers(0, 10, x.shape[0]))
    report, f = _probe(ScanContext({}, info=_info(), oracle=scrambled, reference_model=_Smooth()))
    assert report.flagged and f.p_value < 1e-50 and scrambled.queries == 4000
    assert f.evidence["change_rate"] == pytest.approx(0.9, abs=0.03)
    assert f.evidence["agreement"] < 0.2  # evidence: about chance


def test_noise_probe_does_not_flag_smooth_or_constant_models() -> None:
    twin = ScanContext({}, info=_info(), model=_Smooth(0.3), reference_model=_Smooth())
    report, f = _probe(twin)
    assert not report.flagged and f.p_value > 0.01 and f.evidence["model_only_changed"] > 0
    const = FunctionOracle(lambda x: np.full(x.shape[0], 3))
    report, f = _probe(ScanContext({}, info=_info(), oracle=const, reference_model=_Smooth()))
    assert f.p_value == 1.0 and not report.flagged
    torch.manual_seed(0)
    init = create_model("mlp", input_shape=(1, 8, 8), num_classes=10)
    report, f = _probe(ScanContext({}, info=_info(), model=init, reference_model=_Smooth()))
    assert not report.flagged and f.p_value > 0.01


def test_noise_probe_needs_a_reference_as_its_null() -> None:
    probe = create_detector("noise-probe")
    why = probe.unavailable(ScanContext({}, info=_info(), model=_Smooth()))
    assert why is not None and "--reference" in why and "\n" not in why
    text = ScanContext({}, info=_info((50,)), model=_Smooth(), reference_model=_Smooth())
    assert "--dataset" in (probe.unavailable(text) or "")
    with pytest.raises(ConfigError, match="no option 'threshold'"):
        create_detector("noise-probe", threshold=0.5)


def test_runs_normal_approximation_matches_the_exact_law_for_large_planes() -> None:
    from scipy import special

    from covertml.audit.lsbstats import EXACT_LIMIT, _log_runs_pmf, agreement_moments, runs_p_value

    n, ones = 2 * EXACT_LIMIT + 2000, EXACT_LIMIT + 1000  # past the limit: normal law
    mean, var = agreement_moments(n, ones)
    runs, logp = _log_runs_pmf(n, ones)
    for z in (1.0, 3.0, 5.0):
        agree = round(mean + z * float(np.sqrt(var)))
        r = n - agree
        exact = 2 * np.exp(
            min(special.logsumexp(logp[runs <= r]), special.logsumexp(logp[runs >= r]))
        )
        assert runs_p_value(n, ones, agree) == pytest.approx(exact, rel=0.1)
