"""Expert pool CSV import/export on the real databases: encodings, all-or-nothing, round trip."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from expert_pool.cli import experts_group
from expert_pool.csv_io import (
    CsvImportError,
    CsvReadError,
    export_experts,
    import_experts,
    parse_experts_csv,
    parse_time,
)
from expert_pool.models import Expert
from review.audit import SYSTEM, AuditEvent
from review.db import db
from review.models import Unit, User
from tests.conftest import run_kepu

HEADER = (
    "用户名,姓名,职称,单位,主要领域,次要领域,资深,最大负载,已认证,"
    "请假开始,请假结束,冲突单位,冲突企业,冲突人员,邮箱,通知方式"
)
ROWS = [
    "zhang_wei,张伟,主任医师,协和医院,医学健康、食品药品安全,基因编辑与生命科学,是,3,是,"
    "2026-01-05,2026-01-10,某某日报;晚报,某保健品公司|某药企,李四，王五,zw@example.cn,汇总",
    "li_na,李娜,研究员,中国气象局,气象与气候,,否,5,否,,,,,,,即时",
]
ENGLISH_HEADER = "username,name,title,unit,domains,senior,max_load,verified,email,notify_mode"


def _csv(*rows: str, header: str = HEADER) -> str:
    return "\r\n".join([header, *rows]) + "\r\n"


def _counts() -> tuple[int, int, int, int]:
    return (
        db.session.scalar(select(func.count()).select_from(Expert)) or 0,
        db.session.scalar(select(func.count()).select_from(User)) or 0,
        db.session.scalar(select(func.count()).select_from(Unit)) or 0,
        db.session.scalar(select(func.count()).select_from(AuditEvent)) or 0,
    )


def _expert(username: str) -> Expert:
    user = db.session.scalar(select(User).where(User.username == username))
    assert user is not None
    expert = Expert.for_user(user)
    assert expert is not None
    return expert


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
def test_reads_utf8_bom_and_gbk(app: Any, encoding: str) -> None:
    summary = import_experts(_csv(*ROWS).encode(encoding), actor=SYSTEM)
    db.session.commit()
    assert summary.created == ["zhang_wei", "li_na"]
    assert set(summary.passwords) == {"zhang_wei", "li_na"}
    assert sorted(summary.units_created) == ["中国气象局", "协和医院"]
    zw = _expert("zhang_wei")
    assert zw.name == "张伟" and zw.title == "主任医师" and zw.unit and zw.unit.name == "协和医院"
    assert zw.domains == ["医学健康", "食品药品安全"]
    assert zw.secondary_domains == ["基因编辑与生命科学"]
    assert zw.is_senior and zw.is_verified and zw.max_load == 3
    # Naive dates are Beijing time; an end date includes that whole day.
    assert zw.leave_from == datetime(2026, 1, 4, 16, tzinfo=UTC)
    assert zw.leave_until == datetime(2026, 1, 10, 16, tzinfo=UTC)
    assert zw.conflicts == {
        "units": ["某某日报", "晚报"],
        "companies": ["某保健品公司", "某药企"],
        "people": ["李四", "王五"],
    }
    assert zw.user.email == "zw@example.cn" and zw.notify_mode == "digest"
    assert zw.user.role.value == "expert" and zw.user.display_name == "张伟"
    ln = _expert("li_na")
    assert not ln.is_verified and not ln.is_senior and ln.secondary_domains == []
    assert ln.leave_from is None and ln.user.email is None and ln.notify_mode == "immediate"


def test_english_headers_and_defaults(app: Any) -> None:
    data = _csv("wang,王芳,教授,,海洋,yes,2,1,,immediate", header=ENGLISH_HEADER).encode()
    summary = import_experts(data, actor=SYSTEM)
    db.session.commit()
    assert summary.created == ["wang"]
    wang = _expert("wang")
    assert wang.domains == ["海洋"] and wang.is_senior and wang.max_load == 2
    assert wang.unit_id is None and wang.is_verified and wang.conflict_list("units") == []


def test_bad_rows_are_all_reported_and_nothing_is_imported(app: Any, factory: Any) -> None:
    factory.user("editor", username="ed_taken")
    before = _counts()
    data = _csv(
        ROWS[0],
        "bad1,甲,,,玄学,,也许,0,是,,,,,,not-an-email,每周",
        "",  # blank line: skipped, still counted for line numbers
        "bad2,乙,,,海洋,,,,,2026-13-01,2026-01-01,,,,,",
        "zhang_wei,重复,,,海洋,,,,,,,,,,,",
        "ed_taken,编辑,,,海洋,,,,,,,,,,,",
        "short,row",
    ).encode("gbk")
    with pytest.raises(CsvImportError) as caught:
        import_experts(data, actor=SYSTEM)
    db.session.rollback()
    lines = [str(e) for e in caught.value.errors]
    assert lines[:4] == [
        "第 3 行 [主要领域]：未知领域“玄学”；可选：" + "、".join(__import__("rules").DOMAINS),
        "第 3 行 [资深]：应为 是/否（或 true/false、1/0、yes/no）",
        "第 3 行 [最大负载]：应在 1 到 1000 之间",
        "第 3 行 [邮箱]：不是有效的电子邮箱地址",
    ]
    assert any(line.startswith("第 3 行 [通知方式]") for line in lines)
    assert any(line.startswith("第 5 行 [请假开始]：不是有效的日期") for line in lines)
    assert "第 6 行 [用户名]：与第 2 行重复" in lines
    assert "第 8 行 [整行]：只有 2 列，表头有 16 列" in lines
    assert _counts() == before
    # The database check runs once the file itself is valid, still before any change.
    with pytest.raises(CsvImportError) as caught:
        import_experts(_csv(ROWS[0], "ed_taken,编辑,,,海洋,,,,,,,,,,,").encode(), actor=SYSTEM)
    db.session.rollback()
    assert [str(e) for e in caught.value.errors] == [
        "第 3 行 [用户名]：用户“ed_taken”已存在且角色为媒体编辑，不是审核专家"
    ]
    assert _counts() == before


def test_header_problems_and_unreadable_files(app: Any) -> None:
    with pytest.raises(CsvImportError) as caught:
        parse_experts_csv("姓名,年龄\n张三,30\n".encode())
    assert [str(e) for e in caught.value.errors][1:] == [
        "第 1 行 [用户名]：缺少必填列“用户名”（username）"
    ]
    assert str(caught.value.errors[0]).startswith("第 1 行 [年龄]：无法识别的列名")
    with pytest.raises(CsvReadError, match="既不是 UTF-8 也不是 GBK"):
        parse_experts_csv(b"\xff\xfe\xff\xfe\x80\x80")
    with pytest.raises(CsvReadError, match="空字符"):
        parse_experts_csv("用户名\nx\n".encode("utf-16"))
    with pytest.raises(CsvReadError, match="缺少表头"):
        parse_experts_csv(b"")


def test_quoted_multiline_cells_keep_line_numbers_right(app: Any) -> None:
    data = '用户名,职称\r\na,"第一行\r\n第二行"\r\nb,研究员\r\n,\r\nc,"=1+1"\r\n'.encode()
    with pytest.raises(CsvImportError) as caught:
        parse_experts_csv(data)
    assert [str(e) for e in caught.value.errors] == ["第 2 行 [职称]：不能含有换行或控制字符"]
    rows = parse_experts_csv(data.replace("第一行\r\n第二行".encode(), b"x"))
    assert [(r.line, r.username) for r in rows] == [(2, "a"), (3, "b"), (5, "c")]


def test_times() -> None:
    assert parse_time("2026-01-05T08:30") == datetime(2026, 1, 5, 0, 30, tzinfo=UTC)
    assert parse_time("2026/1/5 8:30") == datetime(2026, 1, 5, 0, 30, tzinfo=UTC)
    assert parse_time("2026-01-05T08:30:00Z") == datetime(2026, 1, 5, 8, 30, tzinfo=UTC)
    assert parse_time("2026-01-05 08:30+00:00") == datetime(2026, 1, 5, 8, 30, tzinfo=UTC)
    assert parse_time("2026-01-05", end_of_day=True) == datetime(2026, 1, 5, 16, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_time("next monday")


def test_updates_existing_expert_and_audits(app: Any, factory: Any) -> None:
    user = factory.expert(domains=("海洋",), username="zhang_wei")
    expert = _expert("zhang_wei")
    assert expert.max_load == 5 and not expert.is_senior
    experts_before, users_before, *_ = _counts()
    summary = import_experts(_csv(ROWS[0]).encode(), actor=SYSTEM)
    db.session.commit()
    assert summary.updated == ["zhang_wei"] and summary.created == [] and summary.passwords == {}
    assert _counts()[:2] == (experts_before, users_before)
    db.session.refresh(expert)
    assert expert.domains == ["医学健康", "食品药品安全"] and expert.max_load == 3
    assert expert.is_senior and expert.name == "张伟" and expert.unit.name == "协和医院"
    assert db.session.get(User, user.id).email == "zw@example.cn"  # type: ignore[union-attr]
    events = db.session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "pool.expert_updated", AuditEvent.subject_id == str(expert.id)
        )
    ).all()
    changed = {key for event in events for key in event.data}
    assert {"domains", "max_load", "is_senior", "name", "unit", "email"} <= changed
    # The same file again changes nothing.
    again = import_experts(_csv(ROWS[0]).encode(), actor=SYSTEM)
    db.session.commit()
    assert again.unchanged == ["zhang_wei"] and again.updated == []
    # A partial file touches only its columns.
    import_experts("用户名,最大负载\nzhang_wei,7\n".encode(), actor=SYSTEM)
    db.session.commit()
    db.session.refresh(expert)
    assert expert.max_load == 7 and expert.domains == ["医学健康", "食品药品安全"]
    assert expert.conflict_list("people") == ["李四", "王五"]


@pytest.mark.parametrize("encoding", ["utf-8", "gbk"])
def test_export_import_round_trip(app: Any, factory: Any, encoding: str) -> None:
    factory.expert(domains=("交通",), senior=True, username="plain")
    import_experts(
        _csv(*ROWS, "odd,=SUM(A1),-1,@unit,海洋,,,,,2026-02-01 09:15:30,,,,,,").encode(),
        actor=SYSTEM,
    )
    db.session.commit()
    exported = export_experts(encoding=encoding)
    if encoding == "utf-8":
        assert exported.startswith(b"\xef\xbb\xbf")
    text = exported.decode("utf-8-sig" if encoding == "utf-8" else "gbk")
    assert text.splitlines()[0] == HEADER.replace("已认证,", "已认证,启用,")
    assert "'=SUM(A1)" in text and "'-1" in text and "'@unit" in text
    assert "2026-01-05,2026-01-10" in text and "2026-02-01 09:15:30" in text
    before = _counts()
    summary = import_experts(exported, actor=SYSTEM)
    db.session.commit()
    assert summary.unchanged == ["plain", "zhang_wei", "li_na", "odd"]
    assert summary.created == summary.updated == []
    assert _counts() == before  # not even an audit event
    assert export_experts(encoding=encoding) == exported
    odd = _expert("odd")
    assert odd.name == "=SUM(A1)" and odd.title == "-1" and odd.unit.name == "@unit"


def test_gbk_export_refuses_characters_gbk_lacks(app: Any) -> None:
    from expert_pool.csv_io import CsvEncodeError

    import_experts(_csv("emoji,专家👩‍🔬,,,海洋,,,,,,,,,,,").encode(), actor=SYSTEM)
    db.session.commit()
    with pytest.raises(CsvEncodeError, match="第 2 行"):
        export_experts(encoding="gbk")
    assert "专家👩‍🔬" in export_experts().decode("utf-8-sig")


# --- the commands ------------------------------------------------------------------------------


def test_cli_import_export_in_process(app: Any, tmp_path: Path) -> None:
    runner = app.test_cli_runner()
    good = tmp_path / "experts.csv"
    good.write_bytes(_csv(*ROWS).encode("gbk"))
    result = runner.invoke(experts_group, ["import", str(good), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "检查通过" in result.output and _counts()[0] == 0
    result = runner.invoke(experts_group, ["import", str(good)])
    assert result.exit_code == 0, result.output
    assert "新增 2 位" in result.output and "zhang_wei\t" in result.output
    assert _counts()[0] == 2

    bad = tmp_path / "bad.csv"
    bad.write_bytes(_csv(ROWS[1], "x,甲,,,玄学,,,,,,,,,,,").encode())
    before = _counts()
    result = runner.invoke(experts_group, ["import", str(bad)])
    assert result.exit_code == 1
    assert "第 3 行 [主要领域]：未知领域“玄学”" in result.output
    assert _counts() == before

    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\x00\x01\x02")
    assert runner.invoke(experts_group, ["import", str(binary)]).exit_code == 2
    assert runner.invoke(experts_group, ["import", str(tmp_path / "missing.csv")]).exit_code == 2

    out = tmp_path / "out.csv"
    result = runner.invoke(experts_group, ["export", "--out", str(out), "--encoding", "gbk"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == export_experts(encoding="gbk")
    result = runner.invoke(experts_group, ["export"])
    assert result.exit_code == 0 and result.stdout_bytes == export_experts()


def _env(app: Any, instance: Path) -> dict[str, str]:
    return dict(
        os.environ,
        KEPU_DATABASE_URL=str(app.config["SQLALCHEMY_DATABASE_URI"]),
        KEPU_INSTANCE_PATH=str(instance),
    )


def test_cli_through_the_kepu_script(app: Any, instance: Path, tmp_path: Path) -> None:
    if "experts" not in app.cli.commands:
        pytest.skip("the experts group is not registered in review/cli.py yet")
    env = _env(app, instance)
    good = tmp_path / "experts.csv"
    good.write_bytes(_csv(*ROWS).encode("utf-8-sig"))
    db.session.rollback()  # end our read transaction before another process writes the file
    proc = run_kepu("experts", "import", str(good), env=env)
    assert "新增 2 位" in proc.stdout
    bad = tmp_path / "bad.csv"
    bad.write_bytes(_csv("y,乙,,,海洋,,,0,,,,,,,,").encode("gbk"))
    proc = run_kepu("experts", "import", str(bad), env=env, check=False)
    assert proc.returncode == 1 and "第 2 行 [最大负载]" in proc.stderr
    out = tmp_path / "out.csv"
    run_kepu("experts", "export", "--out", str(out), env=env)
    proc = run_kepu("experts", "import", str(out), env=env)
    assert "未变 2 位" in proc.stdout
    assert _counts()[0] == 2
