-- The first page of the list, with its total.
dofile(os.getenv("LUA_DIR") .. "/common.lua")
request = function()
  return wrk.format("GET", "/api/v1/users?per_page=20")
end
