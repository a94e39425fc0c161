-- Fidelity: finalizers (__gc): the order they run in, objects marked only when the metatable
-- has __gc at setmetatable time, resurrection, weak tables and resurrected objects, errors in
-- finalizers (warnings, which are off), collectgarbage inside a finalizer.
-- A state that set a __gc metatable is closed by luapool at release (it is "tainted": a user
-- finalizer could run during the next user's turn), so the test expects a new state each run.

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

put("global before", type(resurrected))

local log = {}
local function logger(name)
  return {__gc = function(o) log[#log + 1] = name .. (o.tag and ("/" .. o.tag) or "") end}
end

-- finalizers run in the reverse order of marking (setmetatable calls)
local function make_three()
  setmetatable({tag = 1}, logger("a"))
  setmetatable({tag = 2}, logger("b"))
  setmetatable({tag = 3}, logger("c"))
end
make_three()
collectgarbage()
put("order", table.concat(log, " "))

-- a metatable that gets __gc after setmetatable does not mark the object;
-- one with a placeholder __gc does, and the function found at collection time runs
log = {}
local function late()
  local mt = {}
  setmetatable({}, mt)
  mt.__gc = function() log[#log + 1] = "late" end
  local mt2 = {__gc = true}
  setmetatable({}, mt2)
  mt2.__gc = function() log[#log + 1] = "placeholder" end
end
late()
collectgarbage()
put("marking", table.concat(log, " "))

-- resurrection: the finalizer stores the object; it survives and is not finalized again
log = {}
local weakv = setmetatable({}, {__mode = "v"})
local weakk = setmetatable({}, {__mode = "k"})
local function make_phoenix()
  local p = setmetatable({name = "phoenix"}, {__gc = function(o)
    log[#log + 1] = "finalized " .. o.name
    resurrected = o
  end})
  weakv[1] = p
  weakk[p] = "key"
end
make_phoenix()
collectgarbage()
put("resurrected", table.concat(log, " "), resurrected and resurrected.name, weakv[1] == nil,
    weakk[resurrected])
collectgarbage()
put("resurrected 2", weakk[resurrected], #log)
resurrected = nil
collectgarbage()
put("resurrected 3", #log)

-- errors in finalizers become warnings (off): the collection goes on
log = {}
local function make_failing()
  setmetatable({}, {__gc = function() log[#log + 1] = "before error" error("in __gc") end})
  setmetatable({}, {__gc = function() log[#log + 1] = "other" end})
  setmetatable({}, {__gc = 42})
end
make_failing()
put("failing", pcall(collectgarbage))
put("failing log", table.concat(log, " "))

-- a finalizer sees its object's fields, and objects it refers to are still there
log = {}
local function make_linked()
  local child = {name = "child"}
  setmetatable({child = child}, {__gc = function(o)
    log[#log + 1] = "parent sees " .. o.child.name
  end})
end
make_linked()
collectgarbage()
put("linked", table.concat(log, " "))

-- many objects, finalized in reverse order of creation
log = {}
local function make_many()
  local mt = {__gc = function(o) log[#log + 1] = o.i end}
  for i = 1, 20 do setmetatable({i = i}, mt) end
end
make_many()
collectgarbage()
put("many", table.concat(log, ","))

-- a finalizer that allocates and runs the collector's step
log = {}
local function make_busy()
  setmetatable({}, {__gc = function()
    local t = {}
    for i = 1, 100 do t[i] = {i} end
    log[#log + 1] = "busy " .. #t
  end})
end
make_busy()
collectgarbage()
put("busy", table.concat(log, " "))

-- __gc and __close on one object: __close at the end of the block, __gc at collection
log = {}
do
  local both <close> = setmetatable({}, {
    __close = function() log[#log + 1] = "close" end,
    __gc = function() log[#log + 1] = "gc" end,
  })
end
collectgarbage()
put("close then gc", table.concat(log, " "))

-- objects still alive at the end are finalized when the state closes: not observable here
setmetatable({}, {__gc = function() end})
keeper = setmetatable({}, {__gc = function() end})
put("global after", type(resurrected), type(keeper))

return table.concat(out, "\n")
