-- A page at a random depth, reached by cursor.
dofile(os.getenv("LUA_DIR") .. "/common.lua")
request = function()
  local cursor = base64url('{"s":"id","i":' .. math.random(1, users - 20) .. '}')
  return wrk.format("GET", "/api/v1/users?per_page=20&cursor=" .. cursor)
end
