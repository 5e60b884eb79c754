"""Rules for new passwords (ASVS V2.1): long enough, not a common password, not one's own name.

The list of common passwords ships with the package (``data/common_passwords.txt``) and is
read once; nothing is fetched at run time.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

#: Fewer characters than this are refused (ASVS V2.1.1 asks for at least 12 with no other
#: rules; 10 plus the list and name checks below).
MIN_PASSWORD_CHARS = 10
#: Names shorter than this are not looked for inside a password ("li" is in many words).
MIN_NAME_CHARS = 3

_COMMON_FILE = Path(__file__).resolve().parent / "data" / "common_passwords.txt"
#: What people append to a weak word to pass a rule: digits, symbols, spaces.
_TRAILING = re.compile(r"[\d\W_]+$")
_LEADING = re.compile(r"^[\d\W_]+")


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords, lower case."""
    lines = _COMMON_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(ln.strip().lower() for ln in lines if ln.strip() and not ln.startswith("#"))


def _is_common(password: str) -> bool:
    folded = password.lower()
    common = common_passwords()
    if folded in common or folded.strip() in common:
        return True
    # "password2024!" and "!!qwerty123" are the listed word with decoration around it.
    core = _LEADING.sub("", _TRAILING.sub("", folded))
    return len(core) >= 4 and core in common


def _own_names(names: Iterable[str | None]) -> list[str]:
    found = []
    for name in names:
        if not name:
            continue
        name = name.strip().lower()
        if "@" in name:
            name = name.split("@", 1)[0]
        if len(name) >= MIN_NAME_CHARS:
            found.append(name)
    return found


def random_password(*, names: Iterable[str | None] = ()) -> str:
    """A random password meeting the rules (16 URL-safe characters; drawn again in the rare
    case it happens to contain one of ``names``)."""
    names = list(names)
    while True:
        password = secrets.token_urlsafe(12)
        if password_problem(password, names=names) is None:
            return password


def password_problem(password: object, *, names: Iterable[str | None] = ()) -> str | None:
    """Why ``password`` may not be used (a Chinese sentence naming the rule), or None.

    ``names`` are the account's own names — user name, display name, e-mail address — none of
    which may appear in the password.
    """
    if not isinstance(password, str):
        return "密码必须是文本"
    if len(password) < MIN_PASSWORD_CHARS:
        return f"密码太短：至少 {MIN_PASSWORD_CHARS} 个字符"
    if not password.strip():
        return "密码不能全是空格"
    if len(set(password)) < 3:
        return "密码不能由一两个字符重复组成"
    if _is_common(password):
        return "密码太常见（在常用密码列表中），请换一个不易被猜到的密码"
    folded = password.lower()
    if any(name in folded for name in _own_names(names)):
        return "密码不能包含您的用户名、姓名或邮箱名"
    return None
