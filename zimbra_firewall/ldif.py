"""LDIF as `ldapsearch -LLL -o ldif-wrap=no` prints it → [(dn, {attribute: [values]})]. Pure, standard
library only: the deploy's LDAP read uses it, and so does the lab's Zimbra stand-in, inside lab hosts
(python -m lab copies this file next to it)."""

import base64


def parse_ldif(text: str, names: dict[str, str] | None = None) -> list[tuple[str, dict[str, list[str]]]]:
    """names: lower-case attribute name → the spelling to use (LDAP attribute names are case-insensitive);
    other names are kept as printed. Comment lines and blocks without a dn are skipped."""
    names = names or {}
    entries = []
    for block in text.strip().split("\n\n"):
        dn, attrs = None, {}
        for line in block.splitlines():
            name, sep, value = line.partition(":")
            if not sep or line.startswith("#"):
                continue
            if value.startswith(":"):
                value = base64.b64decode(value[1:].strip()).decode()
            elif value.startswith(" "):
                value = value[1:]
            if name.lower() == "dn":
                dn = value
            else:
                attrs.setdefault(names.get(name.lower(), name), []).append(value)
        if dn:
            entries.append((dn, attrs))
    return entries
