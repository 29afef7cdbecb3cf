"""Rewrite CUDA sources for the CPU simulator (ekdaa_cuda._sim), line for line.

    python tools/cu2sim.py --out-dir DIR FILE...

Each FILE (a .cu, .cuh or .h of csrc/) is written to DIR under the same name (a .cu as NAME.cu.cpp), starting with a
``#line 1 "FILE"`` directive and keeping every line where it was, so compiler diagnostics,
``__FILE__``/``__LINE__`` and the simulator's error messages point at the original source.
Two constructs g++ cannot take are rewritten:

- a launch ``kernel<<<grid, block[, smem[, stream]]>>>(args)`` becomes
  ``::ekdaa_sim::configure(kernel, "kernel", __FILE__, __LINE__, grid, block, ...)(args)``;
- a function-scope ``__shared__ T name[dims];`` becomes a reference to a per-block buffer,
  and ``extern __shared__ T name[];`` a pointer to the block's dynamic shared memory.

The build fails (exit status 1, one line per problem, ``file:line: message``) on constructs the
simulator cannot run: inline assembly (PTX), ``__shared__`` at namespace or class scope, a
``__shared__`` declaration that does not start its line or declares more than one name, and a
launch whose ``>>>`` cannot be found.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

IDENT = re.compile(r"[A-Za-z_]\w*")


class RewriteError(Exception):
    pass


def code_mask(text: str) -> str:
    """`text` with comments, string and character literals blanked (same length, newlines kept)."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            for k in range(i, j):
                out[k] = " "
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            for k in range(i, j):
                if out[k] != "\n":
                    out[k] = " "
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            for k in range(i, min(j + 1, n)):
                out[k] = " "
            i = j + 1
        else:
            i += 1
    return "".join(out)


def line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def callee_start(masked: str, end: int) -> int:
    """Start of the kernel expression that ends at `end` (just before '<<<'): names, '::', template args."""
    i = end
    while i > 0 and masked[i - 1].isspace():
        i -= 1
    while i > 0:
        c = masked[i - 1]
        if c == ">":  # template arguments: skip to the matching '<'
            depth, j = 0, i - 1
            while j >= 0:
                if masked[j] == ">":
                    depth += 1
                elif masked[j] == "<":
                    depth -= 1
                    if depth == 0:
                        break
                j -= 1
            if j < 0:
                break
            i = j
        elif c.isalnum() or c in "_:":
            i -= 1
        else:
            break
    return i


def scope_kinds(masked: str) -> list[tuple[int, bool]]:
    """(position, inside a function body) at every '{' and '}' ... returned as a per-position lookup helper."""
    events = []
    stack: list[bool] = []  # True: a brace that may hold __shared__ (function body or a block inside one)
    last = 0
    for m in re.finditer(r"[{};]", masked):
        ch = m.group()
        if ch == "{":
            head = masked[last : m.start()]
            in_function = any(stack)
            if re.search(r"\bnamespace\b[\w\s:]*$", head) or re.search(r"\bextern\s*$", head):
                kind = False
            elif re.search(r"\b(struct|class|union|enum)\b[^()]*$", head):
                kind = False if not in_function else True
            else:
                kind = True  # a function body, or a block/initializer
            stack.append(kind)
        elif ch == "}":
            if stack:
                stack.pop()
        last = m.end()
        events.append((m.end(), any(stack)))
    return events


def in_function_at(events: list[tuple[int, bool]], pos: int) -> bool:
    state = False
    for p, inside in events:
        if p > pos:
            break
        state = inside
    return state


SHARED_DECL = re.compile(
    r"^(?P<indent>[ \t]*)(?P<extern>extern\s+)?__shared__\s+(?P<body>[^;]*);", re.MULTILINE
)


def split_declaration(body: str):
    """'float as[16][17]' -> (alignment or None, type, name, dims)."""
    align = None
    m = re.search(r"(?:__align__|alignas)\s*\(\s*([^)]*)\)", body)
    if m:
        align = m.group(1).strip()
        body = body[: m.start()] + body[m.end() :]
    body = body.strip()
    m = re.match(r"^(?P<type>.*?)\s*\b(?P<name>[A-Za-z_]\w*)\s*(?P<dims>(?:\[[^\]]*\]\s*)*)$", body, re.DOTALL)
    if not m or not m.group("type").strip():
        raise RewriteError(f"cannot parse the __shared__ declaration '{body}'")
    return align, m.group("type").strip(), m.group("name"), m.group("dims").strip()


