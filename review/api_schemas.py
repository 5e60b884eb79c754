"""JSON schemas of the API's requests and responses (OpenAPI 3.1 = JSON Schema 2020-12).

Views reference them as ``{"$ref": "#/$defs/Name"}``; the runtime validator resolves that
against this table and the OpenAPI document publishes it under ``components/schemas``.
Limits and enumerations come from the code that enforces them, never typed twice.
"""

from __future__ import annotations

from typing import Any

from expert_pool.operations import VERDICTS
from expert_pool.pool import CONFLICT_KINDS, NOTIFY_MODES
from expert_pool.quality import MAX_SAMPLE
from review.lifecycle import ItemState
from review.models import DecisionKind, ItemKind, JobState, MediaStep, SubtitleKind
from review.operations import MAX_BODY_CHARS, MAX_TITLE_CHARS
from rules.model import DOMAINS

DESCRIPTION = (
    "科普信息科学性审查平台的 JSON 接口。所有请求和响应都是 UTF-8 JSON（视频上传用 "
    "multipart/form-data，导出为文件）。认证：`Authorization: Bearer <API 令牌>`。"
    '错误统一为 `{"error": 原因代码, "message": 中文说明, "field": 出错字段（可选）}`。'
    "看不到的对象一律 404，角色不允许的操作 403，状态不允许的操作 409。"
)

STATES = [s.value for s in ItemState]

#: Groups of operations, in the order the documentation shows them.
TAGS = {
    "稿件": "编辑新建、提交、修改、撤回、发布稿件，查询状态、发现和结论，下载回执",
    "专家审核": "专家接受或谢绝邀请、认领、签署结论",
    "通知": "调用者自己的通知",
    "专家库与队列": "管理员和审计人员查看专家库与审核队列，管理员指派",
    "审计与监督": "审计账本、检查点、仪表盘、质检、下架与重审、导出",
    "说明": "本接口描述与交互式文档",
}


def ref(name: str) -> dict[str, str]:
    """A reference to a component schema."""
    return {"$ref": f"#/$defs/{name}"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null."""
    return {"anyOf": [schema, {"type": "null"}]}


def array_of(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON array of ``schema``."""
    return {"type": "array", "items": schema}


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """An object with these required and optional properties (others are allowed)."""
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": list(required),
    }


STR = {"type": "string"}
INT = {"type": "integer"}
NUM = {"type": "number"}
BOOL = {"type": "boolean"}
TIME = {"type": "string", "format": "date-time"}
SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
STATE = {"type": "string", "enum": STATES}
LEVEL = {"type": "string", "enum": ["none", "low", "medium", "high", "critical"]}
ANY_OBJECT = {"type": "object"}
FILE = {"type": "string", "format": "binary"}

