-- Fidelity: errors: error with levels, non-string error objects, pcall/xpcall and their
-- handlers, tracebacks, assert, the message text of common mistakes, argument errors named
-- from the code and from the loaded libraries, and the C stack limit.  Returns one line per
-- check.  Uses debug.traceback: LUAPOOL_LIBS_ALL only.

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

-- a builtin the end of this program replaces
put("pristine", select("#", assert(1, 2, 3)), pcall(assert, false))

-- error levels
local function lvl1() error("at level 1") end
local function lvl2() error("at level 2", 2) end
local function calls_lvl2() lvl2() end
local function lvl0() error("no position", 0) end
put("level 1", pcall(lvl1))
put("level 2", pcall(calls_lvl2))
put("level 0", pcall(lvl0))
put("level 3", pcall(function()
  local function f() error("up two", 3) end
  local function g() f() end
  g()
end))
put("level far", pcall(function() error("beyond the stack", 50) end))

-- error objects that are not strings
local obj = {code = 42}
local ok, e = pcall(error, obj)
put("table object", ok, rawequal(e, obj), e.code)
put("nil object", pcall(error))
put("nil object 2", pcall(error, nil))
put("number object", pcall(error, 42))
put("number object level", pcall(function() error(42, 1) end))
put("boolean object", pcall(error, false))
local withts = setmetatable({}, {__tostring = function() return "custom error" end})
local ok2, e2 = pcall(error, withts)
put("tostring object", ok2, tostring(e2))

