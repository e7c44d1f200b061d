-- GET /api/products/{id} on ids drawn uniformly from [1, ID_MAX] (ID_MAX from the environment),
-- or with SEQUENTIAL=1 each id of [1, ID_MAX] in turn (to warm a cache).
local id_max = tonumber(os.getenv("ID_MAX"))
local sequential = os.getenv("SEQUENTIAL") == "1"
local next_id = 0
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
function init(args)
  math.randomseed(os.time() * 1000 + seed)
end
function request()
  local id
  if sequential then
    next_id = next_id % id_max + 1
    id = next_id
  else
    id = math.random(1, id_max)
  end
  local path = "/api/products/" .. id
  return wrk.format("GET", path, {["X-Forwarded-Proto"] = "https", ["Accept"] = "application/json"})
end
dofile(os.getenv("WRK_LUA_DIR") .. "/report.lua")
