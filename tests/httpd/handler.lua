-- tests/test_luahttpd's handler: one route per property the test checks.
local path = req.path()
if path == "/hello" then
  return 200, "hello " .. path, { ["X-Test"] = "yes" }
elseif path == "/set" then
  leak = "yes" -- a global: the next request must not see it
  return 200, "set"
elseif path == "/get" then
  return 200, "leak=" .. tostring(leak)
elseif path == "/echo" then
  return 200, string.format("m=%s a=%s h=%s b=%s", req.method(), tostring(req.query("a")),
    tostring(req.header("X-Foo")), req.body())
elseif path == "/len" then
  return 200, tostring(#req.body())
elseif path == "/error" then
  error("boom")
elseif path == "/spin" then
  while true do end
elseif path == "/bomb" then
  local t = {}
  while true do t[#t + 1] = string.rep("x", 256 * 1024) .. #t end -- the limit within a few steps
elseif path == "/badret" then
  return "not a status"
elseif path == "/version" then
  return 200, "v1"
end
return 404, "no route"
