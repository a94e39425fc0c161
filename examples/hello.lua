-- luahttpd's example handler (examples/luahttpd.c has the contract): run for every request,
-- it returns status, body[, headers].
local path = req.path()
if path == "/" or path == "/hello" then
  local who = req.query("name") or "world"
  return 200, "hello, " .. who .. "\n", { ["Content-Type"] = "text/plain; charset=utf-8" }
elseif path == "/echo" then
  return 200, req.body(), { ["X-Method"] = req.method() }
elseif path == "/agent" then
  return 200, (req.header("User-Agent") or "?") .. "\n"
end
return 404, "no route for " .. path .. "\n"
