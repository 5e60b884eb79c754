"""Request input hygiene: every byte of text a client sends must be strict UTF-8, and every
request shape is bounded, before a view or a CSRF check reads anything.

Werkzeug is lenient in ways that lose Chinese input silently (RELIABILITY.md §0.7): a form
body with raw GBK bytes loses all its fields, percent-encoded GBK is kept as the literal
``%C9%F3``, a multipart field in GBK turns into U+FFFD, a part with a GBK file name makes the
whole multipart body vanish, and raw GBK in a query string raises UnicodeDecodeError (500).
Here the form parser is replaced by a strict one, the query string and headers are checked
first, and JSON is decoded and walked for NUL and lone surrogates; every refusal is a 4xx
with a Chinese message naming the field (``{"error": "invalid_encoding", "field": ...}``).
"""

from __future__ import annotations

import json
import typing as t
from urllib.parse import unquote_to_bytes

from flask import current_app, request
from flask_babel import gettext
from werkzeug.datastructures import FileStorage, Headers, MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser, MultiPartParser, _chunk_iter
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from review.errors import DomainError, InvalidInput, TooLarge

#: Whole header block above which a request answers 431 (browsers stay far below it; a
#: reverse proxy such as gunicorn refuses 8 KiB header lines anyway).
MAX_HEADER_BYTES = 16 * 1024
#: One header (the Cookie header in practice) above which a request answers 431.
MAX_HEADER_FIELD_BYTES = 8 * 1024
#: Query parameters above which a request answers 414.
MAX_QUERY_PARAMS = 200
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
JSON_CHARSETS = ("utf-8", "utf8", "us-ascii", "ascii")
#: A part may declare one of these (Werkzeug's list); anything else is read as UTF-8.
PART_CHARSETS = ("ascii", "us-ascii", "utf-8", "iso-8859-1")


class HeadersTooLarge(DomainError):
    """The request's headers (usually a bloated Cookie) exceed the limit."""

    status = 431
    code = "headers_too_large"


class UriTooLong(DomainError):
    """The query string has more parameters than any page of ours reads."""

    status = 414
    code = "too_many_params"


# --- strict decoding ------------------------------------------------------------------------------


def _invalid_encoding(field: str, *, what: str = "value") -> InvalidInput:
    if what == "filename":
        message = gettext(
            "字段“%(field)s”的文件名不是合法的 UTF-8 编码（可能是 GBK 等编码）。"
            "请将文件改为其他名称后重新上传，或换用其他浏览器",
            field=field,
        )
    elif what == "body":
        message = gettext(
            "请求体不是合法的 UTF-8 编码（可能是 GBK、GB18030 或 Big5 等编码），请以 UTF-8 提交"
        )
    else:
        message = gettext(
            "字段“%(field)s”不是合法的 UTF-8 编码（可能是 GBK、GB18030 或 Big5 等编码），"
            "请以 UTF-8 提交",
            field=field,
        )
    return InvalidInput(message, code="invalid_encoding", field=field)


def _nul(field: str) -> InvalidInput:
    return InvalidInput(
        gettext("字段“%(field)s”含有非法的空字符（NUL）", field=field),
        code="invalid_text",
        field=field,
    )


def _lone_surrogate(field: str) -> InvalidInput:
    return InvalidInput(
        gettext("字段“%(field)s”含有无法编码的字符（孤立代理项）", field=field),
        code="invalid_text",
        field=field,
    )


def _loose(raw: bytes) -> str:
    """Bytes for a message or a field label only: never stored, never compared."""
    return raw.decode("utf-8", "replace")[:100]


