-- Fidelity: metatables and events: __index/__newindex chains, __call, __concat, __eq, __lt,
-- __le, __len, __close, the arithmetic and bitwise events, __unm, __tostring, __name,
-- __metatable, __pairs, and the raw functions.  At the end it changes what every later chunk
-- sees (the string metatable, the metatables of nil, booleans, numbers and functions, _G's
-- metatable, a library table): a reused state must start the next run without those changes.
-- Needs the debug library (debug.setmetatable): LUAPOOL_LIBS_ALL only.

local out = {}

-- no method calls on strings here: the end of the program replaces the string metatable
local format, gsub, concat, tostring = string.format, string.gsub, table.concat, tostring

local function show(v)
  local t = type(v)
  if t == "string" then
    return (gsub(format("%q", v), "\\\n", "\\n"))
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
  out[#out + 1] = concat(parts, " ")
end

local function perr(f, ...)
  return pcall(f, ...)
end

-- what a new state looks like (the end of this program changes all of it)
put("pristine 1", type(undefined_global), getmetatable(_G), string.extra_field)
put("pristine 2", getmetatable(nil), getmetatable(true), getmetatable(0), getmetatable(print))
put("pristine 3", getmetatable("").__index == string,
    rawequal(getmetatable("abc"), getmetatable("")))
put("pristine 4", "10" + 1, "3" * "4", "2" ^ 2, -"2", "7" // 2, "7" % "4")
put("pristine 5", ("x"):rep(3), #"abc", pcall(function() return nil .. "x" end))
put("pristine 6", pcall(function() return (nil).x end))
put("pristine 7", rawequal(_G._G, _G), getmetatable(coroutine.running()), getmetatable(math),
    math.nonexistent, math.type(math.maxinteger), type(string.format), ("%d"):format(7))

-- __index: a table, a chain of tables, a function; rawget ignores it
local base = {greet = "hello", kind = "base"}
local middle = setmetatable({kind = "middle"}, {__index = base})
local obj = setmetatable({}, {__index = middle})
put("index chain", obj.greet, obj.kind, rawget(obj, "greet"), rawget(middle, "greet"))
local calls = 0
local lazy = setmetatable({}, {__index = function(t, k)
  calls = calls + 1
  local v = type(k) == "number" and k * k or tostring(k):upper()
  rawset(t, k, v)
  return v
end})
put("index fn", lazy[7], lazy.abc, lazy[7], lazy.abc, calls)
put("index fn args", setmetatable({}, {__index = function(t, k) return select("#", t, k) end}).x)
put("index string key", setmetatable({}, {__index = {[1] = "one", ["1"] = "string one"}})[1])
put("index float key", setmetatable({}, {__index = {[2] = "two"}})[2.0])

-- __newindex: a table receives the writes; a function sees them; existing keys bypass it
local store = {}
local front = setmetatable({existing = 1}, {__newindex = store})
front.new = "n"
front.existing = 2
put("newindex table", rawget(front, "new"), store.new, front.existing, store.existing)
local log = {}
local watched = setmetatable({}, {__newindex = function(t, k, v)
  log[#log + 1] = tostring(k) .. "=" .. tostring(v)
  rawset(t, k, v)
end})
watched.a = 1
watched.b = 2
watched.a = 3 -- exists now: no event
put("newindex fn", table.concat(log, ","), watched.a)
local chain_end = {}
local chained = setmetatable({}, {__newindex = setmetatable({}, {__newindex = chain_end})})
chained.deep = true
put("newindex chain", chain_end.deep, rawget(chained, "deep"))
rawset(front, "raw", "r")
put("rawset", rawget(front, "raw"), store.raw)

-- __call
local callable = setmetatable({name = "c"}, {__call = function(self, a, b)
  return self.name, a, b, a + b
end})
put("call", callable(2, 3))
put("call pcall", pcall(callable, 10, 20))
local nested_call = setmetatable({}, {__call = callable})
put("call nested", pcall(nested_call, 1))

-- __concat: either side, with numbers and strings
local cc = setmetatable({}, {__concat = function(a, b)
  local function s(x) return type(x) == "table" and "T" or tostring(x) end
  return s(a) .. "+" .. s(b)
end})
put("concat", cc .. "x", "x" .. cc, 1 .. cc, cc .. cc, "a" .. "b" .. cc)

-- __eq: only between two tables (or two userdata), result made a boolean; rawequal skips it
local eqmt = {__eq = function(a, b) return a.v == b.v and "yes" end}
local e1, e2 = setmetatable({v = 1}, eqmt), setmetatable({v = 1}, eqmt)
local e3 = setmetatable({v = 2}, eqmt)
put("eq", e1 == e2, e1 == e3, e1 ~= e2, rawequal(e1, e2), e1 == 1, e1 == e1)
local eqcount = 0
local eqonce = {__eq = function() eqcount = eqcount + 1 return true end}
local plain = {}
put("eq one side", setmetatable({}, eqonce) == plain, plain == setmetatable({}, eqonce), eqcount)

-- __lt and __le (5.4: __le does not fall back to __lt)
local function val(x) return type(x) == "table" and x.v or x end
local ordmt = {
  __lt = function(a, b) return val(a) < val(b) end,
  __le = function(a, b) return val(a) <= val(b) end,
}
local o1, o2 = setmetatable({v = 1}, ordmt), setmetatable({v = 2}, ordmt)
put("lt le", o1 < o2, o2 < o1, o1 <= o1, o2 > o1, o1 >= o2, o1 < 5, 0 < o1, o1 <= 1)
local ltonly = {__lt = function() return true end}
put("le needs __le", perr(function()
  return setmetatable({}, ltonly) <= setmetatable({}, ltonly)
end))
put("lt mixed", perr(function() return {} < 1 end))

-- __len, rawlen
local sized = setmetatable({1, 2, 3}, {__len = function() return 42 end})
put("len", #sized, rawlen(sized), rawlen("abcd"),
    #setmetatable({}, {__len = function() return "x" end}))

-- arithmetic, bitwise and unary events, with the table on either side
local ops = {}
local arith = {}
for _, ev in ipairs({"add", "sub", "mul", "div", "mod", "pow", "idiv", "band", "bor", "bxor",
                     "shl", "shr", "unm", "bnot"}) do
  arith["__" .. ev] = function(a, b)
    local function s(x) return type(x) == "table" and "T" or tostring(x) end
    return ev .. "(" .. s(a) .. "," .. s(b) .. ")"
  end
end
local A = setmetatable({}, arith)
ops[#ops + 1] = A + 1
ops[#ops + 1] = 1 - A
ops[#ops + 1] = A * A
ops[#ops + 1] = 2 / A
ops[#ops + 1] = A % 3
ops[#ops + 1] = A ^ 2
ops[#ops + 1] = 7 // A
ops[#ops + 1] = A & 1
ops[#ops + 1] = 1 | A
ops[#ops + 1] = A ~ 2
ops[#ops + 1] = A << 1
ops[#ops + 1] = 1 >> A
ops[#ops + 1] = -A
ops[#ops + 1] = ~A
put("arith", table.concat(ops, " "))
put("bitwise on strings", perr(function() return "3" & 1 end))
put("bitwise on float", 3.0 | 0, perr(function() return 1.5 | 0 end))
put("arith no mm", perr(function() return {} + 1 end))
put("arith no mm 2", perr(function() local t = {} return t.x + 1 end))
put("bitwise no mm", perr(function() return {} & 1 end))

-- __close: order, the error passed in, on break and on return
local closelog = {}
local function closer(name)
  return setmetatable({}, {__close = function(_, err)
    local why = err == nil and "nil" or gsub(tostring(err), "^.-:%d+: ", "")
    closelog[#closelog + 1] = name .. ":" .. why
  end})
end
do
  local a <close> = closer("a")
  local b <close> = closer("b")
  local c <const> = 1
  closelog[#closelog + 1] = "body" .. c
end
for i = 1, 3 do
  local x <close> = closer("loop" .. i)
  if i == 2 then break end
end
local function withreturn()
  local r <close> = closer("ret")
  return "returned"
end
local returned = withreturn() -- closes "ret" first
closelog[#closelog + 1] = returned
put("close err", pcall(function()
  local e <close> = closer("err")
  error("boom")
end))
local nilclose <close> = nil -- nil and false are allowed
put("close", table.concat(closelog, ","))
put("close bad", perr(load("local x <close> = {} return 1", "=closebad")))
put("close compile", load("local x <close>, y <close> = 1, 2", "=multi"))

-- __tostring and __name
local named = setmetatable({}, {__name = "MyType"})
put("name", (tostring(named):match("^(%w+): ")), perr(function() return named + 1 end))
put("name compare", perr(function() return named < named end))
put("tostring mm", tostring(setmetatable({}, {__tostring = function() return "custom" end})))
put("tostring bad", perr(tostring, setmetatable({}, {__tostring = function() return {} end})))
put("name not string", (tostring(setmetatable({}, {__name = 1})):match("^(%a+):")))

-- __metatable protects the metatable
local guarded = setmetatable({}, {__metatable = "locked"})
put("metatable field", getmetatable(guarded), perr(setmetatable, guarded, {}))
put("setmetatable arg 1", perr(setmetatable, 1, {}))
put("setmetatable arg 2", perr(setmetatable, {}, 1))
put("setmetatable returns", rawequal(setmetatable(base, nil), base), getmetatable(base))

-- __pairs
local pairsed = setmetatable({}, {__pairs = function(t)
  local i = 0
  return function()
    i = i + 1
    if i <= 3 then return i, i * 10 end
  end, t, nil
end})
local seen = {}
for k, v in pairs(pairsed) do seen[#seen + 1] = k .. "=" .. v end
put("pairs mm", table.concat(seen, ","))

-- __index on a function through debug.setmetatable, with the metatable of strings
put("rawequal", rawequal("a", "a"), rawequal({}, {}), rawequal(1, 1.0), rawequal(0, -0))
put("rawget arg", perr(rawget, 1, 2))
put("rawlen arg", perr(rawlen, 5))

-- a small class with inheritance
local Animal = {}
Animal.__index = Animal
function Animal.new(name, sound) return setmetatable({name = name, sound = sound}, Animal) end
function Animal:speak() return self.name .. " says " .. self.sound end
local Dog = setmetatable({}, {__index = Animal})
Dog.__index = Dog
function Dog.new(name) local d = Animal.new(name, "woof") return setmetatable(d, Dog) end
function Dog:fetch() return self.name .. " fetches" end
local d = Dog.new("rex")
put("class", d:speak(), d:fetch(), getmetatable(d) == Dog, perr(function() return d:fly() end))

-- Now change what the next chunk would see.  A new state (and a reused one) starts without it.
string.extra_field = "leaked"
local smt = getmetatable("")
smt.__add = function() return "hijacked add" end
smt.__index = function(_, k) return function() return "hijacked " .. k end end
debug.setmetatable(nil, {__index = function() return "nil indexed" end,
                         __concat = function() return "nil concat" end})
debug.setmetatable(true, {__len = function() return 99 end})
debug.setmetatable(0, {__index = math, __call = function() return "number called" end})
debug.setmetatable(print, {__index = function() return "function indexed" end})
debug.setmetatable(coroutine.running(), {__index = function() return "thread indexed" end})
setmetatable(math, {__index = function(_, k) return "ghost math." .. k end})
math.maxinteger = 2^63 -- equal to Lua for most uses, but a float
local real_string = string
string = {format = function() return "fake format" end}
local G = _G
G._G = nil
setmetatable(G, {__index = function(_, k) return "ghost " .. k end})
put("changed", undefined_global, ("x"):rep(3), (nil).field, #true, (5).floor, (7)(), print.x,
    coroutine.running().x, math.nonexistent, math.type(math.maxinteger), string.format("%d", 7),
    rawget(G, "_G"))
-- and last, a metatable of strings that is another table altogether
debug.setmetatable("", {__index = {rep = function() return "other metatable" end}})
put("changed 2", ("x"):rep(2), real_string.rep("x", 2))

return concat(out, "\n")
