-- Shared by the scenarios that draw product ids: ID_MAX from the environment, and a random
-- seed of its own for every wrk thread.
id_max = tonumber(os.getenv("ID_MAX"))
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
function init(args)
  math.randomseed(os.time() * 1000 + seed)
end