def rewrite(text: str, path: str) -> str:
    masked = code_mask(text)
    errors = []
    for m in re.finditer(r"\b(asm|__asm__|__asm)\b", masked):
        errors.append(f"{path}:{line_of(text, m.start())}: inline assembly (PTX) cannot run on the simulator")
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement) on the original text

    events = scope_kinds(masked)
    declarations = []  # (start, end) of every line-leading __shared__ declaration
    for m in SHARED_DECL.finditer(masked):
        declarations.append((m.start(), m.end()))
        line = line_of(text, m.start())
        body = text[m.start("body") : m.end("body")]
        if "\n" in body:
            errors.append(f"{path}:{line}: a __shared__ declaration must fit on one line")
            continue
        depth = 0
        top_comma = False
        for ch in masked[m.start("body") : m.end("body")]:
            depth += ch in "([<"
            depth -= ch in ")]>"
            top_comma |= ch == "," and depth == 0
        if top_comma:
            errors.append(f"{path}:{line}: declare one __shared__ variable per line (the simulator's rewrite)")
            continue
        if not in_function_at(events, m.start()):
            errors.append(f"{path}:{line}: __shared__ outside a function body is not supported by the simulator")
            continue
        try:
            align, typ, name, dims = split_declaration(masked[m.start("body") : m.end("body")])
        except RewriteError as exc:
            errors.append(f"{path}:{line}: {exc}")
            continue
        start = m.start() + len(m.group("indent"))
        if m.group("extern"):
            if dims != "[]":
                errors.append(f"{path}:{line}: extern __shared__ must be an unsized array 'T name[]'")
                continue
            repl = f"{typ}* const {name} = ::ekdaa_sim::dynamic_shared<{typ}>();"
        else:
            # The tag's address names the declaration (one buffer per block and declaration).
            tag = f"ekdaa_sim_shared_tag_{name}_{line}"
            alias = f"ekdaa_sim_shared_t_{name}_{line}"
            if align:  # __align__(n): the buffer is a struct with that alignment
                repl = (
                    f"struct alignas({align}) {alias} {{ {typ} v{dims}; }}; static char {tag}; "
                    f"auto& {name} = ::ekdaa_sim::shared_var<{alias}>(&{tag}).v;"
                )
            else:
                repl = (
                    f"using {alias} = {typ}{dims}; static char {tag}; "
                    f"{alias}& {name} = ::ekdaa_sim::shared_var<{alias}>(&{tag});"
                )
        edits.append((start, m.end(), repl))
    for m in re.finditer(r"\b__shared__\b", masked):
        if not any(s <= m.start() < e for s, e in declarations):
            errors.append(
                f"{path}:{line_of(text, m.start())}: a __shared__ declaration must start its line "
                "(optionally after 'extern')"
            )

    for m in re.finditer(r"<<<", masked):
        close = masked.find(">>>", m.end())
        if close < 0:
            errors.append(f"{path}:{line_of(text, m.start())}: kernel launch without a closing '>>>'")
            continue
        start = callee_start(masked, m.start())
        callee = text[start : m.start()].strip()
        if not callee:
            errors.append(f"{path}:{line_of(text, m.start())}: cannot find the kernel launched by '<<<'")
            continue
        name = re.sub(r"\s+", " ", callee).replace("\\", "\\\\").replace('"', '\\"')
        edits.append((start, m.end(), f'::ekdaa_sim::configure({callee}, "{name}", __FILE__, __LINE__, '))
        edits.append((close, close + 3, ")"))

    if errors:
        raise RewriteError("\n".join(errors))
    out = text
    for start, end, repl in sorted(edits, reverse=True):
        newlines = text.count("\n", start, end)
        out = out[:start] + repl + "\n" * newlines + out[end:]
    assert out.count("\n") == text.count("\n"), "the rewrite must keep every line in place"
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", required=True, type=Path)
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    failed = []
    for f in args.files:
        src = f.resolve()
        try:
            body = rewrite(src.read_text(encoding="utf-8"), str(src))
        except RewriteError as exc:
            failed.append(str(exc))
            continue
        target = args.out_dir / (f.name + ".cpp" if f.suffix == ".cu" else f.name)  # g++ takes .cpp as C++
        text = f'#line 1 "{src}"\n' + body
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
    if failed:
        print("cu2sim: the CPU simulator cannot run these constructs:", file=sys.stderr)
        print("\n".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
