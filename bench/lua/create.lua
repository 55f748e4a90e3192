-- POST /api/v1/users with a fresh username every time.
dofile(os.getenv("LUA_DIR") .. "/common.lua")
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local n = 0
local run = tostring(os.time())
request = function()
  n = n + 1
  local name = "c" .. run .. "t" .. tid .. "n" .. n
  local body = '{"username":"' .. name .. '","email":"' .. name .. '@example.com","password":"bench password"}'
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}
  return wrk.format("POST", "/api/v1/users", headers, body)
end
