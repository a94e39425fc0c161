-- Fidelity: string.pack, string.unpack and string.packsize: sizes, endianness, alignment,
-- strings, limits and their error messages.  Returns one line per check.

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

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function packhex(label, fmt, ...)
  put(label, hex(string.pack(fmt, ...)))
end

put("global before", type(pack_last))
pack_last = "set by pack"

-- integers of every size, both byte orders
packhex("i1", "<i1", -1)
packhex("B", "<B", 255)
packhex("i2 le", "<i2", -2)
packhex("i2 be", ">i2", -2)
packhex("I2", "<I2", 65535)
packhex("i3", "<i3", -3)
packhex("i4 le", "<i4", 1)
packhex("i4 be", ">i4", 1)
packhex("I4", ">I4", 0xdeadbeef)
packhex("i8", "<i8", math.mininteger)
packhex("j", ">j", -1)
packhex("J", "<J", math.maxinteger)
packhex("i16 pos", "<i16", 1)
packhex("i16 neg", ">i16", -2)
packhex("I16", "<I16", 0x0102030405060708)
packhex("T", "<T", 4096)
packhex("h H", "<h H", -1, 65535)
packhex("l L", "<l L", -5, 5)
packhex("mixed order", "<i2 >i2 =i2", 1, 1, 1)

-- floats
packhex("f", "<f", 0.25)
packhex("d le", "<d", 1.5)
packhex("d be", ">d", -2.0)
packhex("n", "<n", 3.0)
packhex("d inf", ">d", 1 / 0)
packhex("f int", "<f", 3)

-- strings
packhex("z", "z", "abc")
packhex("s1", "s1", "hi")
packhex("s4 le", "<s4", "hey")
packhex("s2 be", ">s2", "")
packhex("c5", "c5", "ab")
packhex("c3", "c3", "xyz")
packhex("c0", "c0", "")
packhex("padding x", "<i1 x i1 xx i1", 1, 2, 3)

-- alignment: '!' sets the maximum, 'X' aligns to the next option's size
packhex("align 4", "<!4 b i4", 1, 2)
packhex("align 8", "<!8 b d", 1, 1.0)
packhex("align 2", "<!2 b i8", 1, 2)
packhex("Xi4", "<!4 b Xi4 b", 1, 2)
packhex("no align", "<b i4", 1, 2)

-- packsize
put("packsize", string.packsize("<i4 i8 d"), string.packsize("!8 b d"), string.packsize("c10"),
    string.packsize("!4 b Xi4"), string.packsize(""), string.packsize("i16 i1"))

-- unpack: values and the next position, init, round trips
put("unpack i4", string.unpack("<i4", "\1\0\0\0"))
put("unpack i4 i4", string.unpack("<i4 i4", string.pack("<i4 i4", 7, -7)))
put("unpack z B", string.unpack("z B", "hello\0\42"))
put("unpack s1", string.unpack("s1", "\3abcdef"))
put("unpack init", string.unpack("<i2", "\255\255\1\0", 3))
put("unpack neg init", string.unpack("<i2", "\255\255\1\0", -2))
put("unpack I3", string.unpack("<I3", "\1\2\3"))
put("unpack i3 sign", string.unpack("<i3", "\255\255\255"))
put("unpack c", string.unpack("c2 c1", "abc"))
put("unpack d", string.unpack("<d", string.pack("<d", math.pi)) == math.pi)
put("unpack f", string.unpack("<f", string.pack("<f", 0.1)))
put("unpack i16", string.unpack("<i16", string.pack("<i16", -3)))
put("unpack I8", string.unpack("<I8", string.pack("<j", -1)))
put("unpack many", string.unpack("<!4 b i4 s1 z", string.pack("<!4 b i4 s1 z", 1, 2, "x", "yz")))
put("unpack empty", string.unpack("", "abc"))
put("unpack x", string.unpack("<x i1", "\9\8"))
local values = {}
local pos, v = 1, nil
local data = string.pack("<i2 i2 i2", 10, -20, 30)
while pos <= #data do
  v, pos = string.unpack("<i2", data, pos)
  values[#values + 1] = v
end
put("unpack loop", table.concat(values, ","), pos)

-- errors: the message text
local function perr(f)
  return pcall(f)
end
put("err size", perr(function() return string.pack("i17", 1) end))
put("err overflow", perr(function() return string.pack("<i1", 200) end))
put("err overflow 2", perr(function() return string.pack("<I2", -1) end))
put("err short", perr(function() return string.unpack("<i4", "\1\2") end))
put("err c long", perr(function() return string.pack("c2", "abc") end))
put("err z zero", perr(function() return string.pack("z", "a\0b") end))
put("err z unfinished", perr(function() return string.unpack("z", "abc") end))
put("err s1 long", perr(function() return string.pack("s1", string.rep("x", 256)) end))
put("err option", perr(function() return string.pack("y", 1) end))
put("err align", perr(function() return string.pack("!3 i4", 1) end))
put("err align 3", perr(function() return string.packsize("<!4 i3") end))
put("err X", perr(function() return string.pack("X", 1) end))
put("err init", perr(function() return string.unpack("i1", "a", 5) end))
put("err packsize var", perr(function() return string.packsize("s") end))
put("err i16 big", perr(function()
  return string.unpack("<i16", string.rep("\255", 8) .. string.rep("\1", 8))
end))
put("err arg", perr(function() return string.pack("i4", "x") end))
put("err float arg", perr(function() return string.pack("i4", 1.5) end))
put("err missing", perr(function() return string.pack("i4 i4", 1) end))

return table.concat(out, "\n")
