"""The JSON API's contract, declared once per view and used twice: to build the OpenAPI 3.1
document (``/api/v1/openapi.json``) from ``app.url_map``, and to enforce it on every request
(roles, query parameters, request body), so the description and the behaviour cannot drift."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from flask import Flask, current_app, g, request
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from werkzeug.routing import Rule

from review.errors import Forbidden, InvalidInput, TooLarge
from review.inputs import parse_json
from review.models import Role

API_PREFIX = "/api/v1"
JSON = "application/json"
MULTIPART = "multipart/form-data"
ERROR_REF = {"$ref": "#/components/schemas/Error"}

#: Error statuses and what they mean, shared by every operation that can answer them.
ERROR_TEXT = {
    400: "请求格式或字段不正确（error 给出原因代码，field 给出字段）",
    401: "缺少或无效的 API 令牌",
    403: "角色无权执行此操作，或密码确认失败",
    404: "对象不存在或调用者无权查看",
    409: "当前状态不允许此操作（如非法状态转换、版本哈希不一致、并发修改）",
    413: "请求体超过上限",
    429: "密码错误次数过多（与登录一样计数），Retry-After 给出须等待的秒数",
}


@dataclass(frozen=True)
class Param:
    """A query parameter: its JSON schema is checked after the text is converted to the type."""

    name: str
    schema: Mapping[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Response:
    """A success response: a JSON schema, or another media type (files)."""

    description: str
    schema: Mapping[str, Any] | None = None
    media_type: str = JSON
    example: Any = None


@dataclass(frozen=True)
class Operation:
    """What one API view promises: who may call it, what it takes and what it answers."""

    summary: str
    tag: str
    responses: Mapping[int, Response]
    description: str = ""
    roles: tuple[Role, ...] | None = None  # None: every signed-in role
    public: bool = False  # no token needed
    query: tuple[Param, ...] = ()
    body: Mapping[str, Any] | None = None  # JSON request body
    form: Mapping[str, Any] | None = None  # multipart/form-data request body
    body_required: bool = False
    body_example: Any = None
    errors: tuple[int, ...] = ()  # further error statuses the operation can answer
    path_params: Mapping[str, str] = field(default_factory=dict)  # name -> description

    def error_statuses(self, has_path_params: bool) -> list[int]:
        """Every error status this operation can answer, derived from what it declares."""
        statuses = set(self.errors)
        if not self.public:
            statuses.add(401)
        if self.roles is not None and set(self.roles) != set(Role):
            statuses.add(403)
        if has_path_params:
            statuses.add(404)
        statuses.add(400)  # an undeclared query parameter is refused
        if self.body is not None or self.form is not None:
            statuses.add(413)
        return sorted(statuses)


# --- enforcing the contract -------------------------------------------------------------------

TYPE_LABELS = {
    "string": "文本",
    "integer": "整数",
    "number": "数字",
    "boolean": "布尔值（true 或 false）",
    "object": "对象",
    "array": "数组",
    "null": "null",
}


def _type_label(expected: object) -> str:
    names = expected if isinstance(expected, list) else [expected]
    return "或".join(TYPE_LABELS.get(str(n), str(n)) for n in names)


def _refusal(error: ValidationError) -> InvalidInput:
    """A schema violation as a Chinese 400 naming the field (JSON path joined with '.')."""
    path = ".".join(str(p) for p in error.absolute_path)
    keyword, value = error.validator, error.validator_value
    if keyword == "required":
        missing = next((n for n in value if n not in (error.instance or {})), "")
        name = f"{path}.{missing}" if path else str(missing)
        return InvalidInput(f"缺少必填字段 {name}", code="required", field=name)
    name = path or "body"
    if keyword == "type":
        message = f"字段 {name} 必须是{_type_label(value)}"
        return InvalidInput(message, code="invalid_field", field=name)
    if keyword in ("enum", "const"):
        choices = value if keyword == "enum" else [value]
        shown = "、".join(json.dumps(c, ensure_ascii=False) for c in choices)
        return InvalidInput(f"字段 {name} 只能是：{shown}", code="invalid_field", field=name)
    if keyword == "maxLength":
        return InvalidInput(f"字段 {name} 过长：最多 {value} 个字符", code="too_long", field=name)
    if keyword == "maxItems":
        return InvalidInput(f"字段 {name} 最多 {value} 项", code="too_long", field=name)
    if keyword in ("minLength", "minItems"):
        return InvalidInput(f"字段 {name} 不能为空", code="required", field=name)
    if keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return InvalidInput(f"字段 {name} 超出允许范围", code="invalid_field", field=name)
    if keyword in ("additionalProperties", "propertyNames"):
        return InvalidInput(f"不支持的字段：{error.message}", code="invalid_field", field=name)
    return InvalidInput(f"字段 {name} 不符合接口说明", code="invalid_field", field=name)


def validator_for(schema: Mapping[str, Any]) -> Draft202012Validator:
    """A validator for ``schema`` with the component schemas resolvable."""
    return Draft202012Validator(_resolved(schema))


def validate(instance: Any, schema: Mapping[str, Any] | Draft202012Validator) -> None:
    """Raise a Chinese InvalidInput (400) for the first violation of ``schema``."""
    validator = schema if isinstance(schema, Draft202012Validator) else validator_for(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        raise _refusal(errors[0])


def _resolved(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` with the component schemas attached, so ``$ref`` resolves."""
    from review.api_schemas import COMPONENTS

    return {**schema, "$defs": COMPONENTS} if "$ref" in json.dumps(schema) else dict(schema)