def decode_pairs(raw: bytes, *, max_pairs: int, too_many: DomainError) -> list[tuple[str, str]]:
    """``a=1&b=2`` (a query string or an urlencoded body) decoded as strict UTF-8, both the
    raw bytes and what the percent escapes stand for; ``+`` is a space as in HTML forms."""
    pairs: list[tuple[str, str]] = []
    if not raw:
        return pairs
    chunks = raw.split(b"&")
    if len(chunks) > max_pairs:
        raise too_many
    for chunk in chunks:
        if not chunk:
            continue
        name_raw, _, value_raw = chunk.partition(b"=")
        name_bytes = unquote_to_bytes(name_raw.replace(b"+", b" "))
        try:
            name = name_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise _invalid_encoding(_loose(name_bytes)) from None
        try:
            value = unquote_to_bytes(value_raw.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            raise _invalid_encoding(name) from None
        if "\x00" in name or "\x00" in value:
            raise _nul(name.replace("\x00", ""))
        pairs.append((name, value))
    return pairs


def _form_too_large(limit: int, field: str | None = None) -> TooLarge:
    if field:
        return TooLarge(
            gettext("表单字段“%(field)s”超过上限 %(kb)s KB", field=field, kb=limit // 1024),
            code="field_too_large",
            field=field,
        )
    return TooLarge(gettext("表单内容超过上限 %(kb)s KB", kb=limit // 1024), code="form_too_large")


def _too_many_parts(limit: int) -> TooLarge:
    return TooLarge(gettext("表单字段或文件过多：最多 %(n)s 个", n=limit), code="too_many_parts")


class StrictMultipartDecoder(MultipartDecoder):
    """Werkzeug's decoder, refusing part headers (field and file names) that are not UTF-8."""

    def _parse_headers(self, data: bytes | bytearray) -> Headers:
        try:
            bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            name = _part_name(bytes(data))
            filename = b"filename" in bytes(data).lower()
            raise _invalid_encoding(name, what="filename" if filename else "value") from None
        return super()._parse_headers(data)


def _part_name(header_block: bytes) -> str:
    """The ``name`` of a part whose headers are not UTF-8 (for the message only)."""
    for line in header_block.decode("latin-1").splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-disposition":
            name = parse_options_header(value)[1].get("name", "")
            return name.encode("latin-1").decode("utf-8", "replace") or "file"
    return "file"


class StrictMultiPartParser(MultiPartParser):
    """``MultiPartParser.parse`` of Werkzeug 3.1 with three changes: headers and field values
    must be strict UTF-8 (not decoded with ``"replace"``), and the limits answer specific
    Chinese 413s (too many parts, a field over the memory limit, a file over the video limit)
    instead of a bare RequestEntityTooLarge. Keep in step with Werkzeug when upgrading it."""

    def parse(
        self, stream: t.IO[bytes], boundary: bytes, content_length: int | None
    ) -> tuple[MultiDict[str, str], MultiDict[str, FileStorage]]:
        current_part: Field | File | None = None
        field_size: int | None = None
        container: t.Any = None
        decoder = StrictMultipartDecoder(
            boundary, max_form_memory_size=self.max_form_memory_size, max_parts=self.max_form_parts
        )
        fields: list[tuple[str, str]] = []
        files: list[tuple[str, FileStorage]] = []

        def next_event() -> t.Any:
            try:
                return decoder.next_event()
            except RequestEntityTooLarge:
                if self.max_form_parts is not None and (
                    decoder._parts_decoded > self.max_form_parts
                ):
                    raise _too_many_parts(self.max_form_parts) from None
                name = current_part.name if isinstance(current_part, Field) else None
                raise _form_too_large(int(self.max_form_memory_size or 0), name) from None

        for data in _chunk_iter(stream.read, self.buffer_size):
            try:
                decoder.receive_data(data)
            except RequestEntityTooLarge:
                raise _form_too_large(int(self.max_form_memory_size or 0)) from None
            event = next_event()
            while not isinstance(event, Epilogue | NeedData):
                if isinstance(event, Field):
                    current_part = event
                    field_size = 0
                    container = []
                elif isinstance(event, File):
                    current_part = event
                    field_size = None
                    container = self.start_file_streaming(event, content_length)
                elif isinstance(event, Data) and current_part is not None:
                    if isinstance(current_part, Field):
                        assert field_size is not None
                        field_size += len(event.data)
                        if self.max_form_memory_size is not None and (
                            field_size > self.max_form_memory_size
                        ):
                            raise _form_too_large(self.max_form_memory_size, current_part.name)
                        container.append(event.data)
                    else:
                        _write_file(container, event.data)
                    if not event.more_data:
                        if isinstance(current_part, Field):
                            value = _field_value(current_part, container)
                            fields.append((current_part.name, value))
                        else:
                            container.seek(0)
                            files.append(
                                (
                                    current_part.name,
                                    FileStorage(
                                        container,
                                        current_part.filename,
                                        current_part.name,
                                        headers=current_part.headers,
                                    ),
                                )
                            )
                event = next_event()
        return self.cls(fields), self.cls(files)


def _write_file(container: t.Any, data: bytes) -> None:
    try:
        container.write(data)
    except RequestEntityTooLarge:
        from review.media import too_large

        raise too_large(int(getattr(container, "limit", 0))) from None


def _field_value(part: Field, chunks: list[bytes]) -> str:
    declared = parse_options_header(part.headers.get("content-type"))[1].get("charset", "")
    charset = declared.lower() if declared.lower() in PART_CHARSETS else "utf-8"
    try:
        value = b"".join(chunks).decode(charset)
    except UnicodeDecodeError:
        raise _invalid_encoding(part.name) from None
    if "\x00" in value or "\x00" in part.name:
        raise _nul(part.name.replace("\x00", ""))
    return value


class StrictFormDataParser(FormDataParser):
    """Form parsing that refuses what Werkzeug would silently drop or garble, and bounds an
    urlencoded body (Werkzeug reads it whole, up to MAX_CONTENT_LENGTH, into memory)."""

    max_urlencoded_bytes: int = 16 * 1024 * 1024

    def _parse_urlencoded(
        self,
        stream: t.IO[bytes],
        mimetype: str,
        content_length: int | None,
        options: dict[str, str],
    ) -> t.Any:
        limit = self.max_urlencoded_bytes
        if content_length is not None and content_length > limit:
            raise _form_too_large(limit)
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise _form_too_large(limit)
        max_pairs = self.max_form_parts or 1000
        pairs = decode_pairs(raw, max_pairs=max_pairs, too_many=_too_many_parts(max_pairs))
        return stream, self.cls(pairs), self.cls()

    def _parse_multipart(
        self,
        stream: t.IO[bytes],
        mimetype: str,
        content_length: int | None,
        options: dict[str, str],
    ) -> t.Any:
        parser = StrictMultiPartParser(
            stream_factory=self.stream_factory,
            max_form_memory_size=self.max_form_memory_size,
            max_form_parts=self.max_form_parts,
            cls=self.cls,
        )
        boundary = options.get("boundary", "").encode("ascii", "replace")
        if not boundary:
            raise InvalidInput(
                gettext("multipart 请求缺少 boundary 参数"), code="invalid_multipart"
            )
        form, files = parser.parse(stream, boundary, content_length)
        return stream, form, files


# --- the check before every request -------------------------------------------------------------


def _body_too_large(limit: int) -> TooLarge:
    return TooLarge(
        gettext("请求体超过上限 %(mb)s MB", mb=max(1, limit // (1024 * 1024))), code="too_large"
    )


def check_request() -> None:
    """Refuse malformed or oversized input before anything reads it (a ``before_request``)."""
    header_bytes = 0
    for name, value in request.headers.items():
        size = len(name) + len(value)
        header_bytes += size
        if size > MAX_HEADER_FIELD_BYTES or header_bytes > MAX_HEADER_BYTES:
            raise HeadersTooLarge(
                gettext("请求头过大（%(name)s）：请清除本站的 Cookie 后重试", name=name)
            )
    decode_pairs(
        request.query_string,
        max_pairs=MAX_QUERY_PARAMS,
        too_many=UriTooLong(gettext("查询参数过多：最多 %(n)s 个", n=MAX_QUERY_PARAMS)),
    )
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit and request.content_length is not None and request.content_length > int(limit):
        raise _body_too_large(int(limit))
    if request.mimetype in FORM_TYPES and request.method in ("POST", "PUT", "PATCH", "DELETE"):
        try:
            request.form  # noqa: B018  (parse now, strictly, before a CSRF check or a view)
        except RequestEntityTooLarge:
            raise _body_too_large(int(limit or 0)) from None


def parse_json(raw: bytes, *, content_type: str | None) -> t.Any:
    """A JSON body: UTF-8 only (a BOM is ignored, another declared charset refused), no NUL
    and no lone surrogate in any key or string, nesting bounded by the parser."""
    charset = parse_options_header(content_type or "")[1].get("charset", "utf-8").lower()
    if charset not in JSON_CHARSETS:
        raise InvalidInput(
            gettext("JSON 请求体只接受 UTF-8 编码（收到 charset=%(charset)s）", charset=charset),
            code="invalid_encoding",
            field="request_body",
        )
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid_encoding("request_body", what="body") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise InvalidInput(gettext("JSON 嵌套层数过深"), code="invalid_json") from None
    except ValueError:
        raise InvalidInput(gettext("请求体不是合法的 JSON"), code="invalid_json") from None
    check_json_text(data)
    return data


def check_json_text(data: t.Any, path: str = "") -> None:
    """Every key and string in ``data`` must be storable text: no NUL, no lone surrogate."""
    stack: list[tuple[t.Any, str]] = [(data, path)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            _check_text(value, where or "request_body")
        elif isinstance(value, dict):
            for key, item in value.items():
                child = f"{where}.{key}" if where else str(key)
                _check_text(str(key), child)
                stack.append((item, child))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{n}]") for n, item in enumerate(value))


def _check_text(value: str, field: str) -> None:
    if "\x00" in value:
        raise _nul(_printable(field))
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _lone_surrogate(_printable(field)) from None


def _printable(field: str) -> str:
    return field.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")[:100]
