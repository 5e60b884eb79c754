"""Frozen data types that flow in and out of the screening engine."""

from __future__ import annotations

from dataclasses import dataclass, field

LEVELS: tuple[str, ...] = ("none", "low", "medium", "high", "critical")
SEVERITIES: tuple[str, ...] = ("low", "medium", "high", "critical")
SEGMENT_KINDS: tuple[str, ...] = ("title", "body", "description", "cue")

CATEGORIES: tuple[str, ...] = (
    "夸大疗效",
    "伪机理",
    "食品谣言",
    "反疫苗反医学",
    "伪权威",
    "恐慌与标题党",
    "阴谋论",
    "伪物理",
    "迷信",
    "曲解研究",
)

DOMAINS: tuple[str, ...] = (
    "医学健康",
    "食品药品安全",
    "农业与转基因",
    "生态环境",
    "海洋",
    "气象与气候",
    "防灾减灾与应急",
    "地质与自然资源",
    "林业",
    "水务",
    "能源与低碳",
    "信息技术与人工智能",
    "量子与前沿物理",
    "基因编辑与生命科学",
    "交通",
)

CONTEXTS: tuple[str, ...] = (
    "debunk_document",
    "refutation",
    "negation",
    "question",
    "attribution",
    "hedged",
    "sourced",
)


@dataclass(frozen=True)
class Segment:
    """One piece of a version's text (title, body paragraph, description or transcript cue)."""

    kind: str
    text: str
    start_time: float | None = None
    end_time: float | None = None


@dataclass(frozen=True)
class Thresholds:
    """Score cut-offs for risk levels and the level that routes a report to experts."""

    flag_level: str = "medium"
    # Severity weights are low 1, medium 2, high 3, critical 6; context multiplies them
    # (attribution 0.4, hedged 0.5). So a plainly asserted claim of any severity reaches
    # "medium" (routes to experts), a reported or hedged weak one stays "low".
    low_at: float = 0.01
    medium_at: float = 1.0
    high_at: float = 3.0
    critical_at: float = 6.0

    def __post_init__(self) -> None:
        if self.flag_level not in LEVELS:
            raise ValueError(f"flag_level must be one of {LEVELS}, got {self.flag_level!r}")
        cuts = (self.low_at, self.medium_at, self.high_at, self.critical_at)
        if any(a > b for a, b in zip(cuts, cuts[1:], strict=False)):
            raise ValueError("level cut-offs must be non-decreasing")

    def level_for(self, score: float) -> str:
        """Return the risk level for a score."""
        if score >= self.critical_at:
            return "critical"
        if score >= self.high_at:
            return "high"
        if score >= self.medium_at:
            return "medium"
        if score >= self.low_at:
            return "low"
        return "none"


@dataclass(frozen=True)
class Finding:
    """One rule hit, located in the original text of one segment."""

    rule_id: str
    rule_version: int
    category: str
    severity: str
    segment: int
    start: int
    end: int
    text: str
    explanation: str
    context: str | None
    score: float
    domains: tuple[str, ...]
    start_time: float | None = None
    end_time: float | None = None
    title: str = ""

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-serialisable dict."""
        return {
            "rule_id": self.rule_id,
            "rule_version": self.rule_version,
            "title": self.title,
            "category": self.category,
            "severity": self.severity,
            "segment": self.segment,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "explanation": self.explanation,
            "context": self.context,
            "score": self.score,
            "domains": list(self.domains),
            "start_time": self.start_time,
            "end_time": self.end_time,
        }


@dataclass(frozen=True)
class Report:
    """Outcome of screening one version: counted findings, risk, domains and ruleset version."""

    findings: tuple[Finding, ...]
    risk_score: float
    risk_level: str
    domains: tuple[str, ...]
    ruleset_version: str
    suppressed: tuple[Finding, ...] = field(default=())
    document_context: str | None = None

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-serialisable dict."""
        return {
            "risk_score": self.risk_score,
            "risk_level": self.risk_level,
            "domains": list(self.domains),
            "ruleset_version": self.ruleset_version,
            "document_context": self.document_context,
            "findings": [f.to_dict() for f in self.findings],
            "suppressed": [f.to_dict() for f in self.suppressed],
        }

    def routes_to_experts(self, thresholds: Thresholds) -> bool:
        """True when the risk level is at or above the configured flag level."""
        return LEVELS.index(self.risk_level) >= LEVELS.index(thresholds.flag_level)