-- pcall and xpcall results
put("pcall results", pcall(function(...) return ... end, 1, nil, 3))
put("pcall not callable", pcall(nil))
put("pcall number", pcall(42))
put("xpcall args", xpcall(function(a, b) return a + b end, print, 2, 3))
put("xpcall handler", xpcall(function() error("oops") end, function(m) return "H(" .. m .. ")" end))
put("xpcall handler object", xpcall(function() error({1, 2, 3}) end, function(m) return #m end))
put("xpcall handler error", xpcall(function() error("first") end,
                                   function() error("in handler") end))
put("nested pcall", pcall(pcall, error, "inner"))
put("error in pcall in pcall", pcall(function()
  local ok3, e3 = pcall(error, "caught")
  error("rethrown: " .. e3, 0)
end))

-- tracebacks: through locals, upvalues, methods, fields, globals and C functions
local function normalize(tb)
  return (tb:gsub("\t", "  "))
end
local T = {}
function T.field_fn() error("deep") end
function T:method_fn() T.field_fn() end
function traceback_global() T:method_fn() end
local function local_fn() traceback_global() end
put("traceback", xpcall(local_fn, function(m) return normalize(debug.traceback(m, 2)) end))
put("traceback 1", xpcall(function() local x = nil; return x.y end,
                          function(m) return normalize(debug.traceback(m)) end))
put("traceback no msg", normalize(debug.traceback()))
put("traceback level", normalize(debug.traceback("msg", 1)))
put("traceback object", debug.traceback(obj) == obj, debug.traceback(nil), debug.traceback(12))
put("traceback through C", xpcall(function()
  return table.concat({1, 2, {}})
end, function(m) return normalize(debug.traceback(m, 2)) end))
put("traceback sort", xpcall(function()
  table.sort({3, 2, 1}, function(a, b) error("cmp") end)
end, function(m) return normalize(debug.traceback(m, 2)) end))

-- assert
put("assert", pcall(assert, false), pcall(assert, nil, "message"))
put("assert object", select(2, pcall(assert, false, obj)) == obj)
put("assert values", assert("v", "w"))
put("assert no args", pcall(assert))

-- the message text of common mistakes
local function msg(f) local _, m = pcall(f) return m end
local up = nil
put("call nil global", msg(function() undefined_function() end))
put("call nil local", msg(function() local f; f() end))
put("call nil field", msg(function() local t = {} t.missing() end))
put("call nil method", msg(function() local t = {} t:missing() end))
put("call nil upvalue", msg(function() up() end))
put("call number", msg(function() local n = 1 n() end))
put("call string", msg(function() ("x")() end))
put("index nil local", msg(function() local t; return t.x end))
put("index nil global", msg(function() return undefined_table.x end))
put("index nil field", msg(function() local t = {} return t.a.b end))
put("index nil upvalue", msg(function() return up.x end))
put("index number", msg(function() local n = 5 return n.x end))
put("index boolean", msg(function() return (true).x end))
put("newindex nil", msg(function() local t; t.x = 1 end))
put("arith nil", msg(function() return undefined_number + 1 end))
put("arith string", msg(function() return "abc" + 1 end))
put("arith table field", msg(function() local t = {v = {}} return t.v * 2 end))
put("concat table", msg(function() local t = {} return "x" .. t end))
put("concat nil field", msg(function() local t = {} return t.name .. "!" end))
put("concat boolean", msg(function() return "a" .. true end))
put("compare", msg(function() return 1 < "2" end))
put("compare nil", msg(function() return nil < 1 end))
put("compare tables", msg(function() return {} < {} end))
put("compare mixed", msg(function() return {} <= 1 end))
put("length nil", msg(function() return #undefined_len end))
put("length number", msg(function() local n = 3 return #n end))
put("idiv zero", msg(function() local z = 0 return 1 // z end))
put("mod zero", msg(function() local z = 0 return 1 % z end))
put("float to int", msg(function() return 1.5 | 0 end))
put("string to int", msg(function() return math.tointeger("x") // nil end))
put("index key nil", msg(function() local t = {} t[nil] = 1 end))
put("index key nan", msg(function() local t = {} t[0 / 0] = 1 end))
put("for step", msg(function() for i = 1, 10, 0 do end end))
put("for init", msg(function() for i = "a", 2 do end end))
put("for limit", msg(function() for i = 1, {} do end end))
put("for float step", msg(function() for i = 1, 2, "x" do end end))
put("unary minus", msg(function() return -{} end))
put("bnot", msg(function() return ~1.5 end))
put("setmetatable protected", msg(function()
  setmetatable(setmetatable({}, {__metatable = 1}), {})
end))

-- argument errors named from the calling code and, when called from C, from the libraries
put("arg from code", msg(function() return string.rep() end))
put("arg method", msg(function() return ("x"):rep("y") end))
put("arg global", msg(function() return tostring() end))
put("arg local alias", msg(function() local r = string.rep return r() end))
put("arg pcall string.rep", pcall(string.rep))
put("arg pcall tostring", pcall(tostring))
put("arg pcall math.floor", pcall(math.floor, "a"))
put("arg pcall table.insert", pcall(table.insert, {}, 1, 2, 3))
put("arg pcall select", pcall(select, 0))
put("arg pcall ipairs", pcall(ipairs))
put("arg pcall setmetatable", pcall(setmetatable, 1))
put("arg pcall io.type", pcall(io.type))
put("arg pcall os.date", pcall(os.date, {}))
put("arg pcall coroutine.wrap", pcall(coroutine.wrap, 1))
put("arg pcall utf8.char", pcall(utf8.char, -1))
put("arg pcall string.format", pcall(string.format, "%d", "x"))
put("arg pcall debug.getinfo", pcall(debug.getinfo, "x"))
put("arg pcall rawlen", pcall(rawlen))
put("too large", pcall(string.rep, "x", math.maxinteger))
put("too large 2", pcall(string.rep, "xx", 1 << 62, ","))

-- the C stack limit: pcall inside pcall until it overflows
local depth, overflow_msg = 0, nil
local function dive(n)
  depth = n
  local ok4, err = pcall(dive, n + 1)
  if not ok4 and overflow_msg == nil then overflow_msg = err end
  return n
end
dive(1)
put("C stack", depth, overflow_msg)
-- the Lua stack limit: plain recursion until "stack overflow"
local lua_depth = 0
local function recurse(n)
  lua_depth = n
  return 1 + recurse(n + 1)
end
put("Lua stack", pcall(recurse, 1))
put("Lua stack depth", lua_depth)
local chain_msg = select(2, pcall(string.gsub, "x", "x", function() error("from callback") end))
put("error from callback", chain_msg)

-- errors raised from metamethods keep their position
put("metamethod error", pcall(function()
  local t = setmetatable({}, {__index = function(_, k) error("no field " .. k, 2) end})
  return t.missing
end))

-- a builtin replaced: the next run on a reused state must have the real one back
assert = function() return "replaced assert" end
error = nil
put("replaced", assert(false), type(error))

return table.concat(out, "\n")
