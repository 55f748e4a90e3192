-- A mixed workload for the soak: mostly reads, some list pages, a few
-- updates and creates. Counts the statuses it gets, per thread.
dofile(os.getenv("LUA_DIR") .. "/common.lua")
local threads = {}
setup = function(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end
local n = 0
local run = tostring(os.time())
request = function()
  local r = math.random(1, 1000)
  local id = math.random(1, users)
  if r <= 800 then
    return wrk.format("GET", "/api/v1/users/" .. id)
  elseif r <= 900 then
    return wrk.format("GET", "/api/v1/users?per_page=20")
  elseif r <= 950 then
    local cursor = base64url('{"s":"id","i":' .. math.random(1, users - 20) .. '}')
    return wrk.format("GET", "/api/v1/users?per_page=20&cursor=" .. cursor)
  end
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}
  if r <= 995 then
    local body = '{"full_name":"Soaked ' .. math.random(1, 1000000) .. '"}'
    return wrk.format("PATCH", "/api/v1/users/" .. id, headers, body)
  end
  n = n + 1
  local name = "s" .. run .. "t" .. tid .. "n" .. n
  local body = '{"username":"' .. name .. '","email":"' .. name .. '@example.com","password":"soak password"}'
  return wrk.format("POST", "/api/v1/users", headers, body)
end
