-- Fidelity: strings and patterns (find, match, gmatch, gsub, anchors, %b, %f, captures),
-- the string functions and string.format.  Returns one line per check.
-- Runs under the sandbox too: it uses no library table as a table and no getmetatable("").

local out = {}

local function show(v)
  local t = type(v)
  if t == "string" then
    return (string.format("%q", v):gsub("\\\n", "\\n"))
  elseif t == "number" or t == "boolean" or t == "nil" then
    return tostring(v)
  end
  return t -- never an address
end

local function put(label, ...)
  local parts = {label}
  for i = 1, select("#", ...) do
    parts[#parts + 1] = show((select(i, ...)))
  end
  out[#out + 1] = table.concat(parts, " ")
end

-- a global on purpose: a reused state must not still have it from the previous run
put("global before", type(strings_runs))
strings_runs = (strings_runs or 0) + 1

-- find: plain and pattern, init (negative, past the end), empty patterns
put("find 1", string.find("hello world", "o w"))
put("find 2", string.find("hello world", "o", 6))
put("find 3", string.find("hello", "l+"))
put("find 4", string.find("a.b.c", ".", 1, true))
put("find 5", string.find("a.b.c", "%.", 3))
put("find 6", string.find("abc", "b", -1))
put("find 7", string.find("abc", "b", -2))
put("find 8", string.find("", ""))
put("find 9", string.find("abc", "", 10))
put("find 10", string.find("abc", "", 4))
put("find 11", string.find("abc", "", -10))
put("find 12", string.find("a+b", "+", 1, true))
put("find 13", string.find("x(y)z", "%((%a)%)"))
put("find 14", ("hello"):find("(l)(l)"))

-- match: anchors, lazy and greedy repetition, optional, position captures, back references
put("match 1", string.match("key = value", "(%w+)%s*=%s*(%w+)"))
put("match 2", string.match("  trim me  ", "^%s*(.-)%s*$"))
put("match 3", string.match("2024-01-15", "^(%d+)-(%d+)-(%d+)$"))
put("match 4", string.match("hello", "()ll()"))
put("match 5", string.match("abc", "^b"))
put("match 6", string.match("abc", "c$"))
put("match 7", string.match("a$b^", "%$(.)%^"))
put("match 8", string.match("a^b", "a^b"))
put("match 9", string.match("<<a>><<b>>", "<<(.-)>>"))
put("match 10", string.match("<<a>><<b>>", "<<(.*)>>"))
put("match 11", string.match("colour color", "colou?r"))
put("match 12", string.match([[say "hi" or 'bye']], "([\"'])(.-)%1"))
put("match 13", string.match("aaa", "a-b"))
put("match 14", string.match("aaab", "a-b"))
put("match 15", string.match("  x", "()"))
put("match 16", string.match("hello", ".-(l+)(.*)"))
put("match 17", string.match("abc", "((a)(b))c"))
put("match 18", string.match("abc", "b", 3))
put("match 19", string.match("0x1F", "^0[xX](%x+)$"))
put("match 20", string.match("[tag]", "^%[(.*)%]$"))
put("match 21", string.match("a,b,,c", "^([^,]*),([^,]*),([^,]*),([^,]*)$"))

-- character classes and their complements
local sample = "Ab1 _.\t\n~"
for _, cls in ipairs({"%a", "%d", "%l", "%u", "%s", "%w", "%p", "%c", "%x", "%g",
                      "%A", "%D", "%S", "%W", "[%a_]", "[^%w]", "[a-z]", "[%d.]"}) do
  local hits = {}
  for i = 1, #sample do
    if sample:sub(i, i):find("^" .. cls .. "$") then hits[#hits + 1] = i end
  end
  put("class " .. cls, table.concat(hits, ","))
end

-- %b balanced and %f frontier
put("bal 1", string.match("f(a(b)c)d", "%b()"))
put("bal 2", string.gsub("x = [a [b] c] y [d]", "%b[]", "B"))
put("bal 3", string.match("no close (", "%b()"))
put("bal 4", string.find("{{}}{}", "%b{}", 2))
put("front 1", string.gsub("THE (quick) fox", "%f[%a]%a+", "W"))
put("front 2", string.find("THE (quick) fox", "%f[%l]"))
put("front 3", string.gsub("hello world from lua", "%f[%w]%w+%f[%W]", function(w) return #w end))
put("front 4", string.gsub("the cat sat on the mat", "%f[%a]the%f[%A]", "a"))
put("front 5", string.find("abc", "%f[%z]"))

-- gsub: string, %0-%9 and %% replacements, tables, functions, false/nil keep the match, limits
put("gsub 1", string.gsub("hello world", "o", "0"))
put("gsub 2", string.gsub("hello world", "o", "0", 1))
put("gsub 3", string.gsub("abc", "%w", "%0%0"))
put("gsub 4", string.gsub("abc", "", "-"))
put("gsub 5", string.gsub("hello world", "(%w+)", "<%1>"))
put("gsub 6", string.gsub("$name is $age", "%$(%w+)", {name = "Ann", age = 7}))
put("gsub 7", string.gsub("x = 1, y = 2", "(%w+) = (%w+)", "%2 = %1"))
put("gsub 8", string.gsub("abc", ".", function(c) return c:byte() .. "," end))
put("gsub 9", string.gsub("a b c", "%w", {a = false, b = "B"}))
put("gsub 10", string.gsub("a b c", "%w", function(c) if c == "b" then return nil end return 1 end))
put("gsub 11", string.gsub("100%", "%%", "%%%%"))
put("gsub 12", string.gsub("abc", "b*", "-"))
put("gsub 13", string.gsub("one two three", "(%w+) (%w+)", "%2 %1", 5))
put("gsub 14", string.gsub("abc", "(b)", "[%0|%1]"))
put("gsub 15", string.gsub("hello", "l", "L", 0))
put("gsub 16", string.gsub("x^2", "%^", "**"))
put("gsub 17", ("a.b.c"):gsub("%.", "/"))
put("gsub 18", string.gsub("abc", "()", "%1"))

-- gmatch: captures, position captures, init (5.4), anchor
local words = {}
for w in string.gmatch("one two  three", "%a+") do words[#words + 1] = w end
put("gmatch 1", table.concat(words, "|"))
local pairs_found = {}
for k, v in string.gmatch("a=1, b=2, c=3", "(%w+)=(%w+)") do
  pairs_found[#pairs_found + 1] = k .. v
end
put("gmatch 2", table.concat(pairs_found, "|"))
local positions = {}
for p in string.gmatch("banana", "()an") do positions[#positions + 1] = p end
put("gmatch 3", table.concat(positions, ","))
local fromfour = {}
for w in string.gmatch("aa bb cc dd", "%a+", 4) do fromfour[#fromfour + 1] = w end
put("gmatch 4", table.concat(fromfour, "|"))
local anchored = {}
for w in string.gmatch("aaa", "^a") do anchored[#anchored + 1] = w end
put("gmatch 5", #anchored)
local empties = 0
for _ in string.gmatch("abc", "x*") do empties = empties + 1 end
put("gmatch 6", empties)

-- malformed patterns: the message text.  Argument errors are raised from a call written in
-- Lua, so that the message names the function from the calling code ('char', not 'string.char')
local function perr(f, ...)
  local ok, e = pcall(f, ...)
  return ok, e
end
put("bad 1", perr(string.find, "a", "[a"))
put("bad 2", perr(string.find, "a", "%"))
put("bad 3", perr(string.match, "a", "(a"))
put("bad 4", perr(string.match, "a", "a)"))
put("bad 5", perr(string.gsub, "a", "(a)", "%2"))
put("bad 6", perr(string.find, "a", "%b"))
put("bad 7", perr(string.find, "a", "%f"))
put("bad 8", perr(string.gsub, "abc", "%w", "%x"))
put("bad 9", perr(string.rep, "x", -1))

-- the other string functions
put("len", string.len(""), string.len("abc"), #"a\0b", ("\0\0\0"):len())
put("sub", ("hello"):sub(2, 4), ("hello"):sub(-3), ("hello"):sub(0), ("hello"):sub(4, 2),
    ("hello"):sub(-100, 2), ("hello"):sub(3, 100), ("hello"):sub(math.mininteger, -4))
put("upper lower", string.upper("MiXeD 1!"), string.lower("MiXeD 1!"))
put("rep", string.rep("ab", 3), string.rep("ab", 3, ","), string.rep("x", 0), string.rep("", 5),
    string.rep("a", 1, "sep"))
local rbig = string.rep("abc", 400000, "-,") -- more than one of the guard's pieces
put("rep big", #rbig, rbig:sub(1, 12), rbig:sub(-12), rbig:sub(1048570, 1048590),
    rbig:sub(1999990, 2000010))
local rwide = string.rep(("y"):rep(1048577), 3, "z") -- a copy longer than a piece
put("rep wide", #rwide, rwide:sub(1048575, 1048580), rwide:sub(2097150, 2097160), rwide:sub(-3))
local rplain = string.rep("ab", 700000)
put("rep plain", #rplain, rplain:sub(1048575, 1048578), rplain:sub(-3))
put("rep one", string.rep("abc", 1, ","), string.rep("", 3, ","), string.rep(12, 3),
    string.rep("x", 2.0), string.rep("x", 3, 4))
put("rep errors", perr(string.rep, "x", 1.5), perr(string.rep), perr(string.rep, "x", 1 << 62),
    perr(string.rep, ("x"):rep(100), 1 << 40, ","), perr(string.rep, {}, 2),
    perr(string.rep, "x", 2, {}))
put("reverse", string.reverse("abc"), string.reverse(""))
put("byte", string.byte("ABC"), string.byte("ABC", 2), string.byte("ABC", -1),
    string.byte("ABC", 1, -1))
put("byte empty", select("#", string.byte("ABC", 4)), select("#", string.byte("")))
put("char", string.char(72, 105), string.char(), string.char(0, 255))
put("char err", perr(function() return string.char(256) end))
put("compare", "a" < "b", "Z" < "a", "" < "a", "abc" < "abd", "abc" < "ab", "a\0b" < "a\0c",
    "a" <= "a", "b" >= "a")
put("escapes", "\x41\66\u{48}\u{20AC}\z
               tail", "\a\b\f\v" == "\7\8\12\11", [[
first]], [==[a]]b]==])
put("concat", "a" .. "b" .. 1 .. 2, 1.5 .. "", -0.0 .. "|", 2^63 .. "", math.mininteger .. "")

-- string.format
put("fmt d", string.format("%d|%5d|%-5d|%05d|%+d|% d", 42, 42, 42, 42, 42, 42))
put("fmt i", string.format("%i %d", -7, 3.0))
put("fmt x", string.format("%x %X %#x %o %08x", 255, 255, 255, 8, -1 & 0xffff))
put("fmt f", string.format("%f %.2f %10.3f %-10.1f| %.0f %.0f", 3.14159, 2.675, 1 / 3, 2.5, 0.5,
                           1.5))
put("fmt e", string.format("%e %.3E %g %g %g %G", 12345.678, 0.00012, 1e20, 0.0001, 100000, 1e-10))
put("fmt g", string.format("%g %g %.3g %#g", 1 / 3, 2^53, 1234567, 1.0))
put("fmt a", string.format("%a %a %A %.3a", 1.0, 0.5, 255.5, 1 / 3))
put("fmt s", string.format("[%s] [%10s] [%-10s] [%.2s] [%s] [%s]", "abc", "abc", "abc", "abc", 12,
                           1.0))
put("fmt s2", string.format("%s %s %s", nil, true, false))
put("fmt s3", string.format("%s", setmetatable({}, {__tostring = function() return "obj!" end})))
put("fmt c", string.format("%c%c%c", 76, 117, 97))
put("fmt pct", string.format("100%% %s", "done"))
put("fmt q1", string.format("%q", 'he said "hi"\n\tand\0left\r\1\127\200'))
put("fmt q2", string.format("%q %q %q %q", 1, -0.0, math.mininteger, 2^63))
put("fmt q3", string.format("%q %q %q %q", 1 / 0, -1 / 0, 0.1, 255.5))
put("fmt q4", string.format("%q %q %q", true, false, nil))
put("fmt err 1", perr(function() return string.format("%d", 1.5) end))
put("fmt err 2", perr(function() return ("%d"):format("x") end))
put("fmt err 3", perr(string.format, "%y", 1))
put("fmt err 4", perr(function() return string.format("%s") end))
put("fmt err 5", perr(function() return string.format("%q", {}) end))
put("fmt err 6", perr(string.format, "%10q", "x"))
put("fmt err 7", perr(string.format, "%0100d", 1))
put("tostring", tostring(12), tostring(-0.0), tostring(1e15), tostring(1e16), tostring(0.1),
    tostring(1 / 3), tostring(100.0), tostring(2^63), tostring(-1e-7))

-- methods on string values go through the string metatable
local s = "Method"
put("methods", s:upper(), s:len(), s:rep(2, "-"), ("%d-%d"):format(1, 2), s:byte(-1))

return table.concat(out, "\n")
