#!/usr/bin/env python3
"""Lists import circles between the modules (files) of a Rust crate's `src/`.

Every `use` path and inline path that starts with `crate::`, `super::` or `self::` is an edge
from the file it is written in to the deepest module (file) of `src/` it names. Comments and
doc comments are ignored. Prints each strongly connected component of more than one module, and
exits 1 if there is any: "no module imports one that imports it back".

Usage: python3 scripts/module-cycles.py [src]
"""
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "src"


def module_of(path):
    rel = os.path.relpath(path, root)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)


modules = {}
for d, _, files in os.walk(root):
    for f in files:
        if f.endswith(".rs"):
            p = os.path.join(d, f)
            modules[module_of(p)] = p


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return text


def expand(tree):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e]."""
    tree = tree.strip()
    i = tree.find("{")
    if i < 0:
        return [tree]
    prefix, inner = tree[:i], tree[i + 1 : tree.rfind("}")]
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    parts.append(cur)
    return [p for part in parts if part.strip() for p in expand(prefix + part.strip())]


def resolve(here, path):
    segs = [s.strip() for s in path.split("::") if s.strip()]
    segs = [re.sub(r"\s+as\s+\w+$", "", s) for s in segs]
    if not segs:
        return None
    if segs[0] == "crate":
        base, segs = (), segs[1:]
    elif segs[0] in ("super", "self"):
        is_dir = os.path.basename(modules[here]) in ("mod.rs", "lib.rs")
        base = here if is_dir else here
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
        if not is_dir and path.strip().startswith("self"):
            base = here
    elif os.path.basename(modules[here]) in ("mod.rs", "lib.rs") and here + (segs[0],) in modules:
        base = here  # `use child::Item` in a folder's mod.rs
    else:
        return None
    best = base
    for k in range(1, len(segs) + 1):
        cand = base + tuple(segs[:k])
        if cand in modules:
            best = cand
        else:
            break
    return best


def inline_modules(text):
    """Inside an inline `mod name { ... }`, `super::` names the file's own module."""
    out, i = [], 0
    for m in re.finditer(r"\bmod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        out.append(text[i : m.end()])
        out.append(re.sub(r"\bsuper::", "self::", text[m.end() : j]))
        i = j
    out.append(text[i:])
    return "".join(out)


edges = {m: set() for m in modules}
for m, p in modules.items():
    text = inline_modules(strip_comments(open(p, encoding="utf-8").read()))
    paths = []
    for u in re.finditer(r"\buse\s+([^;]+);", text):
        paths += expand(u.group(1))
    paths += re.findall(r"\b(?:crate|super|self)(?:::\w+)+", text)
    for path in paths:
        t = resolve(m, path)
        if t is not None and t != m and t in modules:
            # a module naming its own ancestor's re-exports only counts if it is not the root
            edges[m].add(t)

# Tarjan's strongly connected components.
index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)


def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in edges[v]:
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        sccs.append(comp)


for v in modules:
    if v not in index:
        visit(v)

name = lambda m: "::".join(("crate",) + m)
circles = [sorted(c) for c in sccs if len(c) > 1]
for c in circles:
    print("circle:", ", ".join(name(m) for m in c))
    for m in c:
        inside = sorted(name(t) for t in edges[m] if t in c)
        print(f"  {name(m)} -> {', '.join(inside)}")
print(f"{len(modules)} modules, {sum(map(len, edges.values()))} edges, {len(circles)} circles")
sys.exit(1 if circles else 0)
