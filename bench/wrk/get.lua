-- GET one fixed path (wrk's URL), as a client behind the TLS proxy. The request is built per
-- call, as in the scripts that vary the path, so every scenario pays wrk the same Lua cost.
local headers = {["X-Forwarded-Proto"] = "https", ["Accept"] = "application/json"}
function request()
  return wrk.format("GET", nil, headers)
end
dofile(os.getenv("WRK_LUA_DIR") .. "/report.lua")
