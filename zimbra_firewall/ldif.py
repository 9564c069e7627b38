"""LDIF as `ldapsearch -LLL -o ldif-wrap=no` prints it → [(dn, {attribute: [values]})]. Pure, standard
library only: the deploy's LDAP read uses it, and so does the lab's Zimbra stand-in, inside lab hosts
(python -m lab copies this file next to it)."""

import base64
import binascii


def parse_ldif(text: str, names: dict[str, str] | None = None) -> list[tuple[str, dict[str, list[str]]]]:
    """names: lower-case attribute name → the spelling to use (LDAP attribute names are case-insensitive);
    other names are kept as printed. Comment lines and blocks without a dn are skipped."""
    names = names or {}
    entries = []
    for block in text.strip().split("\n\n"):
        dn, attrs = None, {}  # type: tuple[str | None, dict[str, list[str]]]
        for line in block.splitlines():
            name, sep, value = line.partition(":")
            if not sep or line.startswith("#"):
                continue
            if value.startswith(":"):
                value = _decoded(value[1:].strip())
            elif value.startswith(" "):
                value = value[1:]
            if name.lower() == "dn":
                dn = value
            else:
                attrs.setdefault(names.get(name.lower(), name), []).append(value)
        if dn:
            entries.append((dn, attrs))
    return entries


def _decoded(text: str) -> str:
    """A base64 value (LDIF's `attr:: …`, for values that are not plain text): what is not UTF-8, or not
    base64, reads as U+FFFD, which no check downstream accepts."""
    try:
        return base64.b64decode(text, validate=True).decode("utf-8", "replace")
    except binascii.Error:
        return "\ufffd"
