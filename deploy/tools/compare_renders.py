#!/usr/bin/env python3
"""Compare two rendered multi-document YAML files object by object.

Usage: compare_renders.py A.yaml B.yaml   (exit 1 and print the differences)
Objects are matched by (apiVersion, kind, namespace, name); within an object
every field, list order included, must be equal.
"""

from __future__ import annotations

import sys

import yaml


def _index(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d is not None]
    out = {}
    for d in docs:
        key = (d.get("apiVersion"), d.get("kind"), d.get("metadata", {}).get("namespace", ""),
               d.get("metadata", {}).get("name"))
        out[key] = d
    return out


def _diff(a, b, path: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a:
                out.append(f"{path}.{k}: only in second: {b[k]!r}")
            elif k not in b:
                out.append(f"{path}.{k}: only in first: {a[k]!r}")
            else:
                _diff(a[k], b[k], f"{path}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, f"{path}[{i}]", out)
    elif a != b:
        out.append(f"{path}: {a!r} != {b!r}")


def compare(first: str, second: str) -> list[str]:
    a, b = _index(first), _index(second)
    out: list[str] = []
    for key in sorted(set(a) | set(b), key=str):
        name = "/".join(str(x) for x in key)
        if key not in a:
            out.append(f"{name}: only in {second}")
        elif key not in b:
            out.append(f"{name}: only in {first}")
        else:
            _diff(a[key], b[key], name, out)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    diffs = compare(argv[0], argv[1])
    for d in diffs:
        print(f"  DIFF {d}")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
