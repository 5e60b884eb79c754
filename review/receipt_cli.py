"""`kepu receipt verify`: check a publication receipt offline (no app, no database).

Exit codes: 0 the receipt is genuine (and the content, when given, is what was approved);
1 it is not (signature invalid, another key, content edited); 2 it could not be checked
(unreadable file, not a receipt, no trusted or a bad public key). The key inside the file is
never trusted: without ``--pubkey`` the instance's own key is used when run on the server.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.group("receipt")
def receipt_group() -> None:
    """Signed publication receipts."""


@receipt_group.command("verify")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--pubkey",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The platform's public key (PEM) you trust. Default on the server: the instance's own "
    "key; elsewhere it is required (the key inside FILE is never trusted).",
)
@click.option(
    "--content",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The published content: the article body as UTF-8 text, or the video file. "
    "Its hash must match the receipt.",
)
@click.option("--title", default=None, help="The article title, when it differs from FILE's.")
def receipt_verify(
    file: Path, pubkey: Path | None, content: Path | None, title: str | None
) -> None:
    """Verify FILE (a receipt downloaded from the platform): signature, key and content.

    Exit 0: genuine; 1: invalid or the content was edited; 2: could not be checked (also when
    no trusted key is given off the server: get it from GET /api/v1/audit/public-key).
    """
    from review import receipts

    try:
        document = receipts.read_document(file)
        pem = pubkey.read_text(encoding="utf-8") if pubkey else None
    except receipts.UsageError as exc:
        click.echo(f"错误：{exc}", err=True)
        raise SystemExit(receipts.EXIT_USAGE) from None
    except (OSError, UnicodeDecodeError) as exc:
        click.echo(f"错误：无法读取公钥文件：{type(exc).__name__}", err=True)
        raise SystemExit(receipts.EXIT_USAGE) from None
    if content is not None and not content.is_file():
        click.echo(f"错误：找不到内容文件 {content}", err=True)
        raise SystemExit(receipts.EXIT_USAGE)
    note = ""
    if pem is None:
        pem = receipts.instance_public_pem()
        if pem is not None:
            note = "使用本实例的签名公钥（在平台服务器上运行）"
    outcome = receipts.verify(document, public_pem=pem, content=content, title=title, key_note=note)
    for line in outcome.messages[:-1]:
        click.echo(line)
    if outcome.messages:
        click.echo(outcome.messages[-1], err=not outcome.ok)
    if outcome.ok:
        click.echo("回执有效")
    raise SystemExit(outcome.code)
