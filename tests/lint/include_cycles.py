#!/usr/bin/env python3
"""No two modules of agent/ include each other, directly or round a
longer loop. A module is x.c with x.h, so "x.c includes y.h and y.c
includes x.h" is a loop even though no header includes itself: such
a pair can no longer be understood, tested or replaced one at a time.

Usage: include_cycles.py DIR...  (exit 0 when there is no loop, else 1
with each loop printed); include_cycles.py --self-test checks that a
loop through a .c file and a longer one are both caught."""

import os
import re
import sys
import tempfile

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def module_graph(directory):
    names = sorted(os.listdir(directory))
    modules = {os.path.splitext(n)[0] for n in names if n.endswith((".c", ".h"))}
    graph = {m: set() for m in modules}
    for name in names:
        if not name.endswith((".c", ".h")):
            continue
        here = os.path.splitext(name)[0]
        with open(os.path.join(directory, name), encoding="utf-8") as f:
            for target in INCLUDE.findall(f.read()):
                there = os.path.splitext(os.path.basename(target))[0]
                if there in modules and there != here:
                    graph[here].add(there)
    return graph


def cycles(graph):
    """Every strongly connected component of more than one module."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def self_test():
    files = {
        "a.c": '#include "b.h"\n', "a.h": "", "b.h": "",
        "b.c": '#include "a.h"\n',                    # a <-> b through the .c files
        "c.h": '#include "d.h"\n', "d.h": '#include "e.h"\n',
        "e.c": '#include "c.h"\n',                    # c -> d -> e -> c
        "f.c": '#include "f.h"\n#include "a.h"\n', "f.h": "",  # no loop
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in files.items():
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                f.write(text)
        found = cycles(module_graph(tmp))
    assert found == [["a", "b"], ["c", "d", "e"]], found
    print("self-test: both loops found, no false one")
    return 0


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    status = 0
    for directory in sys.argv[1:] or ["agent"]:
        loops = cycles(module_graph(directory))
        for loop in loops:
            print(f"include loop in {directory} among: " + ", ".join(loop))
        if not loops:
            print(f"no include loops among the modules of {directory}")
        status |= 1 if loops else 0
    return status


if __name__ == "__main__":
    sys.exit(main())
