# Sourced by scripts/run.sh, migrate.sh and manage.sh: export .env's settings (.env wins over the
# shell), so that every step sees the database, port and queue that web, worker and beat see:
# `make run` hands its processes these exported values, and honcho reads no .env of its own.
# No .env: nothing. The syntax (.env.example's header says it for users):
#   NAME=value     the value is the rest of the line as written, `#` and `$` included, up to a
#                  comment (a `#` after a space) and without the spaces at its ends (and any
#                  around the `=`); `export NAME=value` is the same
#   NAME='value'   what is between the quotes, as written; NAME="value" the same but for the
#                  escapes \" \\ \n \r \t; either followed by nothing but a comment
#   NAME=""        empty: set to nothing, over the shell's value
#   NAME=          (nothing, or only a comment): not set here, the shell's value or the default
#   # ...          a comment line; blank lines are skipped; a byte order mark is ignored
# As python-dotenv and Docker Compose read them, except that `$` is not expanded. Any other
# line stops here, naming its line number. honcho's own parser, used before, cut a value at
# any `#` (a SECRET_KEY), dropped `export` lines and removed spaces.

# dotenv_export FILE: export FILE's settings, or stop (return 1) at its first line that is none.
dotenv_export() {
  local exports
  exports="$(.venv/bin/python - "$1" <<'PY'
import re
import shlex
import sys

# Inside double quotes, as python-dotenv and Compose read them (honcho did too).
ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "r": "\r", "t": "\t"}
path = sys.argv[1]
# utf-8-sig: a byte order mark (Notepad writes one) is not part of the first line.
with open(path, encoding="utf-8-sig") as env:
    lines = env.read().splitlines()
for number, line in enumerate(lines, 1):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    setting = re.fullmatch(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)", line)
    if setting is None:
        sys.exit(f"{path}, line {number}: not NAME=value (the syntax is in .env.example)")
    name, value = setting[1], setting[2]
    quoted = re.fullmatch(r"""\s*(?:'([^']*)'|"((?:[^"\\]|\\.)*)")\s*(?:#.*)?""", value)
    if quoted is not None:
        if quoted[1] is not None:
            value = quoted[1]
        else:
            value = re.sub(r"\\(.)", lambda m: ESCAPES.get(m[1], m[0]), quoted[2])
    elif value.lstrip()[:1] in {"'", '"'}:
        sys.exit(
            f"{path}, line {number}: {name}'s value starts with a quote that does not end "
            "it, or is followed by more than a comment"
        )
    else:
        value = re.split(r"(?:^|\s)#", value, maxsplit=1)[0].strip()
        if not value:
            continue  # `NAME=`: the shell's value, or the default (`NAME=""` sets it empty)
    print(f"export {name}={shlex.quote(value)} || return 1")
PY
)" || return 1
  eval "$exports"
}

if [[ -f .env ]]; then
  dotenv_export .env || return 1
fi
