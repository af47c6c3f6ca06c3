#!/bin/sh
# Print a Python 3.10 interpreter for the TFX environment, or nothing (exit 1).
# pyenv's shims answer `python3.10` only when 3.10 is an active version, so look in its
# versions folder too, with or without pyenv on PATH.
root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
for candidate in "${TFX_PYTHON:-}" python3.10 "$root"/versions/3.10*/bin/python3.10; do
    [ -n "$candidate" ] || continue
    if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
        "$candidate" -c 'import sys; print(sys.executable)'
        exit 0
    fi
done
exit 1