COMPONENTS: dict[str, Any] = {
    "Error": obj(
        {
            "error": {"type": "string", "description": "原因代码，如 invalid_field、not_found"},
            "message": {"type": "string", "description": "中文说明"},
        },
        {"field": {"type": "string", "description": "出错的字段"}},
    ),
    "StateChange": obj({"id": INT, "state": STATE}),
    "VersionRef": obj({"number": INT, "content_sha256": SHA256}),
    "Item": obj(
        {
            "id": INT,
            "kind": {"type": "string", "enum": [k.value for k in ItemKind]},
            "title": STR,
            "state": STATE,
            "state_label": {"type": "string", "description": "状态的中文名"},
            "unit": {"type": "string", "description": "稿件所属的媒体单位"},
            "updated_at": TIME,
            "needs_admin": BOOL,
            "version": nullable(ref("VersionRef")),
        }
    ),
    "Finding": obj(
        {
            "id": INT,
            "rule_id": nullable(STR),
            "category": STR,
            "severity": STR,
            "segment": {"type": "string", "description": "title、body，视频为字幕来源"},
            "start": {"type": "integer", "description": "在原文中的起始偏移（Unicode 字符）"},
            "end": INT,
            "text": STR,
            "explanation": STR,
            "context": nullable(STR),
            "start_time": nullable(NUM),
            "end_time": nullable(NUM),
        }
    ),
    "Screening": obj(
        {
            "risk_level": LEVEL,
            "risk_score": NUM,
            "domains": array_of(STR),
            "ruleset_version": STR,
            "failed": BOOL,
            "error": nullable(STR),
            "findings": array_of(ref("Finding")),
        }
    ),
    "Assignment": obj(
        {
            "id": INT,
            "item_id": INT,
            "version": INT,
            "expert": STR,
            "state": STR,
            "round": INT,
            "kind": STR,
            "risk_level": STR,
            "offered_at": TIME,
            "due_at": TIME,
            "ended_reason": nullable(STR),
        }
    ),
    "Decision": obj(
        {
            "id": INT,
            "assignment_id": INT,
            "version_id": INT,
            "content_sha256": SHA256,
            "decision": {"type": "string", "enum": [d.value for d in DecisionKind]},
            "comment": STR,
            "references": array_of(STR),
            "finding_verdicts": {
                "type": "object",
                "additionalProperties": {"type": "string", "enum": list(VERDICTS)},
            },
            "expert": STR,
            "signed_at": TIME,
            "signature": STR,
        }
    ),
    "Receipt": obj(
        {
            "item_id": INT,
            "title": STR,
            "version": INT,
            "content_sha256": SHA256,
            "decision": {"type": "string", "enum": ["cleared", "approved"]},
            "experts": array_of(STR),
            "published_at": TIME,
            "key_id": STR,
            "signature": {"type": "string", "description": "Ed25519 签名（对其余字段）"},
        }
    ),
    "Video": obj(
        {
            "file": nullable(
                obj(
                    {
                        "sha256": SHA256,
                        "size": INT,
                        "container": nullable(STR),
                        "duration": nullable(NUM),
                        "width": nullable(INT),
                        "height": nullable(INT),
                        "video_codec": nullable(STR),
                        "audio_codec": nullable(STR),
                        "codecs": {},
                        "thumbnail": BOOL,
                    }
                )
            ),
            "media_jobs": array_of(
                obj(
                    {
                        "step": {"type": "string", "enum": [s.value for s in MediaStep]},
                        "state": {"type": "string", "enum": [s.value for s in JobState]},
                        "attempts": INT,
                        "progress": {},
                        "error": nullable(STR),
                    }
                )
            ),
            "subtitles": array_of(
                obj(
                    {
                        "kind": {"type": "string", "enum": [k.value for k in SubtitleKind]},
                        "label": STR,
                        "format": nullable(STR),
                        "encoding": nullable(STR),
                        "sha256": nullable(STR),
                        "cues": {"type": "array"},
                    }
                )
            ),
        }
    ),
    "ItemDetail": {
        "allOf": [
            ref("Item"),
            obj(
                {
                    "body": STR,
                    "screening": nullable(ref("Screening")),
                    "assignments": array_of(ref("Assignment")),
                    "decisions": array_of(ref("Decision")),
                    "publication": nullable(ref("Receipt")),
                },
                {"video": ref("Video")},
            ),
        ]
    },
    "Expert": obj(
        {
            "id": INT,
            "user": STR,
            "name": STR,
            "title": STR,
            "unit": nullable(STR),
            "domains": array_of(STR),
            "secondary_domains": array_of(STR),
            "is_verified": BOOL,
            "verified_at": nullable(TIME),
            "is_senior": BOOL,
            "is_active": BOOL,
            "max_load": INT,
            "load": INT,
            "leave_from": nullable(TIME),
            "leave_until": nullable(TIME),
            "conflicts": {"type": "object"},
            "notify_mode": {"type": "string", "enum": list(NOTIFY_MODES)},
            "is_publicly_named": BOOL,
            "last_assigned_at": nullable(TIME),
        }
    ),
    "Notification": obj(
        {
            "id": INT,
            "kind": STR,
            "item_id": nullable(INT),
            "title": STR,
            "body": STR,
            "created_at": TIME,
            "read": BOOL,
        }
    ),
    "AuditEvent": obj(
        {
            "seq": INT,
            "at": TIME,
            "actor": nullable(STR),
            "action": STR,
            "subject": {"type": "string", "description": "类型:编号，如 item:12"},
            "data": {},
            "hash": STR,
        }
    ),
    "Checkpoint": obj(
        {
            "tree_size": INT,
            "root_hash": STR,
            "created_at": TIME,
            "key_id": STR,
            "note": {"type": "string", "description": "C2SP tlog-checkpoint 文本（含签名）"},
        }
    ),
    "QualitySample": obj(
        {
            "id": INT,
            "created_at": TIME,
            "created_by": STR,
            "domain": nullable(STR),
            "period_start": nullable(TIME),
            "period_end": nullable(TIME),
            "size": INT,
            "decided": INT,
            "overturned": INT,
            "overturn_rate": nullable(NUM),
            "checks": array_of(
                obj(
                    {
                        "item_id": INT,
                        "version_id": INT,
                        "original": nullable(STR),
                        "result": nullable(STR),
                        "overturned": nullable(BOOL),
                        "assignment_id": nullable(INT),
                    }
                )
            ),
        }
    ),
    "Queue": obj(
        {
            "items": array_of(
                obj(
                    {
                        "id": INT,
                        "title": STR,
                        "state": STATE,
                        "needs_admin": BOOL,
                        "reviewers_needed": nullable(INT),
                        "open_assignments": INT,
                        "waiting_seconds": INT,
                        "refused": {
                            "type": "object",
                            "additionalProperties": obj({"code": STR, "label": STR}),
                        },
                    }
                )
            ),
            "overdue": array_of(ref("Assignment")),
        }
    ),
    "Dashboard": obj(
        {
            "period": obj(
                {
                    "start": nullable(TIME),
                    "end": nullable(TIME),
                    "domain": nullable(STR),
                    "unit_id": nullable(INT),
                }
            ),
            "volume": obj({"versions": INT, "items": INT}),
            "screening": obj(
                {"screened": INT, "flagged": INT, "flag_rate": nullable(NUM), "failed": INT}
            ),
            "decisions": {"type": "object", "additionalProperties": INT},
            "turnaround_hours": obj({"n": INT, "p50": nullable(NUM), "p90": nullable(NUM)}),
            "overdue": obj({"assignments": INT, "items": INT}),
            "by_domain": array_of(ANY_OBJECT),
            "by_unit": array_of(ANY_OBJECT),
            "by_expert": array_of(ANY_OBJECT),
            "rules": array_of(ANY_OBJECT),
            "agreement": ANY_OBJECT,
        }
    ),
}

