-- GET /api/v1/users/{id} for random ids among the seeded users.
dofile(os.getenv("LUA_DIR") .. "/common.lua")
request = function()
  return wrk.format("GET", "/api/v1/users/" .. math.random(1, users))
end
