#!/usr/bin/env python3
"""Import cycles among the sibling modules of src/plan and src/controller (test modules and
comments excluded). Usage: python3 hack/import-cycles.py [REPO]; exit status 1 when there is one."""
import os, re, sys
root = sys.argv[1] if len(sys.argv) > 1 else '.'
def strip_tests(text):
    m = re.search(r'#\[cfg\(test\)\]\s*mod \w+\s*\{', text)
    text = text[:m.start()] if m else text
    # comments (doc links are no imports)
    lines = [l for l in text.split('\n') if not l.lstrip().startswith('//')]
    return '\n'.join(re.sub(r'\s//[ /!].*$', '', l) for l in lines)
def brace_idents(s):
    # top-level identifiers inside a use-brace group
    out, depth, tok = [], 0, ''
    for ch in s:
        if ch == '{': depth += 1
        elif ch == '}': depth -= 1
        if depth == 0 and re.match(r'\w', ch): tok += ch
        else:
            if tok: out.append(tok)
            tok = ''
    if tok: out.append(tok)
    return out
bad = False
for pkg in ['plan', 'controller']:
    d = os.path.join(root, 'src', pkg)
    mods = {f[:-3] for f in os.listdir(d) if f.endswith('.rs') and f != 'mod.rs'}
    mods |= {f for f in os.listdir(d) if os.path.isdir(os.path.join(d, f)) and os.path.exists(os.path.join(d, f, 'mod.rs'))}
    edges = {m: set() for m in mods}
    for m in mods:
        p = os.path.join(d, m + '.rs')
        if not os.path.exists(p): p = os.path.join(d, m, 'mod.rs')
        text = strip_tests(open(p).read())
        for pre in [r'super::', r'crate::%s::' % pkg]:
            for mt in re.finditer(pre + r'(\w+)', text):
                if mt.group(1) in mods and mt.group(1) != m: edges[m].add(mt.group(1))
            for mt in re.finditer(pre + r'\{', text):
                i, depth = mt.end(), 1
                j = i
                while depth:
                    depth += {'{': 1, '}': -1}.get(text[j], 0); j += 1
                for ident in brace_idents(text[i:j-1]):
                    if ident in mods and ident != m: edges[m].add(ident)
    # cycles via DFS (strongly connected components)
    index, low, stack, on, sccs, n = {}, {}, [], set(), [], [0]
    def sc(v):
        index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
        for w in edges[v]:
            if w not in index: sc(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: sccs.append(comp)
    for v in sorted(mods):
        if v not in index: sc(v)
    for comp in sccs:
        bad = True
        print(f'src/{pkg}: cycle among {sorted(comp)}:')
        for a in sorted(comp):
            print(f'   {a} -> {sorted(edges[a] & set(comp))}')
if not bad: print('no import cycles among sibling modules of src/plan and src/controller')
sys.exit(1 if bad else 0)
