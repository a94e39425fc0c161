-- Fidelity: the collector as a script sees it: what collectgarbage's options return (never the
-- heap size, which differs between states), weak tables (__mode "k", "v", "kv", ephemerons)
-- cleared by a full collection.  It ends with the collector stopped, in generational mode and
-- with other parameters: a reused state must start the next run as a new state would.
-- No __gc here (finalizers.lua has them: they make luapool close the state).

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

-- the collector's state in a new state; the end of the program changes all of it
put("running", collectgarbage("isrunning"))
put("mode", collectgarbage("incremental"), collectgarbage("incremental"))
put("pause", collectgarbage("setpause", 150), collectgarbage("setpause", 200))
put("stepmul", collectgarbage("setstepmul", 300), collectgarbage("setstepmul", 100))

-- what the options return (types only where the value depends on the heap)
local kb = collectgarbage("count")
put("count", math.type(kb), kb > 0, select("#", collectgarbage("count")))
put("collect", collectgarbage(), collectgarbage("collect"), select("#", collectgarbage()))
put("step", type(collectgarbage("step")), collectgarbage("step", 1000000))
put("stop", collectgarbage("stop"), collectgarbage("isrunning"))
put("restart", collectgarbage("restart"), collectgarbage("isrunning"))
put("generational", collectgarbage("generational"), collectgarbage("generational"),
    collectgarbage("incremental"))
put("generational args", collectgarbage("generational", 20, 100),
    collectgarbage("incremental", 200, 100, 13))
put("bad option", pcall(collectgarbage, "nonsense"))
put("bad option 2", pcall(function() return collectgarbage(1) end))

-- weak tables: objects made inside functions, so no register still holds them
local weak_k = setmetatable({}, {__mode = "k"})
local weak_v = setmetatable({}, {__mode = "v"})
local weak_kv = setmetatable({}, {__mode = "kv"})
local strong_key, strong_val = {}, {}
local function fill()
  for i = 1, 10 do
    weak_k[{}] = i
    weak_v[i] = {}
    weak_kv[{}] = {}
  end
  weak_k[strong_key] = "kept key"
  weak_v.kept = strong_val
  weak_v.str = "strings are values"
  weak_v.num = 42
  weak_v.bool = true
  weak_v.fn = print or tostring -- reachable from the globals: kept
  weak_kv[strong_key] = strong_val
end
fill()
local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end
put("before collect", count(weak_k), count(weak_v), count(weak_kv))
collectgarbage()
put("after collect", count(weak_k), count(weak_v), count(weak_kv))
put("kept", weak_k[strong_key], weak_v.kept == strong_val, weak_v.str, weak_v.num, weak_v.bool,
    type(weak_v.fn), weak_kv[strong_key] == strong_val)

-- ephemerons: a value that refers to its own key does not keep the key
local eph = setmetatable({}, {__mode = "k"})
local function fill_eph()
  for i = 1, 5 do
    local k = {}
    eph[k] = {key = k, i = i}
  end
  local chain_a, chain_b = {}, {}
  eph[chain_a] = chain_b
  eph[chain_b] = "b's value"
end
fill_eph()
local kept_key = {}
eph[kept_key] = {kept_key}
put("ephemeron before", count(eph))
collectgarbage()
put("ephemeron after", count(eph), eph[kept_key][1] == kept_key)

-- a weak-valued cache used as a memo table
local cache = setmetatable({}, {__mode = "v"})
local made = 0
local function get(k)
  local v = cache[k]
  if not v then
    made = made + 1
    v = {k}
    cache[k] = v
  end
  return v
end
local hold = get("a")
get("b")
get("a")
collectgarbage()
get("a")
get("b")
put("memo", made, hold[1])

-- a weak table changed to strong and back
local flip = setmetatable({}, {__mode = "v"})
local mt = getmetatable(flip)
local function fill_flip() for i = 1, 3 do flip[i] = {} end end
fill_flip()
mt.__mode = nil -- the mode is read at collection time
collectgarbage()
put("flip strong", count(flip))
mt.__mode = "v"
collectgarbage()
put("flip weak", count(flip))

-- collecting in a loop keeps the results deterministic
local survivors = setmetatable({}, {__mode = "k"})
local anchors = {}
for i = 1, 50 do
  local o = {}
  survivors[o] = i
  if i % 5 == 0 then anchors[#anchors + 1] = o end
end
collectgarbage()
collectgarbage()
local total = 0
for _, v in pairs(survivors) do total = total + v end
put("survivors", count(survivors), total)

-- warn is there; its output goes to stderr, so only what it returns is checked
put("warn", select("#", warn("@off")), pcall(warn))

-- leave the collector changed: stopped, generational, other parameters
collectgarbage("incremental", 400, 400, 20)
collectgarbage("setpause", 1000)
collectgarbage("generational", 50, 50)
collectgarbage("stop")
put("left", collectgarbage("isrunning"))

return table.concat(out, "\n")
