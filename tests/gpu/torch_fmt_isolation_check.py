#!/usr/bin/env python3
"""No translation unit that has LibTorch on its include path includes fmt or spdlog.

Why: LibTorch 2.x (a pip-installed torch, what GPU machines build against) ships its own fmt
headers inside its include folder. A unit compiled with that folder on its path and including
<fmt/...> -- directly or through spdlog -- gets LibTorch's fmt instead of the system fmt the
system spdlog was built against, and fails (seen with torch 2.11: `spdlog/common.h:
'basic_format_string' is not a member of 'fmt'`). segrun therefore includes spdlog (and with it
fmt) only in core/log.cpp, which is compiled without LibTorch (docs/gpu.md, "fmt").
Debian's LibTorch 1.13 ships no fmt, so CI's build cannot show the failure; this check finds the
units that would fail, from what the build itself recorded:
  - compile_commands.json: the units compiled with LibTorch's include folder
    (.../torch/csrc/api/include) on their path;
  - `ninja -t deps`: every header each unit (and the precompiled header it uses) really read.

Units the build has not compiled (yet, or outside the targets it built) are counted, not checked.
Usage: torch_fmt_isolation_check.py BUILD_DIR. Exit 0 and one line when no unit mixes them,
exit 1 listing each unit and the fmt/spdlog header it reads, exit 2 when BUILD_DIR is not a
Ninja build or has compiled none of those units.
"""
import json
import os
import re
import subprocess
import sys

TORCH_INCLUDE = "/torch/csrc/api/include"
FMT_HEADER = re.compile(r"(^|/)(fmt|spdlog)/[^/]+")


def object_deps(build):
    """object path (relative to build) -> the headers `ninja -t deps` recorded for it."""
    text = subprocess.run(["ninja", "-C", build, "-t", "deps"], check=True, capture_output=True,
                          text=True).stdout
    deps, current = {}, None
    for line in text.splitlines():
        if not line.strip():
            current = None
        elif not line.startswith(" "):
            current = line.split(":", 1)[0]
            deps[current] = []
        elif current is not None:
            deps[current].append(line.strip())
    return deps


def main():
    if len(sys.argv) != 2:
        print("usage: torch_fmt_isolation_check.py BUILD_DIR", file=sys.stderr)
        return 2
    build = os.path.realpath(sys.argv[1])
    commands_file = os.path.join(build, "compile_commands.json")
    if not os.path.exists(os.path.join(build, "build.ninja")) or not os.path.exists(commands_file):
        print(f"{build}: not a Ninja build with compile_commands.json", file=sys.stderr)
        return 2
    deps = object_deps(build)
    torch_units, unbuilt, offenders = 0, 0, []
    for entry in json.load(open(commands_file)):
        command = entry.get("command") or " ".join(entry.get("arguments", []))
        if TORCH_INCLUDE not in command:
            continue
        torch_units += 1
        obj = re.search(r"\s-o\s+(\S+)", command)
        if not obj:
            print(f"{entry['file']}: no -o in its compile command", file=sys.stderr)
            return 2
        obj_path = obj.group(1)
        if obj_path not in deps:  # not built (yet)
            unbuilt += 1
            continue
        # A precompiled header (`-include .../cmake_pch.hxx`) is read through its own record,
        # that of the .gch it was compiled to.
        headers = list(deps[obj_path])
        for forced in re.findall(r"\s-include\s+(\S+)", command):
            headers.append(forced)
            headers += deps.get(os.path.relpath(forced + ".gch", build), [])
        bad = [h for h in headers if FMT_HEADER.search(h)]
        if bad:
            offenders.append((entry["file"], bad[0]))
    if torch_units == unbuilt:
        print(f"{build}: no built unit is compiled with LibTorch's include folder (build first)", file=sys.stderr)
        return 2
    if offenders:
        for unit, header in offenders:
            print(f"FAIL: {unit} has LibTorch on its include path and reads {header}: with LibTorch 2.x, "
                  "whose include folder ships its own fmt, it would not compile (keep spdlog/fmt in core/log.cpp)")
        return 1
    print(f"ok: none of the {torch_units - unbuilt} built units compiled with LibTorch's include folder reads a "
          f"fmt or spdlog header ({unbuilt} not built, not checked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
