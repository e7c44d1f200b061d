-- GET /api/products/{id} on ids drawn uniformly from [1, ID_MAX] (ID_MAX from the environment).
local id_max = tonumber(os.getenv("ID_MAX"))
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
function init(args)
  math.randomseed(os.time() * 1000 + seed)
end
function request()
  local path = "/api/products/" .. math.random(1, id_max)
  return wrk.format("GET", path, {["X-Forwarded-Proto"] = "https", ["Accept"] = "application/json"})
end
dofile(os.getenv("WRK_LUA_DIR") .. "/report.lua")
