"""Report tables from hand-made records: averages over seeds, recovery text, the matrix."""

from __future__ import annotations

import statistics

import pytest

from covertml.errors import ConfigError
from covertml.report.html import build_report, marked_text
from covertml.report.tables import all_tables, attack_table, baselines, matrix


def record(attack, opts, sanitizer, seed, acc, recovery=None, delta=None, san_opts=None):
    return {
        "id": f"digits/{attack}/{sanitizer}/seed{seed}",
        "status": "ok",
        "test_accuracy": acc,
        "delta_points": delta,
        "model": "mlp",
        "n_parameters": 1234,
        "recovery": recovery,
        "attack": {"bits_encoded": 800, "items": 3} if attack != "honest" else None,
        "cell": {
            "dataset": "digits",
            "train": {"epochs": 3},
            "attack": attack,
            "attack_options": opts,
            "sanitizer": sanitizer,
            "sanitizer_options": san_opts or {},
            "seed": seed,
        },
    }


RECORDS = [
    record("honest", {}, "none", 0, 0.90),
    record("honest", {}, "none", 1, 0.80),
    record("sign", {"lam": 10.0}, "none", 0, 0.85, {"recovered": True, "mape": 10.0}, -5.0),
    record("sign", {"lam": 10.0}, "none", 1, 0.75, {"recovered": True, "mape": 20.0}, -5.0),
    record("lsb", {"bits": 8}, "none", 0, 0.90, {"recovered": True, "mape": 0.0}, 0.0),
    record(
        "lsb", {"bits": 8}, "lsb-zero", 0, 0.90, {"recovered": False, "why": "x"}, 0.0, {"bits": 16}
    ),
    record("honest", {}, "lsb-zero", 0, 0.88, None, -2.0, {"bits": 16}),
    {"id": "digits/sign/x/seed9", "status": "failed", "error": "boom", "cell": {}},
]


def test_means_and_spreads_over_seeds() -> None:
    base = baselines(RECORDS)
    sd = statistics.stdev([90.0, 80.0])
    assert base.rows == [["digits", "mlp", "1,234", "all", "3", f"85.00 ± {sd:.2f}", "-"]]
    sign = attack_table(RECORDS, "sign", title="t", setting_name="s")
    row = dict(zip(sign.header, sign.rows[0], strict=True))
    assert row["s"] == "lam=10.0"
    assert row["test acc %"] == f"80.00 ± {sd:.2f}"
    assert row["δ (points)"] == "-5.00 ± 0.00"
    assert row["recovered"] == f"MAPE 15.0 ± {statistics.stdev([10.0, 20.0]):.1f}"


def test_matrix_marks_destroyed_payloads() -> None:
    m = matrix(RECORDS, "digits")
    assert m.header == ("model", "none", "lsb-zero-bits=16")
    rows = {r[0]: r[1:] for r in m.rows}
    assert rows["lsb bits=8"] == ["90.0 / MAPE 0.0", "90.0 / gone"]
    assert rows["honest"][1] == "88.0"


def test_failed_records_are_left_out_and_empty_tables_dropped() -> None:
    names = [t.name for t in all_tables(RECORDS)]
    assert names == ["baselines", "lsb", "sign", "countermeasures-digits"]


def test_wrong_words_are_marked_at_their_position() -> None:
    out = marked_text(["the", "cat", "sat"], ["the", "dog", "sat", "<x>"])
    assert out.count('class="wrong"') == 2
    assert 'title="was: cat">dog</mark>' in out and "&lt;x&gt;" in out


def test_a_folder_without_results_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"no results\.json"):
        build_report(tmp_path)
