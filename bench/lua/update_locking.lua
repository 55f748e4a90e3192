-- PUT /api/v1/users/{id} changing full_name through the locking path:
-- is_active is sent as stored (true for every seeded user), so the
-- change is the same as update.lua's, but a body naming is_active is not
-- one the fast path takes (store_fastpath.go).
dofile(os.getenv("LUA_DIR") .. "/common.lua")
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format("PUT", "/api/v1/users/" .. math.random(1, users), nil,
    '{"full_name":"Bench Locking ' .. n .. '","is_active":true}')
end
