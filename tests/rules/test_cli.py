"""The kepu rules commands as whole processes: exit codes, output shapes, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import run_kepu

CLAIM = "喝小分子水可以治疗糖尿病，效果百分之百。"
KEPU = str(Path(sys.executable).parent / "kepu")


def _env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, KEPU_INSTANCE_PATH=str(tmp_path / "instance"))


def test_scan_file_highlights_and_exits_zero(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("标题\n" + CLAIM, encoding="utf-8")
    out = run_kepu("rules", "scan", str(path), env=_env(tmp_path)).stdout
    assert "【" in out and "】" in out
    level = out.split("risk:", 1)[1].split()[0]
    assert level in ("medium", "high", "critical")
    assert "efficacy." in out or "health" in out  # the rule ids are printed


def test_scan_stdin_json_is_only_json(tmp_path: Path) -> None:
    proc = subprocess.run(
        [KEPU, "rules", "scan", "-", "--json"],
        input=CLAIM.encode("utf-8"),
        env=_env(tmp_path),
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["findings"] and report["risk_level"] in ("medium", "high", "critical")
    assert all("start" in f and "rule_id" in f for f in report["findings"])


def test_scan_summary_and_clean_text(tmp_path: Path) -> None:
    path = tmp_path / "clean.txt"
    path.write_text("周末我们在科技馆参观了天文展览。", encoding="utf-8")
    out = run_kepu("rules", "scan", str(path), "--summary", env=_env(tmp_path)).stdout
    assert out.startswith("none 0.0 findings=0")


def test_scan_refuses_gbk_with_a_chinese_error(tmp_path: Path) -> None:
    path = tmp_path / "gbk.txt"
    path.write_bytes(CLAIM.encode("gbk"))
    proc = run_kepu("rules", "scan", str(path), env=_env(tmp_path), check=False)
    assert proc.returncode == 2
    assert "UTF-8" in proc.stderr + proc.stdout


def test_eval_json_shape_and_exit_zero(tmp_path: Path) -> None:
    rows = [
        {"text": CLAIM, "label": "pseudo", "subset": "a"},
        {"text": "多喝热水能包治百病，永不复发。", "label": "pseudo", "subset": "a"},
        {"text": "规律作息有助于健康。", "label": "genuine", "subset": "b"},
        {"text": "网传喝小分子水能治糖尿病，这是谣言。", "label": "refutation", "subset": "b"},
    ]
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    proc = run_kepu("rules", "eval", str(path), "--json", env=_env(tmp_path))
    result = json.loads(proc.stdout)
    assert set(result) == {"rules", "by_label", "by_subset", "precision", "recall", "f1"}
    assert result["by_label"]["pseudo"] == {"n": 2, "flagged": 2, "rate": 1.0}
    assert result["by_label"]["genuine"]["flagged"] == 0
    assert result["by_label"]["refutation"]["flagged"] == 0
    assert result["by_subset"]["b"]["refutation"]["n"] == 1
    assert result["precision"] == 1.0 and result["recall"] == 1.0
    text = run_kepu("rules", "eval", str(path), "--misses", env=_env(tmp_path)).stdout
    assert "precision=1.000" in text and "misses (pseudo not flagged): 0" in text


def test_eval_reports_each_file_and_lists_texts_only_when_asked(tmp_path: Path) -> None:
    study = tmp_path / "study.jsonl"
    check = tmp_path / "check.jsonl"
    study.write_text(
        json.dumps({"text": "多喝热水能包治百病。", "label": "pseudo", "subset": "s"}),
        encoding="utf-8",
    )
    check.write_text(
        json.dumps(
            {"text": "今天天气晴朗。", "label": "pseudo", "subset": "c"}, ensure_ascii=False
        ),
        encoding="utf-8",
    )
    proc = run_kepu("rules", "eval", str(study), str(check), "--json", env=_env(tmp_path))
    result = json.loads(proc.stdout)["files"]
    assert result[str(study)]["by_label"]["pseudo"]["rate"] == 1.0
    assert result[str(check)]["by_label"]["pseudo"]["rate"] == 0.0
    assert set(result[str(check)]["by_subset"]) == {"c"}
    text = run_kepu("rules", "eval", str(study), str(check), env=_env(tmp_path)).stdout
    assert f"== {study}" in text and f"== {check}" in text
    assert "今天天气晴朗" not in text and "misses" not in text


def test_eval_in_articles_reports_with_and_without_the_claim(tmp_path: Path) -> None:
    article = "\n".join(["睡眠对健康很重要，成年人每晚宜睡七到八小时。" * 10] * 10)
    rows = [
        {"text": article, "label": "genuine", "subset": "a"},
        {"text": "糖尿病患者可以停用胰岛素，改喝苦瓜汁。", "label": "pseudo", "subset": "c"},
        {"text": "今天天气晴朗。", "label": "pseudo", "subset": "c"},
    ]
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    proc = run_kepu("rules", "eval", str(path), "--json", "--in-articles", env=_env(tmp_path))
    found = json.loads(proc.stdout)["in_articles"]
    assert found["articles"] == 1
    assert found["articles_flagged_alone"] == {"n": 1, "flagged": 0, "rate": 0.0}
    assert found["claims"]["n"] == 2 and found["claims"]["flagged_with_claim"] == 1
    assert found["claims"]["claim_alone_flagged"] == 1
    assert found["claims"]["kept_in_article"] == 1.0
    text = run_kepu("rules", "eval", str(path), "--in-articles", env=_env(tmp_path)).stdout
    assert "articles alone flagged 0/1" in text and "with claim 1/2" in text


def test_eval_names_a_broken_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a", "label": "pseudo"}\n{oops\n', encoding="utf-8")
    proc = run_kepu("rules", "eval", str(path), env=_env(tmp_path), check=False)
    assert proc.returncode == 2
    assert "第 2 行" in proc.stderr + proc.stdout


def test_rules_test_passes(tmp_path: Path) -> None:
    out = run_kepu("rules", "test", env=_env(tmp_path)).stdout
    assert out.strip().endswith("0 failing examples")
