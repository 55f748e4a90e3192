-- A page at a random depth, reached by page number (OFFSET): the slow way.
dofile(os.getenv("LUA_DIR") .. "/common.lua")
request = function()
  local pages = math.floor(users / 20)
  return wrk.format("GET", "/api/v1/users?per_page=20&page=" .. math.random(1, pages))
end
