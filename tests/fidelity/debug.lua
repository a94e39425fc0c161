-- Fidelity: the debug library: getinfo's fields, getlocal/setlocal, getupvalue/setupvalue,
-- upvalueid/upvaluejoin, traceback text, count, line and call hooks (set and removed again),
-- and metatables and user values.  It ends by leaving a hook set and changing a library
-- function's upvalue: a reused state must start the next run as a new state would.
-- LUAPOOL_LIBS_ALL only.

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

-- a new state has no hook, and require finds no module called fidelity_fake
put("pristine hook", debug.gethook())
local ok, err = pcall(require, "fidelity_fake")
put("pristine require", ok, (tostring(err):match("^[^\n]*")))
put("pristine loaded", package.loaded.fidelity_fake)
local registry = debug.getregistry()
put("pristine registry", registry.fidelity_mark, registry[2] == _G, registry.fidelity_ref)
put("pristine io", io.output() == io.stdout, io.input() == io.stdin, io.type(io.output()),
    getmetatable(io.stdout).__name, io.stdout.fidelity, (tostring(io.stdout):match("^file %(")))
-- the metatables of single userdata values (not of the type): the files, math.random's state
local _, random_state = debug.getupvalue(math.random, 1)
put("pristine userdata", io.type(io.stdout),
    rawequal(getmetatable(io.stdout), getmetatable(io.stderr)), type(random_state),
    getmetatable(random_state) == nil)

-- getinfo of the main chunk
local main = debug.getinfo(1)
put("main", main.what, main.source, main.short_src, main.currentline, main.linedefined,
    main.lastlinedefined, main.nparams, main.isvararg, main.nups, main.namewhat, main.name,
    main.istailcall, type(main.func))
put("main S", debug.getinfo(1, "S").what, debug.getinfo(1, "l").currentline)
put("level out of range", debug.getinfo(50), debug.getinfo(1, "n").name)

-- getinfo of Lua functions: parameters, varargs, upvalues, lines
local up1, up2 = 1, 2
local function sample(a, b, ...)
  local sum = a + b + up1 + up2
  return sum, ...
end
local info = debug.getinfo(sample)
put("function", info.what, info.short_src, info.linedefined, info.lastlinedefined, info.nparams,
    info.isvararg, info.nups, info.currentline, info.func == sample)
