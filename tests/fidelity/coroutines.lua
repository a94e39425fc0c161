-- Fidelity: coroutines: create/resume/yield passing values both ways, status, running,
-- isyieldable, wrap, yield across pcall and metamethods, errors inside coroutines, close with
-- pending to-be-closed variables, and yields that cross a C boundary.  Returns one line per
-- check.  No io, os or debug: it runs under the sandbox too.

local out = {}

local function show(v)
  local t = type(v)
  if t == "string" then
    return (string.format("%q", v):gsub("\\\n", "\\n"))
  elseif t == "number" or t == "boolean" or t == "nil" then
    return tostring(v)
  end
  return t
end

local function put(label, ...)
  local parts = {label}
  for i = 1, select("#", ...) do
    parts[#parts + 1] = show((select(i, ...)))
  end
  out[#out + 1] = table.concat(parts, " ")
end

put("global before", type(suspended_co))

-- values in and out
local co = coroutine.create(function(a, b)
  local c = coroutine.yield(a + b)
  local d, e = coroutine.yield(c * 2)
  return d + e, "end"
end)
put("resume 1", coroutine.resume(co, 1, 2))
put("status 1", coroutine.status(co))
put("resume 2", coroutine.resume(co, 10))
put("resume 3", coroutine.resume(co, 3, 4))
put("status 3", coroutine.status(co))
put("resume dead", coroutine.resume(co))

-- status from the inside and from another coroutine; running; isyieldable
local main, ismain = coroutine.running()
put("running main", type(main), ismain, coroutine.isyieldable(), coroutine.status(main))
local outer
local inner = coroutine.create(function()
  return coroutine.status(outer), coroutine.isyieldable()
end)
outer = coroutine.create(function()
  local me, im = coroutine.running()
  local st = coroutine.status(me)
  return st, im, coroutine.resume(inner)
end)
put("statuses", coroutine.resume(outer))
put("resume self", coroutine.resume(coroutine.create(function()
  return coroutine.resume(coroutine.running())
end)))

-- wrap: generators, errors carry their position
local function range(n)
  return coroutine.wrap(function()
    for i = 1, n do coroutine.yield(i) end
  end)
end
local got = {}
for i in range(5) do got[#got + 1] = i end
put("wrap", table.concat(got, ","))
local function permgen(a, n)
  n = n or #a
  if n <= 1 then
    coroutine.yield(table.concat(a))
  else
    for i = 1, n do
      a[n], a[i] = a[i], a[n]
      permgen(a, n - 1)
      a[n], a[i] = a[i], a[n]
    end
  end
end
local perms = {}
for p in coroutine.wrap(function() permgen({"a", "b", "c"}) end) do perms[#perms + 1] = p end
put("permutations", table.concat(perms, " "))
local bad = coroutine.wrap(function() error("inside wrap") end)
put("wrap error", pcall(bad))
local bad2 = coroutine.wrap(function() error({code = 7}) end)
local ok, e = pcall(bad2)
put("wrap error object", ok, type(e), e.code)
local finished = coroutine.wrap(function() return 1 end)
finished()
put("wrap dead", pcall(finished))

-- errors inside a coroutine
local erring = coroutine.create(function(x)
  coroutine.yield(x)
  local t = nil
  return t.field
end)
put("error 1", coroutine.resume(erring, "first"))
put("error 2", coroutine.resume(erring))
put("error status", coroutine.status(erring))
put("error table", coroutine.resume(coroutine.create(function() error({}) end)))
put("error level 0", coroutine.resume(coroutine.create(function() error("plain", 0) end)))

-- yield across pcall, xpcall, metamethods and iterators (allowed in 5.4)
local across = coroutine.create(function()
  local ok1, v1 = pcall(function()
    local r = coroutine.yield("in pcall")
    return r * 2
  end)
  local ok2, v2 = xpcall(function()
    coroutine.yield("in xpcall")
    error("after yield")
  end, function(m) return "handled: " .. m end)
  local mt = {__index = function(_, k) return coroutine.yield("in __index " .. k) end,
              __add = function(a, b) return coroutine.yield("in __add") end,
              __lt = function() return coroutine.yield("in __lt") end,
              __concat = function() return coroutine.yield("in __concat") end,
              __eq = function() return coroutine.yield("in __eq") end}
  local t = setmetatable({}, mt)
  local idx = t.key
  local sum = t + 1
  local lt = t < t
  local cat = t .. "x"
  local eq = t == setmetatable({}, mt)
  local iter = {}
  for v in function(_, prev)
    prev = (prev or 0) + 1
    if prev <= 2 then return coroutine.yield("iter " .. prev) end
  end do iter[#iter + 1] = v end
  return ok1, v1, ok2, v2, idx, sum, lt, cat, eq, table.concat(iter, ",")
end)
local trace = {}
local res = {coroutine.resume(across)}
local step = 0
while coroutine.status(across) == "suspended" do
  trace[#trace + 1] = tostring(res[2])
  step = step + 1
  res = {coroutine.resume(across, step)}
end
put("yield across", table.concat(trace, "|"))
put("yield across result", table.unpack(res, 1, 11))

-- yields that cross a C function are errors
local function yields_in(f)
  local c = coroutine.create(f)
  return coroutine.resume(c)
end
put("across sort", yields_in(function()
  table.sort({3, 2, 1}, function(a, b) coroutine.yield() return a < b end)
end))
put("across gsub", yields_in(function()
  return string.gsub("ab", ".", function(c) coroutine.yield(c) end)
end))
put("yield main", pcall(coroutine.yield, 1))

-- close: suspended with pending to-be-closed variables, dead, with an error
local closed = {}
local closing = coroutine.create(function()
  local a <close> = setmetatable({}, {__close = function() closed[#closed + 1] = "a" end})
  local b <close> = setmetatable({}, {__close = function(_, err)
    closed[#closed + 1] = "b" .. tostring(err)
  end})
  coroutine.yield(1)
  closed[#closed + 1] = "never"
end)
coroutine.resume(closing)
put("close suspended", coroutine.close(closing), coroutine.status(closing),
    table.concat(closed, ","))
put("close dead", coroutine.close(closing))
local errco = coroutine.create(function() error("kaput") end)
coroutine.resume(errco)
put("close errored", coroutine.close(errco))
local close_err = coroutine.create(function()
  local x <close> = setmetatable({}, {__close = function() error("in close") end})
  coroutine.yield()
end)
coroutine.resume(close_err)
put("close raising", coroutine.close(close_err))
put("close running", pcall(coroutine.close, coroutine.running()))
put("close new", coroutine.close(coroutine.create(print or tostring)))

-- errors in the library's arguments
put("resume arg", pcall(function() return coroutine.resume(42) end))
put("wrap arg", pcall(function() return coroutine.wrap(nil) end))
put("status arg", pcall(function() return coroutine.status({}) end))

-- a producer/consumer pipeline with a filter
local function producer(items)
  return coroutine.create(function()
    for _, it in ipairs(items) do coroutine.yield(it) end
  end)
end
local function filter(src, pred)
  return coroutine.create(function()
    while true do
      local okr, v = coroutine.resume(src)
      if not okr or v == nil then return end
      if pred(v) then coroutine.yield(v) end
    end
  end)
end
local consumed = {}
local pipe = filter(producer({1, 2, 3, 4, 5, 6, 7, 8}), function(v) return v % 2 == 0 end)
while true do
  local okr, v = coroutine.resume(pipe)
  if not okr or v == nil then break end
  consumed[#consumed + 1] = v
end
put("pipeline", table.concat(consumed, ","))

-- many coroutines alive at once
local many = {}
for i = 1, 200 do
  many[i] = coroutine.wrap(function() local x = i coroutine.yield(x) return x * 2 end)
end
local sum = 0
for i = 1, 200 do sum = sum + many[i]() end
for i = 1, 200 do sum = sum + many[i]() end
put("many", sum)

-- a suspended coroutine left in a global: the reused state must not keep it
suspended_co = coroutine.create(function() coroutine.yield() end)
coroutine.resume(suspended_co)
put("global after", coroutine.status(suspended_co))

return table.concat(out, "\n")
