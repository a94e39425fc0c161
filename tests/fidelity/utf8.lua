-- Fidelity: the utf8 library: char, charpattern, codes, codepoint, len (with invalid bytes and
-- lax mode), offset, and their errors; UTF-8 escapes in string literals.  Returns one line per
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

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02X", c:byte()) end))
end

put("global before", type(utf8_last))

-- char
put("char", hex(utf8.char(72, 228, 8364, 128512)), utf8.char(), hex(utf8.char(0)),
    hex(utf8.char(0x7F, 0x80, 0x7FF, 0x800, 0xFFFF, 0x10000, 0x10FFFF)))
put("char big", hex(utf8.char(0x110000)), hex(utf8.char(0x7FFFFFFF)))
put("char errors", perr(function() return utf8.char(-1) end))
put("char errors 2", perr(function() return utf8.char(0x80000000) end))
put("char errors 3", perr(function() return utf8.char("x") end))

-- charpattern
put("charpattern", hex(utf8.charpattern))
local s = "héllo wörld €😀"
local chars = {}
for c in s:gmatch(utf8.charpattern) do chars[#chars + 1] = c end
put("charpattern gmatch", #chars, chars[2], chars[#chars])

-- escapes in literals
put("escapes", hex("\u{48}\u{E9}\u{20AC}\u{1F600}"), hex("\u{7FFFFFFF}"), "\u{41}" == "A")

-- codes
local cps = {}
for p, c in utf8.codes(s) do cps[#cps + 1] = p .. ":" .. c end
put("codes", table.concat(cps, " "))
put("codes invalid", perr(function() for _ in utf8.codes("ab\xffcd") do end end))
put("codes continuation", perr(function() for _ in utf8.codes("\x80") do end end))
put("codes overlong", perr(function() for _ in utf8.codes("\xC0\x80") do end end))
put("codes surrogate", perr(function() for _ in utf8.codes("\u{D800}") do end end))
local lax = {}
for _, c in utf8.codes("\u{D800}\u{7FFFFFFF}", true) do lax[#lax + 1] = c end
put("codes lax", table.concat(lax, " "))
local empty_count = 0
for _ in utf8.codes("") do empty_count = empty_count + 1 end
put("codes empty", empty_count)

-- codepoint
put("codepoint", utf8.codepoint(s), utf8.codepoint(s, 2), utf8.codepoint(s, -4))
put("codepoint range", utf8.codepoint("abc€", 1, -1))
put("codepoint empty", select("#", utf8.codepoint("abc", 2, 1)),
    select("#", utf8.codepoint("", 1, 0)))
put("codepoint errors", perr(function() return utf8.codepoint("\xff") end))
put("codepoint errors 2", perr(function() return utf8.codepoint("abc", 5) end))
put("codepoint errors 3", perr(function() return utf8.codepoint("\u{D800}") end))
put("codepoint lax", utf8.codepoint("\u{D800}", 1, 1, true),
    utf8.codepoint("\u{7FFFFFFF}", 1, 1, true))
put("codepoint continuation", perr(function() return utf8.codepoint("é", 2) end))

-- len, with invalid bytes
put("len", utf8.len(s), utf8.len(""), utf8.len("abc"), utf8.len(s, 3), utf8.len(s, 1, 2),
    utf8.len(s, -4), utf8.len("abc", 4))
put("len invalid", utf8.len("ab\xffcd"))
put("len invalid 2", utf8.len("\xe2\x82"))
put("len invalid 3", utf8.len("ok\xC0\x80"))
put("len invalid 4", utf8.len("\xF4\x90\x80\x80"))
put("len continuation start", utf8.len("é", 2))
put("len surrogate", utf8.len("\u{D800}"))
put("len lax", utf8.len("\u{D800}", 1, -1, true), utf8.len("\u{7FFFFFFF}", 1, -1, true))
put("len errors", perr(function() return utf8.len("abc", 5) end))
put("len errors 2", perr(function() return utf8.len("abc", 1, 4) end))

-- offset
put("offset", utf8.offset(s, 1), utf8.offset(s, 2), utf8.offset(s, 3), utf8.offset(s, -1),
    utf8.offset(s, -2), utf8.offset(s, 0, 3), utf8.offset(s, 0, 2), utf8.offset(s, 100))
put("offset end", utf8.offset("abc", 4), utf8.offset("abc", 5), utf8.offset("abc", -3),
    utf8.offset("abc", -4), utf8.offset("", 1), utf8.offset("", -1))
put("offset from", utf8.offset(s, 2, 4), utf8.offset(s, -1, 4))
put("offset errors", perr(function() return utf8.offset("é", 1, 2) end))
put("offset errors 2", perr(function() return utf8.offset("abc", 1, 10) end))

-- walking a string both ways with offset and codepoint
local forward = {}
local i = 1
while i <= #s do
  forward[#forward + 1] = utf8.codepoint(s, i)
  i = utf8.offset(s, 2, i)
end
local backward = {}
local n = utf8.len(s)
for k = n, 1, -1 do backward[#backward + 1] = utf8.codepoint(s, utf8.offset(s, k)) end
put("walk", table.concat(forward, ","), table.concat(backward, ","))

-- reversing by characters, upper-casing only ASCII
local rev = {}
for _, c in utf8.codes(s) do table.insert(rev, 1, utf8.char(c)) end
put("reverse", table.concat(rev), s:upper())

-- lengths of more than the guard's slice (1 MiB): characters across a slice's end, a bad byte
-- there, a run of continuation bytes there, lax codes, positions
local M = 1 << 20
local function lens(t, ...)
  local r = {}
  for _, a in ipairs({...}) do
    local n, at = utf8.len(t, a[1], a[2], a[3])
    r[#r + 1] = show(n) .. "/" .. show(at)
  end
  return table.concat(r, " ")
end
local function msg(f)
  local ok, e = pcall(f)
  return tostring(ok) .. ":" .. tostring(e)
end
local wide = ("a\u{e9}\u{20ac}\u{1f600}"):rep(M // 5) -- 10 bytes a round: ends fall everywhere
put("len wide", lens(wide, {}, {2}, {3, -1}, {M - 3}, {M + 1, -M}, {-M - 7}, {1, M + 2},
    {M + 1}, {2 * M - 1, -2}))
for shift = 0, 9 do
  local t = ("x"):rep(M - 5 + shift) .. "\u{1f600}" .. ("y"):rep(M)
  local bad = ("x"):rep(M - 2 + shift) .. "\xff" .. ("y"):rep(M)
  local run = ("x"):rep(M - 3 + shift) .. ("\x80"):rep(12) .. ("y"):rep(M)
  local lead = ("x"):rep(M - 3 + shift) .. "\xf0\x9f" .. ("y"):rep(M)
  put("len slice end " .. shift, lens(t, {}), lens(bad, {}, {2}), lens(run, {}),
      lens(lead, {}, {M}))
end
local lax = ("\xfd\xbf\xbf\xbf\xbf\xbf"):rep(M // 4) -- 0x7FFFFFFF: lax only
put("len lax", lens(lax, {}, {1, -1, true}, {7, -1, true}))
local sur = ("z"):rep(M + 100) .. "\xed\xa0\x80" .. ("z"):rep(10)
put("len surrogate", lens(sur, {}, {1, -1, true}))
put("len errors", msg(function() utf8.len(wide, 0) end),
    msg(function() utf8.len(wide, #wide + 2) end),
    msg(function() utf8.len(wide, 1, #wide + 1) end), lens(wide, {#wide + 1}),
    msg(function() utf8.len(wide, 1.5) end))

utf8_last = utf8.len(s)
put("global after", utf8_last)

return table.concat(out, "\n")
