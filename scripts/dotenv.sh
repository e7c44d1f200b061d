# Sourced by scripts/run.sh and the Makefile: export .env's settings as honcho reads them for
# `make run`'s processes (honcho's parser; .env wins over the shell, as it does there), so every
# step sees the database, port and queue that web, worker and beat see. No .env: nothing.
if [[ -f .env ]]; then
  # A .env honcho cannot read stops here, with its error, rather than at `honcho start`.
  _dotenv_exports="$(.venv/bin/python -c '
import shlex
from honcho.environ import parse

with open(".env") as env:
    for name, value in parse(env.read()).items():
        print(f"export {name}={shlex.quote(value)}")
')" || return 1
  eval "$_dotenv_exports"
  unset _dotenv_exports
fi
