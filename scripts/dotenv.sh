# Sourced by scripts/run.sh, migrate.sh and manage.sh: export .env's settings (.env wins over the
# shell), so that every step sees the database, port and queue that web, worker and beat see:
# `make run` hands its processes these exported values, and honcho reads no .env of its own.
# No .env: nothing. The syntax (.env.example's header says it for users):
#   NAME=value     the value is the rest of the line as written, `#` included, without the
#                  spaces at its ends (and any around the `=`); `export NAME=value` is the same
#   NAME='value'   or "value": what is between the quotes, as written (no escapes, no `$`)
#   NAME=          empty: set, to nothing, over the shell's value
#   # ...          a comment, only as a whole line; blank lines are skipped
# Any other line stops here, naming its line number. honcho's own parser, used before, cut a
# value at `#` (a SECRET_KEY), dropped `NAME=` and `export` lines, and removed spaces.

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
        if len(value) < 2 or value[-1] != value[0]:
            sys.exit(
                f"{path}, line {number}: {name}'s value starts with a quote that does not end "
                "it (comments are whole lines only)"
            )
        value = value[1:-1]
    print(f"export {name}={shlex.quote(value)} || return 1")
PY
)" || return 1
  eval "$exports"
}

if [[ -f .env ]]; then
  dotenv_export .env || return 1
fi
