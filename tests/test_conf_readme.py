"""conf/README.md lists every option of every config group."""

from __future__ import annotations

import re

from tests.conftest import CONF


def test_every_config_option_is_listed() -> None:
    text = (CONF / "README.md").read_text()
    cells = [re.split(r"(?<!\\)\|", line) for line in text.splitlines() if line.startswith("| `")]
    rows = {c[1].strip(" `"): c[3] for c in cells if len(c) >= 4}
    missing = []
    for path in sorted(CONF.rglob("*.yaml")):
        group = str(path.parent.relative_to(CONF)) + "/"
        if path.parent == CONF:
            continue
        options = {o.strip().split(" ")[0] for o in rows.get(group, "").split(",")}
        if path.stem not in options:
            missing.append(f"{group}{path.stem}")
    assert not missing, f"conf/README.md does not list {missing}"
