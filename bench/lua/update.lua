-- PUT /api/v1/users/{id} changing full_name, for random ids among the
-- seeded users (no If-Match: last writer wins, as a plain client does).
dofile(os.getenv("LUA_DIR") .. "/common.lua")
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format("PUT", "/api/v1/users/" .. math.random(1, users), nil, '{"full_name":"Bench Update ' .. n .. '"}')
end
