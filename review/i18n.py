"""The i18n layer: Flask-Babel, Simplified Chinese as source and default language, English second.

The Chinese strings in the code and templates are the msgids, so a Chinese page needs no catalog;
``review/translations/en`` holds the English one. Labels defined in other modules (states, roles,
decisions, assignment states, refusal reasons, domains) are translated where templates show them;
they are listed here with ``N_`` so that ``pybabel extract`` puts them in the catalog, and
``tests/review/test_i18n.py`` checks that this list stays in step with those modules.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from flask import Flask, request, session, url_for
from flask_babel import Babel, get_locale, gettext, refresh

#: The choices offered to users (``?lang=``) and the Babel locale each one selects.
LOCALES = {"zh": "zh_Hans_CN", "en": "en"}
#: Each language named in itself; autonyms are never translated.
LANGUAGE_NAMES = {"zh": "中文", "en": "English"}
DEFAULT_LANGUAGE = "zh"

babel = Babel()


def N_(message: str) -> str:
    """Mark a string for extraction without translating it now (it is translated when shown)."""
    return message


def _query_args() -> list[tuple[str, str]]:
    """The query parameters, or none when the query string is not UTF-8 (the input check in
    review.inputs answers that request with 400; its error page must still render)."""
    try:
        return list(request.args.items(multi=True))
    except UnicodeDecodeError:
        return []


def _query_lang() -> str | None:
    return next((v for k, v in _query_args() if k == "lang"), None)


def chosen_language() -> str:
    """``zh`` or ``en``: ``?lang=``, then the session, then Accept-Language, then Chinese."""
    lang = _query_lang()
    if lang in LOCALES:
        return lang
    lang = session.get("lang")
    if lang in LOCALES:
        return str(lang)
    for tag, quality in request.accept_languages:  # most preferred first
        primary = tag.replace("_", "-").split("-")[0].lower()
        if quality > 0 and (primary in LOCALES or primary == "*"):
            return primary if primary in LOCALES else DEFAULT_LANGUAGE
    return DEFAULT_LANGUAGE


def _select_locale() -> str:
    return LOCALES[chosen_language()]


def _start_request() -> None:
    # A fresh locale for every request even when one app context spans several (the test
    # client in tests/conftest.py); Flask-Babel caches the locale in ``g``.
    refresh()
    lang = _query_lang()
    if lang in LOCALES and not request.path.startswith("/api/"):
        session["lang"] = lang  # remembered for the following pages


def html_lang() -> str:
    """The ``<html lang>`` value of the current locale."""
    locale = get_locale()
    return "en" if locale is not None and locale.language == "en" else "zh-CN"


def language_links() -> list[dict[str, Any]]:
    """The header's language switch: this page (or the start page) in each language."""
    rule = request.url_rule
    if rule is not None and rule.methods is not None and "GET" in rule.methods:
        base = request.script_root + request.path
        args = [(k, v) for k, v in _query_args() if k != "lang"]
    else:  # the answer to a form post: its URL may not answer GET
        base, args = url_for("web.home"), []
    current = chosen_language()
    return [
        {
            "code": code,
            "name": LANGUAGE_NAMES[code],
            "href": f"{base}?{urlencode([*args, ('lang', code)])}",
            "current": code == current,
            "html_lang": "en" if code == "en" else "zh-CN",
        }
        for code in LOCALES
    ]


RISK_LABELS = {
    "none": N_("无"),
    "low": N_("低"),
    "medium": N_("中"),
    "high": N_("高"),
    "critical": N_("严重"),
}


def risk_label(level: str) -> str:
    """A screening risk level in words, in the current language."""
    return gettext(RISK_LABELS[level]) if level in RISK_LABELS else level


def state_label(value: str) -> str:
    """An item state (its enum value) in words, in the current language."""
    from review.lifecycle import STATE_LABELS, ItemState

    try:
        return gettext(STATE_LABELS[ItemState(value)])
    except ValueError:
        return value


def join_labels(values: Iterable[str]) -> str:
    """Translate each label (e.g. domain names) and join them the way the language lists."""
    return gettext("、").join(gettext(str(v)) for v in values if v)  # gettext("") is the header


def translate(value: Any) -> str:
    """A label from another module in the current language (unknown strings pass through).

    Used as the ``tr`` filter rather than ``_()`` so that the result stays plain text and is
    escaped like any other value.
    """
    return str(gettext(str(value))) if value else ""  # gettext("") would be the catalog header


