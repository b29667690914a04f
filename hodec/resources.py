"""Locates the grammar and template folders: beside the package in a checkout, inside it when installed."""
from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def folder(name: str) -> Path:
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"hodec installation is incomplete: folder {name!r} not found")


def read_text(folder_name: str, file_name: str) -> str:
    return (folder(folder_name) / file_name).read_text(encoding="utf-8")
