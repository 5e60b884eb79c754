"""Demo data for `kepu seed-demo`: units, one account per role, experts, items in several states."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sqlalchemy import func, select

from expert_pool.models import Assignment, Expert
from expert_pool.operations import accept_assignment, decide
from expert_pool.pool import add_expert
from review.audit import SYSTEM
from review.auth import create_user
from review.db import db
from review.models import Item, User
from review.operations import create_item, get_or_create_unit, publish_item, submit_item
from review.passwords import random_password
from rules import DOMAINS
from workers.screening import deadlines_from_config, screen_version

GENUINE = (
    "秋季流感疫苗接种开始",
    "每年秋季是接种流感疫苗的合适时机。流感疫苗需要每年接种，因为流行的病毒株会发生变化。"
    "六个月以上、没有禁忌证的人群都可以接种，老年人和慢性病患者尤其应当及时接种。\n"
    "接种后少数人会出现局部红肿或低热，一般一两天内自行缓解。如有疑问，请咨询社区卫生服务中心。",
)
PSEUDO = (
    "震惊！这种水能治百病，医院不想让你知道",
    "专家证实，每天喝三杯小分子水可以排毒养颜，还能彻底根治高血压和糖尿病，100%有效，永不复发！"
    "酸性体质是万病之源，喝碱性水就能改变体质、预防癌症。赶紧转发给家人，再不看就删了！",
)
DRAFT = ("台风来临前家庭应急准备清单", "台风预警发布后，请检查门窗，准备饮用水、手电筒和常用药品。")


def _password_file(instance: Path) -> Path:
    return instance / "demo-accounts.json"


def seed(instance: Path) -> list[tuple[str, str, str]]:
    """Create what is missing and return (username, password, role) of the demo accounts."""
    pw_file = _password_file(instance)
    passwords: dict[str, str] = json.loads(pw_file.read_text()) if pw_file.exists() else {}

    def pw(name: str) -> str:
        if name not in passwords:
            passwords[name] = random_password(names=(name,))
        return passwords[name]

    newspaper = get_or_create_unit("威海日报社", actor=SYSTEM)
    tv = get_or_create_unit("威海电视台", actor=SYSTEM)
    platform = get_or_create_unit("“威海科普”平台", actor=SYSTEM)
    kexie = get_or_create_unit("威海市科学技术协会", actor=SYSTEM, kind="institution")
    university = get_or_create_unit("山东大学（威海）", actor=SYSTEM, kind="institution")
    hospital = get_or_create_unit("威海市立医院", actor=SYSTEM, kind="institution")

    accounts = [
        ("admin", "admin", "系统管理员", kexie),
        ("auditor", "auditor", "宣传部审计员", None),
        ("editor", "editor", "王编辑", newspaper),
        ("editor2", "editor", "李编辑", tv),
        ("editor3", "editor", "赵编辑", platform),
        ("expert", "expert", "张医生", hospital),
    ]
    users: dict[str, User] = {}
    for username, role, name, unit in accounts:
        user = db.session.scalar(select(User).where(User.username == username))
        if user is None:
            user = create_user(
                username,
                role=role,
                password=pw(username),
                display_name=name,
                unit=unit,
                actor=SYSTEM,
            )
        users[username] = user
    if Expert.for_user(users["expert"]) is None:
        add_expert(
            users["expert"],
            domains=["医学健康", "食品药品安全"],
            title="主任医师",
            unit=hospital,
            is_senior=True,
            max_load=10,
            actor=SYSTEM,
        )
    for number, domain in enumerate(DOMAINS, 1):
        username = f"expert{number:02d}"
        user = db.session.scalar(select(User).where(User.username == username))
        if user is None:
            user = create_user(
                username,
                role="expert",
                password=pw(username),
                display_name=f"{domain}专家",
                unit=university,
                actor=SYSTEM,
            )
            add_expert(
                user,
                domains=[domain],
                title="教授" if number % 3 == 0 else "副研究员",
                unit=university,
                is_senior=number % 3 == 0,
                actor=SYSTEM,
            )
        users[username] = user
    db.session.commit()

    if not db.session.scalar(select(func.count()).select_from(Item)):
        _seed_items(users)

    instance.mkdir(parents=True, exist_ok=True)
    fd = os.open(pw_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(passwords, fh, ensure_ascii=False, indent=1)
    roles = {u.username: u.role.value for u in users.values()}
    return [(name, passwords[name], roles[name]) for name in passwords if name in roles]


def _seed_items(users: dict[str, User]) -> None:
    from flask import current_app

    editor = users["editor"]
    create_item(title=DRAFT[0], body=DRAFT[1], actor=editor)

    genuine = create_item(title=GENUINE[0], body=GENUINE[1], actor=editor)
    version = submit_item(genuine, actor=editor)
    db.session.commit()
    screen_version(version.id)

    pseudo = create_item(title=PSEUDO[0], body=PSEUDO[1], actor=users["editor2"])
    version = submit_item(pseudo, actor=users["editor2"])
    db.session.commit()
    screen_version(version.id)

    # One item taken all the way: screened, reviewed by an expert, approved and published.
    reviewed = create_item(
        title="科学认识食品添加剂",
        body="合规使用的食品添加剂是安全的，关键在于按国家标准限量使用。"
        "有人说“添加剂都有害”，这种说法没有科学依据。",
        actor=editor,
    )
    version = submit_item(reviewed, actor=editor)
    db.session.commit()
    screen_version(version.id)
    db.session.refresh(reviewed)
    if reviewed.state.value == "cleared":
        publish_item(reviewed, actor=editor, signer=current_app.extensions["kepu_signer"])
    elif reviewed.state.value == "in_review":
        for assignment in db.session.scalars(
            select(Assignment).where(Assignment.item_id == reviewed.id)
        ).all():
            expert_user = assignment.expert.user
            accept_assignment(assignment, actor=expert_user, deadlines=deadlines_from_config())
            decide(
                assignment,
                actor=expert_user,
                decision="approve",
                comment="表述准确。",
                references=[],
                finding_verdicts={},
                password_ok=True,
                signer=current_app.extensions["kepu_signer"],
                deadlines=deadlines_from_config(),
            )
        publish_item(reviewed, actor=editor, signer=current_app.extensions["kepu_signer"])
    db.session.commit()