def init_app(app: Flask) -> None:
    """Configure Flask-Babel and the template helpers on ``app``."""
    app.config.setdefault("BABEL_DEFAULT_LOCALE", LOCALES[DEFAULT_LANGUAGE])
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", "UTC")
    babel.init_app(app, locale_selector=_select_locale)
    app.before_request(_start_request)
    app.jinja_env.filters.update(join_labels=join_labels, tr=translate)
    app.jinja_env.globals.update(
        html_lang=html_lang,
        language_links=language_links,
        risk_label=risk_label,
        state_label=state_label,
        context_label=context_label,
    )


def context_label(context: str | None) -> str:
    """A finding's screening context (rules.CONTEXTS) in the reader's language."""
    if not context:
        return ""
    label = CONTEXT_LABELS.get(context)
    return str(gettext(label)) if label else context


#: The screening context of a finding (rules.CONTEXTS) in plain words.
CONTEXT_LABELS = {
    "debunk_document": N_("辟谣类文章"),
    "refutation": N_("正在反驳这一说法"),
    "negation": N_("否定语境"),
    "question": N_("以提问方式出现"),
    "attribution": N_("转述他人说法"),
    "hedged": N_("措辞留有余地"),
    "sourced": N_("注明了来源的报道"),
}

#: An expert's verdict on one finding (expert_pool.operations.VERDICTS).
VERDICT_LABELS = {
    "confirmed": N_("属实"),
    "false_positive": N_("误报"),
    "uncertain": N_("不确定"),
}


# --- labels defined elsewhere, translated when shown -------------------------------------------
# Kept literal (extraction reads source, and review/ may not import expert_pool); the test
# compares them with review.lifecycle.STATE_LABELS, review.models.ROLE_LABELS / DECISION_LABELS,
# expert_pool.models.ASSIGNMENT_LABELS, expert_pool.matching.REFUSAL_LABELS and rules.DOMAINS.

ITEM_STATE_LABELS = (
    N_("草稿"),
    N_("已提交"),
    N_("机器初筛中"),
    N_("初筛通过"),
    N_("疑似问题待审"),
    N_("专家审核中"),
    N_("审核通过"),
    N_("需修改"),
    N_("未通过"),
    N_("已发布"),
    N_("已撤回发布"),
    N_("已撤稿"),
)

ROLE_LABELS = (N_("媒体编辑"), N_("审核专家"), N_("审计（宣传部）"), N_("管理员"))

DECISION_LABELS = (N_("通过"), N_("要求修改"), N_("驳回"))

ASSIGNMENT_LABELS = (
    N_("待接受"),
    N_("审核中"),
    N_("已谢绝"),
    N_("已超时"),
    N_("已撤销"),
    N_("已完成"),
)

REFUSAL_LABELS = (
    N_("已停用"),
    N_("未认证"),
    N_("休假中"),
    N_("已参与过此稿件（申诉/仲裁须回避）"),
    N_("利益冲突：提交人本人"),
    N_("利益冲突：与提交单位相同"),
    N_("利益冲突：申报的单位"),
    N_("利益冲突：申报的人员"),
    N_("利益冲突：稿件涉及申报的企业"),
    N_("已达最大同时审核数"),
    N_("领域不匹配"),
    N_("仲裁须由资深专家担任"),
    N_("符合条件但排序靠后"),
)

DOMAIN_LABELS = (
    N_("医学健康"),
    N_("食品药品安全"),
    N_("农业与转基因"),
    N_("生态环境"),
    N_("海洋"),
    N_("气象与气候"),
    N_("防灾减灾与应急"),
    N_("地质与自然资源"),
    N_("林业"),
    N_("水务"),
    N_("能源与低碳"),
    N_("信息技术与人工智能"),
    N_("量子与前沿物理"),
    N_("基因编辑与生命科学"),
    N_("交通"),
)

#: rules.CATEGORIES, shown on the rule-pack pages (the test compares the two).
CATEGORY_LABELS = (
    N_("夸大疗效"),
    N_("伪机理"),
    N_("食品谣言"),
    N_("反疫苗反医学"),
    N_("伪权威"),
    N_("恐慌与标题党"),
    N_("阴谋论"),
    N_("伪物理"),
    N_("迷信"),
    N_("曲解研究"),
)

#: Video labels (review.models): subtitle sources, media steps and their states.
MEDIA_LABELS = (
    N_("上传的字幕文件"),
    N_("内嵌字幕轨"),
    N_("画面字幕识别（OCR）"),
    N_("提取内嵌字幕"),
    N_("识别画面字幕"),
    N_("生成缩略图"),
    N_("排队中"),
    N_("处理中"),
    N_("已完成"),
    N_("失败"),
    N_("专家补充"),
)