local lines = {}
for l in pairs(debug.getinfo(sample, "L").activelines) do lines[#lines + 1] = l end
table.sort(lines)
put("activelines", table.concat(lines, ","))
local c = debug.getinfo(print)
put("C function", c.what, c.source, c.short_src, c.currentline, c.linedefined, c.nparams,
    c.isvararg, c.nups)
put("options", pcall(debug.getinfo, 1, ">"))
put("options 2", debug.getinfo(1, "u").nparams, debug.getinfo(1, "u").currentline)

-- getinfo from inside: names and what kind of call
local function whoami()
  local i = debug.getinfo(2, "nSl")
  return i.name, i.namewhat, i.currentline
end
-- (not tail calls: a tail call leaves no frame to name)
local function named_local() local n, w, l = whoami() return n, w, l end
local T = {}
function T.field() local n, w, l = whoami() return n, w, l end
function T:method() local n, w, l = whoami() return n, w, l end
function global_fn() local n, w, l = whoami() return n, w, l end
put("names", named_local())
put("names 2", T.field())
put("names 3", T:method())
put("names 4", global_fn())
local function caller_info()
  local i = debug.getinfo(1, "nt")
  return i.name, i.namewhat, i.istailcall
end
local function tail() return caller_info() end
local function notail() local a, b, c = caller_info() return a, b, c end
put("tail call", tail())
put("no tail call", notail())

-- getlocal and setlocal
local function locals(x, y, ...)
  local z = x + y
  local names = {}
  local idx = 1
  while true do
    local name, value = debug.getlocal(1, idx)
    if not name then break end
    if name:sub(1, 1) ~= "(" then names[#names + 1] = name .. "=" .. show(value) end
    idx = idx + 1
  end
  local va = {}
  idx = -1
  while true do
    local name, value = debug.getlocal(1, idx)
    if not name then break end
    va[#va + 1] = name .. "=" .. tostring(value)
    idx = idx - 1
  end
  debug.setlocal(1, 3, 100)
  return table.concat(names, " "), table.concat(va, " "), z
end
put("getlocal", locals(1, 2, "v1", "v2"))
put("getlocal params", debug.getlocal(locals, 1), debug.getlocal(locals, 2),
    debug.getlocal(locals, 3))
put("getlocal bad level", pcall(debug.getlocal, 50, 1))
put("setlocal none", debug.setlocal(1, 200, 0))

-- getupvalue, setupvalue, upvalueid, upvaluejoin
local function counter()
  local count = 0
  local step = 1
  return function() count = count + step return count end
end
local c1, c2 = counter(), counter()
c1()
put("getupvalue", debug.getupvalue(c1, 1), debug.getupvalue(c1, 2), debug.getupvalue(c1, 3))
put("setupvalue", debug.setupvalue(c1, 2, 10), c1(), c1())
put("upvalueid", debug.upvalueid(c1, 1) == debug.upvalueid(c1, 1),
    debug.upvalueid(c1, 1) == debug.upvalueid(c2, 1), type(debug.upvalueid(c1, 1)))
debug.upvaluejoin(c2, 1, c1, 1) -- c2 now counts with c1's count
put("upvaluejoin", c2(), c1(), debug.upvalueid(c1, 1) == debug.upvalueid(c2, 1))
put("upvalueid errors", pcall(debug.upvalueid, c1, 5))
put("upvaluejoin errors", pcall(debug.upvaluejoin, c1, 1, print, 1))
put("main upvalue", debug.getupvalue(debug.getinfo(1, "f").func, 1))
local shared_a, shared_b
do
  local v = 0
  shared_a = function() v = v + 1 return v end
  shared_b = function() return v end
end
put("shared upvalue", debug.upvalueid(shared_a, 1) == debug.upvalueid(shared_b, 1), shared_a(),
    shared_b())

-- traceback text
local function level3() return debug.traceback("where", 1) end
local function level2() return level3() end
local function level1() local r = level2() return r end
put("traceback", (level1():gsub("\t", "  ")))
put("traceback level 2", (debug.traceback("x", 2):gsub("\t", "  ")))
local co = coroutine.create(function() local x = 1 coroutine.yield() return x end)
coroutine.resume(co)
put("traceback coroutine", (debug.traceback(co):gsub("\t", "  ")))
put("traceback coroutine msg", (debug.traceback(co, "msg", 1):gsub("\t", "  ")))
put("getinfo coroutine", debug.getinfo(co, 1, "l").currentline, debug.getlocal(co, 1, 1))

-- a count hook that counts and is removed again
local count = 0
debug.sethook(function(ev) count = count + 1 end, "", 10)
local acc = 0
for i = 1, 1000 do acc = acc + i end
local hook_fn, mask, hook_count = debug.gethook()
debug.sethook()
local after = count
for i = 1, 1000 do acc = acc + i end
put("count hook", count, count == after, type(hook_fn), mask, hook_count, debug.gethook())

-- a line hook over a small function
local function traced(n)
  local s = 0
  for i = 1, n do
    s = s + i
  end
  return s
end
local seen = {}
debug.sethook(function(ev, line) seen[#seen + 1] = line end, "l")
traced(2)
debug.sethook()
put("line hook", table.concat(seen, ","))

-- call and return hooks, with tail calls
local events = {}
local function leaf() return 1 end
local function via_tail() return leaf() end
debug.sethook(function(ev)
  local i = debug.getinfo(2, "n")
  events[#events + 1] = ev .. ":" .. tostring(i and i.name)
end, "cr")
via_tail()
debug.sethook()
put("call hooks", table.concat(events, " "))

-- hooks are per coroutine
local co_hooked = coroutine.create(function()
  debug.sethook(function() end, "l")
  return debug.gethook() ~= nil
end)
put("coroutine hook", coroutine.resume(co_hooked), debug.gethook())

-- metatables and user values through debug
local mt = {}
put("debug.setmetatable", debug.setmetatable(10, nil), debug.getmetatable(10))
local hidden = setmetatable({}, {__metatable = "hidden"})
put("debug.getmetatable", debug.getmetatable(hidden).__metatable, getmetatable(hidden))
put("uservalue", debug.getuservalue(io.stdout), debug.getuservalue({}),
    debug.getuservalue(io.stdout, 2))
put("setuservalue", pcall(debug.setuservalue, {}, 1))
put("registry", type(debug.getregistry()), debug.getregistry()[2] == _G)
put("setcstacklimit", debug.setcstacklimit and debug.setcstacklimit(100))
put("mt", debug.setmetatable(mt, nil) == mt)

-- leave changes behind: a library function's upvalue and a hook
local fake_package = {searchers = {function(name)
  return function() return "fake module " .. name end, ":fake:"
end}}
local req_name = debug.setupvalue(require, 1, fake_package)
put("require hijacked", req_name, require("fidelity_fake"), package.loaded.fidelity_fake)
registry.fidelity_mark = "left in the registry"
local ref = #registry + 1 -- as luaL_ref would take it
registry[ref] = "a reference"
registry.fidelity_ref = ref
io.output(io.stderr)
io.input(io.stderr)
getmetatable(io.stdout).__index.fidelity = "a file method"
getmetatable(io.stdout).__tostring = function() return "a fake file" end
put("left io", io.output() == io.stderr, io.stdout.fidelity, tostring(io.stdout))
debug.setmetatable(io.stdout, {__name = "not a FILE*", __index = {
  write = function() return "fake write" end,
}})
debug.setmetatable(random_state, {__name = "leaked"})
put("left userdata", io.type(io.stdout), io.stdout:write("x"), getmetatable(random_state).__name)
-- the globals of chunks loaded from now on: the running chunk keeps its own _ENV
registry[2] = setmetatable({}, {__index = _G})
put("left globals", load("return _G")() == _G, load("fidelity_new = 1 return fidelity_new")(),
    rawget(_G, "fidelity_new"))
debug.sethook(function() end, "l")
put("left hook", debug.gethook() ~= nil)

return table.concat(out, "\n")
