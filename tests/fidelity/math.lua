-- Fidelity: integers and floats: math.type, // and % with signs, wraparound, conversions
-- between floats, integers and strings, tostring of floats, the math library, bitwise
-- operators and numeric for loops.  Returns one line per check.  Runs under the sandbox too.

local out = {}

local function show(v)
  local t = type(v)
  if t == "string" then
    return (string.format("%q", v):gsub("\\\n", "\\n"))
  elseif t == "number" then
    return math.type(v) .. ":" .. tostring(v)
  elseif t == "boolean" or t == "nil" then
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

put("global before", type(math_results))

-- math.type
put("type", math.type(1), math.type(1.0), math.type("1"), math.type(2^31), math.type(1 // 1),
    math.type(1 / 1), math.type(3 % 2.0))

-- division, floor division and modulo with every sign combination
local idiv, mod, fmod = {}, {}, {}
for _, a in ipairs({7, -7}) do
  for _, b in ipairs({2, -2}) do
    idiv[#idiv + 1] = a // b
    mod[#mod + 1] = a % b
  end
end
put("idiv int", table.concat(idiv, " "))
put("mod int", table.concat(mod, " "))
put("idiv float", 7.0 // 2, -7.0 // 2, 7 // -2.0, 7.5 // 2, -0.5 // 1, 1 // 0.0, -1 // 0.0)
put("mod float", 5.5 % 2, -5.5 % 2, 5.5 % -2, 5 % 1.5, -0.0 % 1, 3 % math.huge, -3 % math.huge)
put("div", 3 / 2, 4 / 2, 1 / 0, -1 / 0, 0 / 0 ~= 0 / 0, 2^2, 2^0.5, (-8)^(1/3) ~= (-8)^(1/3))
put("zero", perr(function() local z = 0 return 1 // z end))
put("zero mod", perr(function() local z = 0 return 1 % z end))
put("zero float", 1 % 0.0 ~= 1 % 0.0, 1.0 // 0)

-- integer wraparound and limits
local maxi, mini = math.maxinteger, math.mininteger
put("limits", maxi, mini, maxi + 1 == mini, mini - 1 == maxi, maxi * 2, mini * -1, -mini)
put("limits 2", mini // -1, mini % -1, math.abs(mini), maxi // 1, mini // 1.0)
put("literals", 0x7fffffffffffffff, 0xffffffffffffffff, 0x10000000000000000,
    9223372036854775807, 9223372036854775808, -9223372036854775808, 1e2, 0x1p4, 0x.8)
put("comparisons", maxi < 2^63, maxi + 0.0 == 2^63, maxi == maxi + 0.0, mini == -2^63,
    1 == 1.0, 2^53 == 2^53 + 1, (2^53 | 0) + 1 == 2^53 + 1, -0.0 == 0)
put("int float order", 1 < 1.5, maxi < math.huge, mini > -math.huge, 3 <= 3.0, 2^63 > maxi)

-- float to integer conversions
put("tointeger", math.tointeger(3.0), math.tointeger(3.5), math.tointeger(2^63),
    math.tointeger(-2^63), math.tointeger("8"), math.tointeger({}), math.tointeger(-0.0))
put("floor ceil", math.floor(3.7), math.floor(-3.7), math.ceil(3.2), math.ceil(-3.2),
    math.floor(2^70), math.ceil(-2^70), math.floor(5), math.floor(-0.0))
put("conversions", 3.0 | 0, 2^53 | 0, perr(function() return 2^63 | 0 end))
put("float keys", ({[1] = "int"})[1.0], ({[2^53] = "big"})[2^53 | 0], next({[3.0] = true}))
put("string format int", string.format("%d", 3.0),
    perr(function() return string.format("%d", 3.5) end))

-- tostring of floats (%.14g) and of integers
put("tostring", tostring(1e15), tostring(1e16), tostring(2^53), tostring(0.1), tostring(-0.0),
    tostring(1 / 0), tostring(-1 / 0), tostring(100.0), tostring(1e100),
    tostring(123456789012345.0),
    tostring(1 / 3), tostring(-1e-300), tostring(5e-324), tostring(2^-1074 * 2))
put("nan", tostring(0 / 0) == tostring(0 / 0), (0 / 0) ~= (0 / 0))

-- string <-> number coercion and tonumber
put("coercion", "10" + 1, "10.0" + 1, "0x10" * 1, " 5 " * 2, "1e1" + 0, 10 .. "", 1.5 .. "",
    -0.0 .. "", 2^63 .. "")
put("tonumber", tonumber("0x10"), tonumber("  10  "), tonumber("10e"), tonumber("1e1"),
    tonumber(""), tonumber("0x1p4"), tonumber("inf"), tonumber("nan"), tonumber(" -0x10 "),
    tonumber("1 2"), tonumber("9223372036854775808"), tonumber("0x"), tonumber(".5"),
    tonumber("5."))
put("tonumber base", tonumber("z", 36), tonumber("ff", 16), tonumber("FF", 16), tonumber("8", 8),
    tonumber("777", 8), tonumber("  11  ", 2), tonumber("1.5", 10), tonumber("-ff", 16),
    tonumber("zzzzzzzzzzzzz", 36))
put("tonumber types", tonumber(5), tonumber(5.5), tonumber(nil), tonumber(true), tonumber({}))
put("tonumber errors", perr(function() return tonumber("10", 99) end))
put("tonumber errors 2", perr(function() return tonumber(10, 16) end))

-- the math library
put("fmod", math.fmod(7, 3), math.fmod(-7, 3), math.fmod(7, -3), math.fmod(-7.5, 2),
    math.fmod(mini, -1), math.fmod(5.5, math.huge))
put("fmod zero", perr(function() return math.fmod(1, 0) end))
put("fmod zero float", math.fmod(1, 0.0) ~= math.fmod(1, 0.0))
put("ult", math.ult(1, -1), math.ult(-1, 1), math.ult(1, 2), math.ult(maxi, mini))
put("abs", math.abs(-5), math.abs(-5.5), math.abs(mini), math.abs(-0.0))
put("max min", math.max(1, 2.5), math.max(3, 1, 2), math.min(1, 2.5), math.min(-0.0, 0),
    math.max(2, 2.0), math.min(2.0, 2), perr(function() return math.max() end))
put("constants", math.huge, -math.huge, math.pi, string.format("%.15f", math.pi))
put("sqrt exp log", math.sqrt(16), math.sqrt(2), math.exp(0), math.log(1), math.log(8, 2),
    math.log(100, 10), math.log(27, 3), math.log(0), math.exp(1))
put("trig", math.sin(0), math.cos(0), string.format("%.10f", math.sin(math.pi / 6)),
    math.tan(0), string.format("%.10f", math.atan(1) * 4), math.atan(1, 1) == math.pi / 4,
    math.atan(0, -1) == math.pi, math.asin(1) == math.pi / 2, math.acos(1))
put("modf", math.modf(3.7), math.modf(-3.7), math.modf(5), math.modf(math.huge), math.modf(-0.5))
put("random types", math.type(math.random(10)), math.type(math.random()), math.random(5, 5),
    math.random(1, 1) == 1)
math.randomseed(12345)
local seq1 = {}
for i = 1, 5 do seq1[i] = math.random(1000) end
math.randomseed(12345)
local same = true
for i = 1, 5 do same = same and seq1[i] == math.random(1000) end
put("random seeded", same)
put("random errors", perr(function() return math.random(2, 1) end))
put("random errors 2", perr(function() return math.random(1, 2, 3) end))

-- bitwise operators
put("bitwise", 0xF0 & 0x3C, 0xF0 | 0x0F, 0xF0 ~ 0xFF, ~0, ~5, 1 << 63, 1 << 64, 1 << -1,
    -1 >> 1, -1 >> 63, -1 >> 64, 2 >> -1, 5 // 0.0 == math.huge)
put("bitwise floats", 2.0 | 1, 2^62 | 0, "shift " .. (3 << 2))
put("precedence", 2 + 3 * 4 ^ 2 / 8, -2 ^ 2, not nil == true, 1 .. 2 == "12", 2^3^2,
    1 + 2 << 1, 5 & 3 | 8, 7 - 3 - 2, 2 * 3 % 4)

-- numeric for loops: float steps, limits near overflow, loops that do not run
local fl = {}
for x = 1, 2, 0.25 do fl[#fl + 1] = x end
put("for float", table.concat(fl, " "))
local cnt = 0
for i = maxi - 2, maxi do cnt = cnt + 1 end
for i = mini + 2, mini, -1 do cnt = cnt + 1 end
put("for limits", cnt)
local none = 0
for i = 3, 1 do none = none + 1 end
for i = 1, 0.5 do none = none + 1 end
put("for none", none)
local ints = {}
for i = 1, 3.9 do ints[#ints + 1] = math.type(i) .. i end
for i = 1.0, 2 do ints[#ints + 1] = math.type(i) .. i end
put("for types", table.concat(ints, " "))
local down = {}
for i = 10, 1, -3 do down[#down + 1] = i end
put("for down", table.concat(down, ","))
local big = 0
for i = 1, math.huge do big = big + 1 if big == 5 then break end end
put("for huge", big)

-- a sum that needs integer and float arithmetic to stay apart
local isum, fsum = 0, 0.0
for i = 1, 1000 do isum = isum + i * i; fsum = fsum + 1 / i end
put("sums", isum, string.format("%.12f", fsum))

math_results = {isum, fsum}
put("global after", #math_results)

return table.concat(out, "\n")
