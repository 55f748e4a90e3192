-- A page at a random depth, reached by page number (OFFSET): the slow way.
-- Pages go as deep as the service allows (an offset of 10,000 rows);
-- deeper walks take a cursor (list_cursor.lua).
dofile(os.getenv("LUA_DIR") .. "/common.lua")
request = function()
  local pages = math.min(math.floor(users / 20), 501)
  return wrk.format("GET", "/api/v1/users?per_page=20&page=" .. math.random(1, pages))
end
