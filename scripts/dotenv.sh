# Sourced by scripts/run.sh and the Makefile: export .env's settings as honcho reads them for
# `make run`'s processes (honcho's parser; .env wins over the shell, as it does there), so every
# step sees the database, port and queue that web, worker and beat see. No .env: nothing.
if [[ -f .env ]]; then
  # A .env that honcho cannot read, or a name the shell cannot take, stops here with its error
  # rather than at `honcho start` or halfway through.
  _dotenv_exports="$(.venv/bin/python -c '
import re, shlex, sys
from honcho.environ import parse

with open(".env") as env:
    settings = parse(env.read())
for name, value in settings.items():
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        sys.exit(f".env: {name!r} is not a variable name")
    print(f"export {name}={shlex.quote(value)} || return 1")
')" || return 1
  eval "$_dotenv_exports"
  unset _dotenv_exports
fi
