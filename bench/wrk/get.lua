-- GET one fixed path (wrk's URL), as a client behind the TLS proxy.
wrk.headers["X-Forwarded-Proto"] = "https"
wrk.headers["Accept"] = "application/json"
dofile(os.getenv("WRK_LUA_DIR") .. "/report.lua")
