#!/usr/bin/env python3
"""Fails when a crate's top-level modules depend on each other in a cycle.

A module depends on another when its non-test code names `crate::other` (in a path
or a `use crate::{..}` list). Comments do not count (doc links are not dependencies),
nor do `tests.rs` files and `#[cfg(test)] mod tests` blocks. Usage:

    scripts/module-cycles.py core/src [more/src ...]

Prints each strongly connected component with the files behind every edge, and exits 1
if there is one: a cycle means two modules can only be understood (and changed) together.
"""
import collections
import os
import re
import sys


def top_modules(root):
    names = set()
    for entry in os.listdir(root):
        name = entry[:-3] if entry.endswith(".rs") else entry
        if name not in ("lib", "main") and (entry.endswith(".rs") or os.path.isdir(os.path.join(root, entry))):
            names.add(name)
    return names


def code_of(src):
    cut = src.find("#[cfg(test)]\nmod tests")
    if cut >= 0:
        src = src[:cut]
    return re.sub(r"//[^\n]*", "", src)


def edges_of(root):
    modules = top_modules(root)
    edges = collections.defaultdict(set)
    why = collections.defaultdict(set)
    for dirpath, _, files in os.walk(root):
        for file in files:
            path = os.path.join(dirpath, file)
            rel = os.path.relpath(path, root)
            if not file.endswith(".rs") or file == "tests.rs" or "tests" in rel.split(os.sep)[:-1]:
                continue
            top = rel.split(os.sep)[0]
            top = top[:-3] if top.endswith(".rs") else top
            if top in ("lib", "main"):
                continue
            src = code_of(open(path, encoding="utf-8").read())
            named = set(re.findall(r"crate::(\w+)", src))
            for group in re.findall(r"crate::\{([^;]*?)\}\s*;", src, re.S):
                named.update(re.findall(r"(?:^|[,{\s])(\w+)(?=\s*(?:::|,|\}|$))", group))
            for other in named & modules - {top}:
                edges[top].add(other)
                why[(top, other)].add(rel)
    return modules, edges, why


def components(nodes, edges):
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            out.append(sorted(group))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return [c for c in out if len(c) > 1]


def main(roots):
    failed = False
    for root in roots:
        modules, edges, why = edges_of(root)
        for cycle in components(modules, edges):
            failed = True
            print(f"{root}: modules in a cycle: {', '.join(cycle)}")
            for a in cycle:
                for b in sorted(edges[a] & set(cycle)):
                    print(f"  {a} -> {b}  ({', '.join(sorted(why[(a, b)]))})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["core/src"]))
