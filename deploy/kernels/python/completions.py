"""Completion of Python names: what the runner answers to `complete` from
the namespace of user code (inputs.py, where user code runs in the runner;
user_repl.py, where it runs in the image's own Python). Standard library
only, and CPython 3.6+, as user_repl.py."""
import re


def names(namespace, code):
    """The names the end of `code` may complete to in `namespace` (at most 1000, in rlcompleter's order, no `(`)."""
    m = re.search(r'[A-Za-z_][\w.]*$|$', code)
    text = m.group(0) if m else ''
    if not text:
        return []
    import rlcompleter  # here: a Python without it still runs code
    comp = rlcompleter.Completer(namespace)
    seen, out = set(), []
    for i in range(1000):
        s = comp.complete(text, i)
        if s is None:
            break
        s = s.rstrip('(')
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out
