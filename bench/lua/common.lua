-- Shared by the scenarios: the admin token and the number of seeded users
-- come from the environment (bench/run.sh sets them).
token = os.getenv("TOKEN")
users = tonumber(os.getenv("USERS") or "10000")
wrk.headers["Authorization"] = "Bearer " .. token

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

-- base64url without padding, as the service's cursors are.
function base64url(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chunk = 4
    if not b then chunk = 2 elseif not c then chunk = 3 end
    for j = 1, chunk do
      local shift = 18 - 6 * (j - 1)
      local idx = math.floor(n / 2 ^ shift) % 64
      out[#out + 1] = b64chars:sub(idx + 1, idx + 1)
    end
  end
  return table.concat(out)
end