_INT = re.compile(r"-?[0-9]{1,18}")


def _query_value(param: Param, raw: str) -> Any:
    kind = param.schema.get("type")
    if kind == "integer":
        if not _INT.fullmatch(raw):
            raise InvalidInput(
                f"查询参数 {param.name} 必须是整数", code="invalid_field", field=param.name
            )
        return int(raw)
    if kind == "boolean":
        if raw.lower() not in ("true", "false", "1", "0"):
            message = f"查询参数 {param.name} 必须是 true 或 false"
            raise InvalidInput(message, code="invalid_field", field=param.name)
        return raw.lower() in ("true", "1")
    return raw


def parse_query(op: Operation, validators: Mapping[str, Draft202012Validator]) -> dict[str, Any]:
    """The declared query parameters, converted and checked. An undeclared or repeated parameter
    is refused (most likely a typo or a client bug that would otherwise be ignored); an empty
    text value counts as absent, an empty number, flag or choice is refused."""
    declared = {p.name for p in op.query}
    unknown = sorted(name for name in request.args if name not in declared)
    if unknown:
        shown = "、".join(unknown)[:200]
        raise InvalidInput(
            f"不支持的查询参数：{shown}", code="invalid_field", field=unknown[0][:100]
        )
    values: dict[str, Any] = {}
    for param in op.query:
        given = request.args.getlist(param.name)
        if len(given) > 1:
            raise InvalidInput(
                f"查询参数 {param.name} 只能出现一次", code="invalid_field", field=param.name
            )
        raw = given[0] if given else None
        typed = "enum" in param.schema or param.schema.get("type") in ("integer", "boolean")
        if raw is None or (raw == "" and not typed):
            if param.required:
                raise InvalidInput(f"缺少查询参数 {param.name}", code="required", field=param.name)
            continue
        if "\x00" in raw:  # PostgreSQL text cannot hold NUL: refuse it here, for every backend
            raise InvalidInput(
                f"查询参数 {param.name} 含有非法的空字符（NUL）",
                code="invalid_text",
                field=param.name,
            )
        value = _query_value(param, raw)
        validate({param.name: value}, validators[param.name])
        values[param.name] = value
    return values


