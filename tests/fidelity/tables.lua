-- Fidelity: the table library: insert, remove, move, concat, unpack, pack and sort (with and
-- without a comparator, 1000 elements from a linear congruential generator), metamethods seen
-- by the table functions, the length of sequences, and next/pairs/ipairs.  Returns one line per
-- check.  Runs under the sandbox too.

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

local function perr(f)
  local ok, e = pcall(f)
  return ok, e
end

local function list(t, n)
  local parts = {}
  for i = 1, n or #t do parts[i] = tostring(t[i]) end
  return "{" .. table.concat(parts, ",") .. "}"
end

put("global before", type(tables_seen))

-- insert and remove
local t = {}
table.insert(t, "a")
table.insert(t, "c")
table.insert(t, 2, "b")
table.insert(t, 1, "start")
table.insert(t, #t + 1, "end")
put("insert", list(t), #t)
put("insert errors", perr(function() table.insert(t, 10, "x") end))
put("insert errors 2", perr(function() table.insert(t, 0, "x") end))
put("insert errors 3", perr(function() table.insert(t) end))
put("remove", table.remove(t), table.remove(t, 1), list(t), table.remove(t, 2), list(t))
put("remove edge", table.remove({}), table.remove({}, 0), table.remove({1}, 2), #t)
put("remove errors", perr(function() table.remove({1, 2}, 5) end))
local q = {1, 2, 3}
table.remove(q, #q + 1)
put("remove n+1", list(q))

-- move: forward, backward (overlapping), to another table, empty ranges
local m = {1, 2, 3, 4, 5}
table.move(m, 1, 3, 3)
put("move overlap up", list(m))
m = {1, 2, 3, 4, 5}
table.move(m, 3, 5, 1)
put("move overlap down", list(m))
local dst = {"x", "y"}
put("move other", list(table.move({7, 8, 9}, 1, 3, 2, dst)),
    rawequal(table.move({}, 1, 0, 1, dst), dst))
put("move empty", list(table.move({1, 2}, 2, 1, 1)))
put("move errors", perr(function() table.move({}, 1, math.maxinteger, 2) end))
put("move errors 2", perr(function() table.move({}, -1, math.maxinteger, 1) end),
    perr(function() table.move({}, 1, 2, 1, 5) end), perr(function() table.move(5, 1, 2, 1) end),
    perr(function() table.move({}, 1.5, 2, 1) end), perr(function() table.move({}, 1, 2) end),
    perr(function() table.move({}, 1, 2, 1, setmetatable({}, {__index = {}})) end))
local seen = {}
local sink = setmetatable({}, {__newindex = function(_, k, v) seen[#seen + 1] = k .. "=" .. v end})
table.move(setmetatable({}, {__index = function(_, k) return k * 10 end}), 1, 3, 5, sink)
put("move metamethods", table.concat(seen, " "), rawequal(table.move({}, 1, 0, 1, sink), sink))
-- moves longer than the guard's slice, each way
local long = {}
for i = 1, 1000 do long[i] = i end
table.move(long, 1, 900, 50)
put("move long up", long[1], long[49], long[50], long[51], long[949], long[950], long[1000], #long)
long = {}
for i = 1, 1000 do long[i] = i end
table.move(long, 50, 1000, 1)
put("move long down", long[1], long[951], long[952], long[1000], #long)

-- concat
put("concat", table.concat({1, 2, 3}), table.concat({1, 2, 3}, ", "),
    table.concat({"a", "b", "c"}, "-", 2), table.concat({"a", "b", "c"}, "-", 2, 3),
    table.concat({}, "x"), table.concat({1, 2.5, "z"}, "|"),
    table.concat({"a", "b"}, "", 3), table.concat({"a"}, ",", 1, 1))
put("concat errors", perr(function() return table.concat({1, {}, 3}) end))
put("concat errors 2", perr(function() return table.concat({1, 2}, ",", 1, 3) end))

-- unpack and pack
put("unpack", table.unpack({1, 2, 3}))
put("unpack range", table.unpack({1, 2, 3, 4}, 2, 3))
put("unpack holes", table.unpack({1, nil, 3}, 1, 3))
put("unpack empty", select("#", table.unpack({}, 1, 0)), select("#", table.unpack({1}, 3)))
put("unpack errors", perr(function() return table.unpack({}, 1, 1e8) end))
local p = table.pack(1, nil, 3, nil)
put("pack", p.n, p[1], p[2], p[3], p[4], table.pack().n)

-- sort: default order, strings, comparator, records with a deterministic tie break
local nums = {5, 3, 8, 1, 9, 2, 7, 4, 6, 0}
table.sort(nums)
put("sort", list(nums))
local strs = {"banana", "Apple", "cherry", "apple", "Banana", "", "a"}
table.sort(strs)
put("sort strings", table.concat(strs, ","))
table.sort(nums, function(a, b) return a > b end)
put("sort desc", list(nums))
local mixed = {3, 1.5, 2, -1, 2.5, 0}
table.sort(mixed)
put("sort mixed", list(mixed))
local recs = {{n = "c", a = 3}, {n = "a", a = 1}, {n = "d", a = 3}, {n = "b", a = 2},
              {n = "e", a = 1}}
table.sort(recs, function(x, y)
  if x.a ~= y.a then return x.a < y.a end
  return x.n < y.n
end)
local rs = {}
for i, r in ipairs(recs) do rs[i] = r.n .. r.a end
put("sort records", table.concat(rs, " "))
put("sort errors", perr(function() table.sort({1, "x", 2}) end))
put("sort errors 2", perr(function() table.sort({1, 2, 3}, 1) end))
put("sort small", list((function() local s = {1} table.sort(s) return s end)()),
    list((function() local s = {} table.sort(s) return s end)()))

-- 1000 elements from a linear congruential generator, with and without a comparator
local seed = 12345
local function lcg()
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed
end
local big, checksum = {}, 0
for i = 1, 1000 do
  big[i] = lcg() % 100000
  checksum = checksum + big[i] * i
end
table.sort(big)
local sorted_ok = true
for i = 2, #big do if big[i - 1] > big[i] then sorted_ok = false end end
local weighted = 0
for i = 1, #big do weighted = (weighted + big[i] * i) % 1000000007 end
put("sort 1000", sorted_ok, #big, big[1], big[2], big[500], big[999], big[1000], checksum, weighted)
table.sort(big, function(a, b) return a > b end)
put("sort 1000 desc", big[1], big[1000], big[1] >= big[2])
local words = {}
for i = 1, 300 do
  local w = {}
  for j = 1, 1 + lcg() % 5 do w[j] = string.char(97 + lcg() % 26) end
  words[i] = table.concat(w)
end
table.sort(words)
put("sort words", words[1], words[150], words[300], #words)
-- sorts big enough to be luapool's own (numbers; strings), whose results the order determines
local big2, w2 = {}, 0
for i = 1, 5000 do big2[i] = lcg() % 100000 + (i % 2 == 0 and 0.5 or 0) end
table.sort(big2)
for i = 1, #big2 do w2 = (w2 + big2[i] * i) % 1000000007 end
put("sort 5000", big2[1], big2[2], big2[2500], big2[4999], big2[5000], w2, #big2)
local words2 = {}
for i = 1, 4000 do words2[i] = tostring(lcg() % 100000) .. "k" end
table.sort(words2)
put("sort 4000 words", words2[1], words2[2], words2[2000], words2[4000], table.concat(words2, "", 1, 30))
local same = {}
for i = 1, 5000 do same[i] = i % 7 end
table.sort(same)
put("sort 5000 of 7 values", same[1], same[714], same[715], same[5000], table.concat(same, "", 700, 730))

-- the table functions respect __index, __newindex and __len (5.4)
local backing = {10, 20, 30}
local log = {}
local proxy = setmetatable({}, {
  __index = function(_, k) return backing[k] end,
  __newindex = function(_, k, v)
    log[#log + 1] = tostring(k) .. "=" .. tostring(v)
    backing[k] = v
  end,
  __len = function() return #backing end,
})
table.insert(proxy, 40)
put("proxy insert", list(backing), table.concat(log, " "))
put("proxy concat", table.concat(proxy, ","), table.unpack(proxy))
table.sort(proxy, function(a, b) return a > b end)
put("proxy sort", list(backing))
put("proxy remove", table.remove(proxy), list(backing))
table.insert(proxy, 1, 5)
put("proxy insert front", list(backing), table.remove(proxy, 1), list(backing))
table.sort(proxy)
put("proxy sort default", list(backing), #log)
put("proxy sort errors", perr(function()
  backing[2] = {}
  table.sort(proxy)
end))
backing[2] = 25
put("sort C comparator", (function() local t = {5, -3, 9, 1} table.sort(t, math.ult) return list(t) end)())
put("sort with metatable", (function()
  local t = setmetatable({3, 1, 2}, {__index = function() return 0 end})
  table.sort(t)
  return list(t)
end)())
put("sort tables with __lt", (function()
  local mt = {__lt = function(a, b) return a.v < b.v end}
  local t = {}
  for i = 1, 20 do t[i] = setmetatable({v = (i * 7) % 20}, mt) end
  table.sort(t)
  local r = {}
  for i = 1, #t do r[i] = t[i].v end
  return table.concat(r, ",")
end)())
put("sort long strings", (function()
  local base = ("y"):rep(300)
  local t = {}
  for i = 1, 50 do t[i] = base .. ((i * 13) % 50) end
  table.sort(t)
  return t[1]:sub(-3), t[50]:sub(-3)
end)())
put("insert remove shapes", perr(function() table.insert({}, 1, 2, 3) end))
put("remove errors 2", perr(function() table.remove(setmetatable({}, {__len = function() return 3 end}), 7) end))
put("proxy concat range", table.concat(proxy, "-", 2, 3), table.concat(proxy, "-", 3, 2))
put("proxy concat errors", perr(function() backing[2] = {} return table.concat(proxy) end))
backing[2] = 25
put("proxy unpack range", table.unpack(proxy, 2, 3))
put("proxy unpack empty", select("#", table.unpack(proxy, 3, 2)))
put("proxy unpack too many", perr(function()
  return table.unpack(setmetatable({}, {__len = function() return 1 << 40 end}))
end))
put("concat string", perr(function() return table.concat("abc") end))
put("unpack string", table.unpack("abc"))
put("concat maxinteger", perr(function()
  return table.concat(setmetatable({}, {__len = function() return 0 end, __index = function(_, i)
    return tostring(i % 10) end}), "", math.maxinteger - 2, math.maxinteger)
end))
put("insert not table", perr(function() table.insert(5, 1) end), perr(function() table.remove("x") end))

-- length, next, pairs, ipairs
local seq = {1, 2, 3, nil}
put("length", #seq, #{}, #{nil}, #{1, 2, nil, n = 5}, #"str")
put("next", next({}), next({10}), type(next), perr(function() return next({}, "nokey") end))
local ip = {}
for i, v in ipairs({"a", "b", nil, "d"}) do ip[#ip + 1] = i .. v end
put("ipairs", table.concat(ip, ","))
local keys = {}
for k in pairs({x = 1, y = 2, z = 3, 4, 5}) do keys[#keys + 1] = tostring(k) end
table.sort(keys)
put("pairs keys", table.concat(keys, ","))
local counted = 0
local big_hash = {}
for i = 1, 100 do big_hash["k" .. i] = i end
for k, v in pairs(big_hash) do counted = counted + v end
put("pairs sum", counted)
local cleared = {a = 1, b = 2, c = 3, d = 4}
for k in pairs(cleared) do cleared[k] = nil end -- clearing fields during traversal is allowed
put("clear in pairs", next(cleared))

-- table constructors
local ctor = {1, 2, [2] = "two", 3, [10] = 10, x = "x", ["y z"] = true, [1.0 + 1] = "float key"}
put("constructor", ctor[1], ctor[2], ctor[3], ctor[10], ctor.x, ctor["y z"])
local function va(...) return {...} end
put("constructor varargs", #va(1, 2, 3), #{va(1, 2)}, #{(va(1, 2, 3))})
local nested = {a = {b = {c = {"deep"}}}}
put("nested", nested.a.b.c[1])

tables_seen = {count = #big}
put("global after", tables_seen.count)

return table.concat(out, "\n")
