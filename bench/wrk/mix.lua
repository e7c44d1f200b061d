-- GETs and PUTs (PUT_RATIO of them, default 0.2) on /api/products/{id}, ids from [1, ID_MAX],
-- token auth from TOKEN. PUT_PATH, if set, replaces /api/products/ for the PUTs only.
dofile(os.getenv("WRK_LUA_DIR") .. "/random_ids.lua")
local token = os.getenv("TOKEN")
local put_ratio = tonumber(os.getenv("PUT_RATIO") or "0.2")
local put_path = os.getenv("PUT_PATH") or "/api/products/"
function request()
  local id = math.random(1, id_max)
  if math.random() < put_ratio then
    local path = put_path .. id
    local body = string.format('{"price": "%d.%02d", "stock_level": %d}',
      math.random(1, 500), math.random(0, 99), math.random(0, 1000))
    return wrk.format("PUT", path, {
      ["X-Forwarded-Proto"] = "https",
      ["Accept"] = "application/json",
      ["Content-Type"] = "application/json",
      ["Authorization"] = "Token " .. token,
    }, body)
  end
  return wrk.format("GET", "/api/products/" .. id, {["X-Forwarded-Proto"] = "https", ["Accept"] = "application/json"})
end
dofile(os.getenv("WRK_LUA_DIR") .. "/report.lua")
