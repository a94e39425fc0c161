-- Fidelity: goto and labels: continue, breaking out of nested loops, backward jumps, closures
-- made in a loop built with goto, labels at the end of blocks, and the compiler's messages for
-- the jumps Lua refuses.  Returns one line per check.  Runs under the sandbox too.

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

put("global before", type(goto_total))

-- continue
local odds = {}
for i = 1, 10 do
  if i % 2 == 0 then goto continue end
  odds[#odds + 1] = i
  ::continue::
end
put("continue", table.concat(odds, ","))

-- continue in while and repeat
local w, wl = 0, {}
while w < 6 do
  w = w + 1
  if w == 3 then goto next_w end
  wl[#wl + 1] = w
  ::next_w::
end
local r, rl = 0, {}
repeat
  r = r + 1
  if r % 3 == 0 then goto next_r end
  rl[#rl + 1] = r
  ::next_r::
until r >= 7
put("while repeat", table.concat(wl, ","), table.concat(rl, ","))

-- break out of nested loops
local found
for i = 1, 5 do
  for j = 1, 5 do
    if i * j == 12 then
      found = i .. "x" .. j
      goto done
    end
  end
end
::done::
put("nested break", found)

-- a loop made of a backward goto
local n, acc = 0, {}
::top::
n = n + 1
acc[#acc + 1] = n
if n < 5 then goto top end
put("backward", table.concat(acc, ","))

-- closures made in a goto loop capture a fresh local each time
local fns = {}
do
  local i = 1
  ::again::
  local x = i * 10
  fns[#fns + 1] = function() return x end
  if i < 3 then
    i = i + 1
    goto again
  end
end
put("closures", fns[1](), fns[2](), fns[3]())

-- a label at the end of a block may follow local declarations (void statements after it)
local after
do
  local k = 0
  ::loop::
  k = k + 1
  if k < 3 then goto loop end
  after = k
  goto finish
  local skipped = 1
  after = skipped
  ::finish::
end
put("end of block", after)

-- state machine
local function machine(input)
  local i, path = 0, {}
  ::s_start::
  i = i + 1
  local c = input:sub(i, i)
  if c == "" then goto s_end end
  if c == "a" then path[#path + 1] = "A" goto s_start end
  if c == "b" then path[#path + 1] = "B" goto s_b end
  path[#path + 1] = "?"
  goto s_start
  ::s_b::
  path[#path + 1] = "b-state"
  goto s_start
  ::s_end::
  return table.concat(path, " ")
end
put("machine", machine("abxa"))

-- goto in nested functions and same-named labels in different blocks
local function twice()
  local count = 0
  do
    goto l
    count = count + 100
    ::l::
    count = count + 1
  end
  do
    goto l
    count = count + 100
    ::l::
    count = count + 1
  end
  return count
end
put("same label", twice())

-- what the compiler refuses: the message text
local function compile(src)
  local f, err = load(src, "=snippet")
  return f ~= nil, err
end
put("into local scope", compile("goto l; local x; ::l:: x = 1"))
put("no label", compile("goto nowhere"))
put("duplicate label", compile("::a:: ::a::"))
put("into block", compile("goto inner; do ::inner:: end"))
put("out of function", compile("::outer:: local function f() goto outer end"))
put("continue in repeat", compile("repeat local x = 1; goto cont; ::cont:: until x"))
put("label at end ok", compile("do goto e; local z; ::e:: end return 1"))
put("goto is reserved", compile("local goto = 1"))
put("label syntax", compile("::1::"))

-- a global on purpose
goto_total = #odds + #acc
put("global after", goto_total)

return table.concat(out, "\n")
