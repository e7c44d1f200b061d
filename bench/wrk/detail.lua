-- GET /api/products/{id} on ids drawn uniformly from [1, ID_MAX] (ID_MAX from the environment).
dofile(os.getenv("WRK_LUA_DIR") .. "/random_ids.lua")
function request()
  local path = "/api/products/" .. math.random(1, id_max)
  return wrk.format("GET", path, {["X-Forwarded-Proto"] = "https", ["Accept"] = "application/json"})
end
dofile(os.getenv("WRK_LUA_DIR") .. "/report.lua")
