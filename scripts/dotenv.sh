# Sourced by scripts/run.sh, migrate.sh and manage.sh: export .env's settings (.env wins over the
# shell), so that every step sees the database, port and queue that web, worker and beat see:
# `make run` hands its processes these exported values, and honcho reads no .env of its own.
# No .env: nothing. The syntax (.env.example's header says it for users):
#   NAME=value     the value is the rest of the line as written, `#` and `$` included, up to a
#                  comment (a `#` after a space) and without the spaces at its ends (and any
#                  around the `=`); `export NAME=value` is the same
#   NAME='value'   or "value": what is between the quotes, as written (no escapes, no `$`),
#                  then only a comment if anything
#   NAME=          empty: set, to nothing, over the shell's value
#   # ...          a comment line; blank lines are skipped
# As python-dotenv and Docker Compose read an unquoted value, except that `$` is not expanded.
# Any other line stops here, naming its line number. honcho's own parser, used before, cut a
# value at any `#` (a SECRET_KEY), dropped `NAME=` and `export` lines, and removed spaces.

# dotenv_export FILE: export FILE's settings, or stop (return 1) at its first line that is none.
dotenv_export() {
  local exports
  exports="$(.venv/bin/python - "$1" <<'PY'
import re
import shlex
import sys

path = sys.argv[1]
with open(path, encoding="utf-8") as env:
    lines = env.read().splitlines()
for number, line in enumerate(lines, 1):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    setting = re.fullmatch(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)", line)
    if setting is None:
        sys.exit(f"{path}, line {number}: not NAME=value (the syntax is in .env.example)")
    name, value = setting[1], setting[2].strip()
    if value[:1] in {"'", '"'}:
        quoted = re.fullmatch(r"""(['"])(.*?)\1\s*(?:#.*)?""", value)
        if quoted is None:
            sys.exit(
                f"{path}, line {number}: {name}'s value starts with a quote that does not end "
                "it, or is followed by more than a comment"
            )
        value = quoted[2]
    else:
        value = re.split(r"\s#", value, maxsplit=1)[0].rstrip()
    print(f"export {name}={shlex.quote(value)} || return 1")
PY
)" || return 1
  eval "$exports"
}

if [[ -f .env ]]; then
  dotenv_export .env || return 1
fi
