"""Several processes' Prometheus text expositions served as one (`tickpipe process --workers`)."""

from __future__ import annotations

from collections.abc import Mapping


def merge_expositions(texts: Mapping[str, str], label: str) -> str:
    """One exposition of many: every sample gets `label="<key>"` (its process), and each metric
    family keeps its HELP/TYPE lines once, with the samples of every process after them (the
    format wants a family's lines together). Keys must need no escaping (worker numbers)."""
    families: dict[str, tuple[list[str], list[str]]] = {}
    for key, text in texts.items():
        family: str | None = None
        for line in text.splitlines():
            if not line:
                continue
            if line.startswith("#"):
                words = line.split(" ", 3)
                if len(words) >= 3 and words[1] in ("HELP", "TYPE"):
                    family = words[2]
                    headers = families.setdefault(family, ([], []))[0]
                    if line not in headers:
                        headers.append(line)
                continue
            name_end = min(i for i in (line.find("{"), line.find(" "), len(line)) if i >= 0)
            name = line[:name_end]
            if line.startswith("{", name_end):
                rest = line[name_end + 1 :]
                labelled = f'{name}{{{label}="{key}"{"" if rest.startswith("}") else ","}{rest}'
            else:
                labelled = f'{name}{{{label}="{key}"}}{line[name_end:]}'
            families.setdefault(family or name, ([], []))[1].append(labelled)
    lines = [line for headers, samples in families.values() for line in (*headers, *samples)]
    return "\n".join(lines) + "\n" if lines else ""
