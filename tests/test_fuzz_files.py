"""Fuzzing files and paths: whatever a command is pointed at (missing, a folder, a device, empty, binary, huge
lines, odd names, an output that is an input or a folder), it answers with exit code 0 or a located error and
exit code 1, never an internal error, and never changes an input."""
from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hodec.cli import main

SPEC = "model M\nparam k = 0.5 positive\nstate x = 1\nder x = -k * x\nobserve y = x\n"

CONTENTS = st.one_of(
    st.just(SPEC), st.just(""), st.just("\ufeff" + SPEC), st.binary(max_size=200).map(bytes),
    st.text(max_size=200), st.just("model M\n" + "state x = 1\n" * 3), st.just("x" * 100_000),
    st.just(SPEC.replace("\n", "\r\n")), st.just(SPEC + "\x00"),
)
NAMES = st.sampled_from(["m.hode", "m", "ü n i.hode", "-x.hode", ".hode", "a b", "m.py", "m.hode.hode"])
TARGETS = st.sampled_from(["spec", "missing", "folder", "/dev/null", "/dev/zero", "dangling"])
OUTPUTS = st.sampled_from([None, "same", "folder", "new.py", "missing/out.py"])
COMMANDS = st.sampled_from(["check", "compile", "graph", "simulate", "transform"])


def _layout(tmp: Path, name: str, content, target: str) -> str:
    spec = tmp / name
    if isinstance(content, bytes):
        spec.write_bytes(content)
    else:
        spec.write_text(content, encoding="utf-8")
    (tmp / "folder").mkdir(exist_ok=True)
    if target == "spec":
        return str(spec)
    if target == "dangling":
        link = tmp / "dangling.hode"
        if not link.is_symlink():
            link.symlink_to(tmp / "nowhere")
        return str(link)
    return {"missing": str(tmp / "missing.hode"), "folder": str(tmp / "folder")}.get(target, target)


def _argv(command: str, path: str, output, tmp: Path) -> list:
    argv = [command, path]
    if command == "simulate":
        argv += ["--t-end", "1", "--points", "3"]
    if command == "transform":
        argv += ["--mnode"]
    if output is not None and command != "check":  # check writes nothing
        out = {"same": path, "folder": str(tmp / "folder"), "new.py": str(tmp / "new.py"),
               "missing/out.py": str(tmp / "missing" / "out.py")}[output]
        argv += ["-o", out]
    return argv


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(command=COMMANDS, name=NAMES, content=CONTENTS, target=TARGETS, output=OUTPUTS)
def test_any_file_any_path(tmp_path_factory, capsys, command, name, content, target, output):
    tmp = tmp_path_factory.mktemp("fuzz")
    path = _layout(tmp, name, content, target)
    before = {p: p.read_bytes() for p in tmp.rglob("*") if p.is_file() and not p.is_symlink()}
    code = main(_argv(command, path, output, tmp))
    err = capsys.readouterr().err
    assert code in (0, 1), err
    assert "internal error" not in err and "Traceback" not in err
    if code == 1:
        assert err.strip(), "an error exit says why"
    for p, data in before.items():  # no input changed (outputs are new files)
        assert p.read_bytes() == data, p
    assert not [p for p in tmp.rglob("*.tmp")], "no temporary file left behind"
