-- wrk script for bench/load.sh's hostile clients: every request hostile, /spin (an endless loop
-- the time budget stops) and /bomb (a memory bomb mem_limit stops) in turn.
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", (n % 2 == 0) and "/spin" or "/bomb")
end