# --- request bodies ---------------------------------------------------------------------------

TITLE = {"type": "string", "maxLength": MAX_TITLE_CHARS, "description": "标题（必填，不能换行）"}
BODY_TEXT = {"type": "string", "maxLength": MAX_BODY_CHARS, "description": "正文（Markdown）"}
REASON = {"type": "string", "maxLength": 2000}
DOMAIN = {"type": "string", "enum": list(DOMAINS)}

NEW_ARTICLE = obj(
    {"title": TITLE},
    {
        "body": BODY_TEXT,
        "kind": {
            "type": "string",
            "enum": [k.value for k in ItemKind],
            "default": "article",
            "description": "article；视频须以 multipart/form-data 上传",
        },
        "submit": {"type": "boolean", "default": False, "description": "true：创建后立即提交审查"},
    },
)
NEW_VIDEO = obj(
    {"title": TITLE, "file": {"type": "string", "format": "binary"}},
    {
        "kind": {"type": "string", "enum": [ItemKind.video.value], "default": "video"},
        "description": {"type": "string", "maxLength": MAX_BODY_CHARS},
        "submit": {"type": "string", "enum": ["true", "false", "1", "0"], "default": "false"},
        "subtitles": array_of({"type": "string", "format": "binary"}),
    },
)
REVISION = obj({}, {"title": TITLE, "body": BODY_TEXT})
WITH_REASON = obj({"reason": REASON})
OPTIONAL_REASON = obj({}, {"reason": REASON})
PUBLISH = obj(
    {},
    # null is the same as leaving it out: many clients send every field of their form.
    {"content_sha256": nullable({**SHA256, "description": "要发布的版本哈希（可选的防护）"})},
)
DECISION = obj(
    {
        "decision": {"type": "string", "enum": [d.value for d in DecisionKind]},
        "password": {"type": "string", "description": "签署人的登录密码（重新输入）"},
    },
    {
        "comment": {"type": "string", "maxLength": 20_000},
        "references": {
            "anyOf": [
                array_of({"type": "string", "maxLength": 2000}),
                {"type": "string", "description": "每行一条"},
            ]
        },
        "finding_verdicts": {
            "type": "object",
            "description": "{发现编号: 判定}",
            "additionalProperties": {"type": "string", "enum": list(VERDICTS)},
        },
        "lock_version": {"type": "integer", "description": "读取时稿件的 lock_version（可选）"},
    },
)
# An id the database can hold (PostgreSQL INTEGER): a larger one is refused, not sent on.
DB_ID = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
ASSIGN = obj({"expert_id": DB_ID})
EXPERT_PATCH = {
    **obj(
        {},
        {
            "title": {"type": "string", "maxLength": 100},
            "domains": array_of(DOMAIN),
            "secondary_domains": array_of(DOMAIN),
            "is_verified": BOOL,
            "is_senior": BOOL,
            "is_active": BOOL,
            "max_load": {"type": "integer", "minimum": 1, "maximum": 1000},
            "leave_from": nullable({"type": "string", "description": "ISO 日期或时间"}),
            "leave_until": nullable({"type": "string", "description": "ISO 日期或时间"}),
            "conflicts": {
                "type": "object",
                "properties": {
                    kind: array_of({"type": "string", "maxLength": 200}) for kind in CONFLICT_KINDS
                },
                "additionalProperties": False,
            },
            "notify_mode": {"type": "string", "enum": list(NOTIFY_MODES)},
            "is_publicly_named": {**BOOL, "description": "同意在公开发布页署名"},
        },
    ),
    "additionalProperties": False,
}
QUALITY_SAMPLE = obj(
    {},
    {
        "size": {"type": "integer", "minimum": 1, "maximum": MAX_SAMPLE, "default": 10},
        "from": {"type": "string", "description": "ISO 日期或时间"},
        "to": {"type": "string", "description": "ISO 日期或时间"},
        "domain": {"type": "string", "maxLength": 100, "description": "只抽该领域"},
    },
)
