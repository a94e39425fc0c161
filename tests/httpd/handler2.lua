-- tests/test_luahttpd's handler after a reload (SIGHUP).
if req.path() == "/version" then
  return 200, "v2"
end
return 200, "second " .. req.path()
