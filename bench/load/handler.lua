-- bench/load.sh's handler (examples/luahttpd.c has the contract).
--   /tiny   the smallest answer
--   /work   ~30 us of Lua (a loop and a table)
--   /spin   hostile: loops until its time budget stops it (503)
--   /bomb   hostile: allocates until mem_limit stops it (500)
local path = req.path()
if path == "/tiny" then
  return 200, "ok\n"
elseif path == "/work" then
  local t, s = {}, 0
  for i = 1, 600 do
    t[i] = i * 3
    s = s + t[i] % 7
  end
  return 200, tostring(s) .. "\n"
elseif path == "/spin" then
  while true do end
elseif path == "/bomb" then
  local t = {}
  for i = 1, 1e9 do t[i] = string.rep("x", 4096) .. i end
end
return 404, "no route\n"
