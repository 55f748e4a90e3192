-- DELETE /api/v1/users/{id}, each thread walking its own stretch of the
-- seeded ids so every delete finds its user; past the end of its
-- stretch a thread gets 404s, which the table counts apart.
dofile(os.getenv("LUA_DIR") .. "/common.lua")
local threads = 0
setup = function(thread)
  thread:set("first", threads)
  threads = threads + 1
end
init = function()
  stride = 2 -- wrk's threads (bench/run.sh runs -t 2): between them, every id once
  n = first
end
request = function()
  n = n + stride
  return wrk.format("DELETE", "/api/v1/users/" .. (n % users + 1))
end