def json_body() -> dict[str, Any]:
    """The request body as a JSON object (empty body: ``{}``): strict UTF-8, no NUL or lone
    surrogate anywhere (review.inputs.parse_json), bounded size and depth."""
    cached = request.environ.get("kepu.json")  # the stream can be read once per request
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    limit = int(current_app.config["MAX_JSON_BYTES"])
    too_large = TooLarge(f"JSON 请求体超过上限 {limit} 字节")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    raw = request.stream.read(limit + 1)  # bounded even without a Content-Length (chunked)
    if len(raw) > limit:
        raise too_large
    data: Any = parse_json(raw, content_type=request.content_type) if raw.strip() else {}
    if not isinstance(data, dict):
        raise InvalidInput("请求体必须是 JSON 对象", code="invalid_json")
    request.environ["kepu.json"] = data
    return data


def _is_file(prop: Mapping[str, Any]) -> bool:
    return prop.get("format") == "binary" or prop.get("items", {}).get("format") == "binary"


def text_fields(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A multipart schema without its file parts: what the text fields must satisfy (the view
    checks the files themselves, with its own messages)."""
    props = {k: v for k, v in schema.get("properties", {}).items() if not _is_file(v)}
    return {
        **schema,
        "properties": props,
        "required": [n for n in schema.get("required", []) if n in props],
    }


def _form_body(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The text fields of a multipart body (files are left to the view)."""
    from review.web import parse_upload

    parse_upload()  # 413 in Chinese while an oversize part streams
    return {n: request.form.get(n) for n in text_fields(schema)["properties"] if n in request.form}


def is_public(endpoint: str | None) -> bool:
    """True when the endpoint's operation is readable without a token."""
    if endpoint is None:
        return False
    op = getattr(current_app.view_functions.get(endpoint), "openapi", None)
    return bool(op is not None and op.public)


def operation(**spec: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare an API view's contract; the wrapper enforces roles, query and body before the view
    runs and passes ``query=`` / ``body=`` when declared."""
    op = Operation(**spec)
    compiled: dict[str, Any] = {}

    def validators() -> dict[str, Any]:
        # Compiled on first use, once per operation, from the declared schemas; a concurrent
        # first use compiles twice, harmlessly, and publishes with one assignment.
        if "all" not in compiled:
            compiled["all"] = {
                "query": {
                    p.name: validator_for({"type": "object", "properties": {p.name: p.schema}})
                    for p in op.query
                },
                "body": validator_for(op.body) if op.body is not None else None,
                "form": validator_for(text_fields(op.form)) if op.form else None,
            }
        return compiled["all"]  # type: ignore[no-any-return]

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if op.roles is not None and not g.api_user.has_role(*op.roles):
                raise Forbidden("您的角色无权执行此操作")
            query = parse_query(op, validators()["query"])
            if op.query:
                kwargs["query"] = query
            if op.form is not None and request.mimetype == MULTIPART:
                body = _form_body(op.form)
                validate(body, validators()["form"])
                kwargs["body"] = body
            elif op.body is not None:
                body = json_body()
                validate(body, validators()["body"])
                kwargs["body"] = body
            return view(*args, **kwargs)

        wrapper.openapi = op  # type: ignore[attr-defined]
        return wrapper

    return decorator


# --- building the document --------------------------------------------------------------------

_CONVERTER = re.compile(r"<(?:(?P<conv>[a-zA-Z_]+)(?:\((?P<args>[^)]*)\))?:)?(?P<name>\w+)>")


def _path_and_params(rule: Rule, op: Operation) -> tuple[str, list[dict[str, Any]]]:
    params: list[dict[str, Any]] = []

    def replace(match: re.Match[str]) -> str:
        name, conv = match["name"], match["conv"] or "default"
        schema: dict[str, Any] = {"type": "string"}
        if conv == "int":
            converter = rule._converters[name]  # type: ignore[attr-defined]
            schema = {"type": "integer", "minimum": 0}
            if converter.max is not None:
                schema["maximum"] = converter.max
        elif conv == "any":
            schema = {"type": "string", "enum": list(rule._converters[name].items)}  # type: ignore[attr-defined]
        params.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "description": op.path_params.get(name, ""),
                "schema": schema,
            }
        )
        return "{" + name + "}"

    return _CONVERTER.sub(replace, rule.rule), params


def _content(schema: Mapping[str, Any] | None, media_type: str, example: Any = None) -> dict:
    body: dict[str, Any] = {"schema": dict(schema) if schema is not None else {}}
    if example is not None:
        body["example"] = example
    return {media_type: body}


def _role_text(op: Operation) -> str:
    if op.public:
        return "公开，无需令牌。"
    roles = op.roles or tuple(Role)
    return "可调用的角色：" + "、".join(r.value for r in roles) + "。"


def _operation_object(rule: Rule, method: str, op: Operation, view: str) -> dict[str, Any]:
    path, path_params = _path_and_params(rule, op)
    params = path_params + [
        {
            "name": p.name,
            "in": "query",
            "required": p.required,
            "description": p.description,
            "schema": dict(p.schema),
        }
        for p in op.query
    ]
    responses: dict[str, Any] = {
        str(status): {
            "description": resp.description,
            "content": _content(resp.schema, resp.media_type, resp.example),
        }
        for status, resp in op.responses.items()
    }
    for status in op.error_statuses(bool(path_params)):
        responses[str(status)] = {
            "description": ERROR_TEXT[status],
            "content": _content(ERROR_REF, JSON),
        }
    obj: dict[str, Any] = {
        "operationId": view.removeprefix("api."),
        "summary": op.summary,
        "description": " ".join(t for t in (op.description, _role_text(op)) if t),
        "tags": [op.tag],
        "parameters": params,
        "responses": responses,
        "x-roles": [r.value for r in (op.roles or tuple(Role))] if not op.public else [],
    }
    if op.public:
        obj["security"] = []
    content: dict[str, Any] = {}
    if op.body is not None:
        content.update(_content(op.body, JSON, op.body_example))
    if op.form is not None:
        content.update(_content(op.form, MULTIPART))
    if content:
        obj["requestBody"] = {"required": op.body_required, "content": content}
    return obj


def api_rules(app: Flask) -> list[Rule]:
    """Every URL rule under /api/v1, in a stable order."""
    return sorted(
        (r for r in app.url_map.iter_rules() if r.rule.startswith(API_PREFIX + "/")),
        key=lambda r: r.rule,
    )


def undocumented(app: Flask) -> list[str]:
    """API rules whose view declares no operation (the spec test wants this empty)."""
    return [
        r.rule
        for r in api_rules(app)
        if getattr(app.view_functions[r.endpoint], "openapi", None) is None
    ]


def build_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every /api/v1 route, from the declared operations."""
    from review.api_schemas import COMPONENTS, DESCRIPTION, TAGS

    paths: dict[str, dict[str, Any]] = {}
    for rule in api_rules(app):
        op = getattr(app.view_functions[rule.endpoint], "openapi", None)
        if op is None:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            obj = _operation_object(rule, method, op, rule.endpoint)
            path = _path_and_params(rule, op)[0]
            paths.setdefault(path, {})[method.lower()] = obj
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "科普信息科学性审查平台 API", "version": "1", "description": DESCRIPTION},
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "tags": [{"name": name, "description": text} for name, text in TAGS.items()],
        "paths": paths,
        "components": {
            "schemas": COMPONENTS,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "API 令牌（kp_ 开头），由管理员用 "
                    "`kepu users token 用户名` 签发，放在 Authorization: Bearer <令牌> 里。",
                }
            },
        },
    }
    return _ref_components(document)


def _ref_components(document: dict[str, Any]) -> dict[str, Any]:
    """Schemas in views point at ``#/$defs/X`` (so the runtime validator resolves them); the
    document points at ``#/components/schemas/X``."""
    text = json.dumps(document, ensure_ascii=False)
    return json.loads(text.replace('"#/$defs/', '"#/components/schemas/'))  # type: ignore[no-any-return]
