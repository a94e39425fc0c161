-- Fidelity: closures and upvalues (shared, per iteration, nested), varargs, multiple results,
-- tail calls, recursion and methods.  Returns one line per check.  Runs under the sandbox too.

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

put("globals before", type(closure_counter), type(make_global_counter))

-- counters: each closure has its own upvalue
local function counter(start, step)
  local n = start
  return function()
    n = n + step
    return n
  end
end
local c1, c2 = counter(0, 1), counter(100, -10)
c1(); c1(); c2()
put("counters", c1(), c2(), c1())

-- two closures sharing one upvalue
local function account(balance)
  local function deposit(x) balance = balance + x return balance end
  local function withdraw(x)
    if x > balance then return nil, "insufficient funds" end
    balance = balance - x
    return balance
  end
  return deposit, withdraw, function() return balance end
end
local dep, wd, bal = account(10)
dep(5)
put("shared", wd(3), wd(100), bal())

-- a fresh local per loop iteration, for numeric and generic for, and for while with a local
local fs = {}
for i = 1, 3 do fs[i] = function() return i end end
local gs = {}
for _, v in ipairs({"a", "b", "c"}) do gs[#gs + 1] = function() return v end end
local ws = {}
local k = 0
while k < 3 do
  k = k + 1
  local captured = k * 10
  ws[k] = function() captured = captured + 1 return captured end
end
put("per iteration", fs[1](), fs[2](), fs[3](), gs[1](), gs[3](), ws[1](), ws[1](), ws[2]())
local shared = {}
local j = 0
while j < 3 do
  j = j + 1
  shared[j] = function() return j end -- j is declared outside: one upvalue for all
end
put("one upvalue", shared[1](), shared[2](), shared[3]())

-- the loop variable modified in the body is a copy
local seen = {}
for i = 1, 3 do
  local f = function() return i end
  i = i * 100
  seen[#seen + 1] = f() .. "/" .. i
end
put("loop copy", table.concat(seen, ","))

-- three levels of nesting
local function outer(a)
  return function(b)
    return function(c)
      a = a + 1
      return a + b + c
    end
  end
end
local mid = outer(1)
local inner1, inner2 = mid(10), mid(20)
put("nested", inner1(100), inner2(100), inner1(100))

-- recursion through a local function, mutual recursion through upvalues
local function fact(n) if n <= 1 then return 1 end return n * fact(n - 1) end
local is_even, is_odd
function is_even(n) if n == 0 then return true end return is_odd(n - 1) end
function is_odd(n) if n == 0 then return false end return is_even(n - 1) end
put("recursion", fact(10), fact(20), is_even(10), is_odd(7), is_even(7))
local fib_memo = {}
local function fib(n)
  if n < 2 then return n end
  local m = fib_memo[n]
  if m then return m end
  m = fib(n - 1) + fib(n - 2)
  fib_memo[n] = m
  return m
end
put("memo", fib(80))

-- varargs
local function count(...) return select("#", ...) end
local function last(...) return select(-1, ...) end
local function pack2(...) return {...}, table.pack(...).n end
local t, n = pack2(1, nil, 3, nil)
put("varargs", count(), count(nil), count(nil, nil), count(1, nil, 3), last(1, 2, 3), #t >= 0, n)
put("select", select(2, "a", "b", "c"), select(-2, "a", "b", "c"))
local function va_tail(...) local a, b = ... return b, a, ... end
put("vararg adjust", va_tail(1, 2, 3))
local function va_upvalue(...)
  local args = table.pack(...)
  return function() return table.unpack(args, 1, args.n) end
end
put("vararg keep", va_upvalue("x", nil, "z")())

-- multiple results: truncation, in tables, in calls, in the middle of a list
local function three() return 1, 2, 3 end
put("multi", (three()), three(), "|", three())
local tt = {three(), three()}
put("multi table", #tt, tt[1], tt[2], tt[4])
put("multi args", math.max(three()), string.format("%d%d%d", three()))
local a1, a2, a3, a4 = three()
put("multi assign", a1, a2, a3, a4)
local x1, x2 = (three())
put("paren", x1, x2)

-- tail calls: deep tail recursion needs no stack
local function loop(n, acc)
  if n == 0 then return acc end
  return loop(n - 1, acc + 1)
end
put("tail", loop(200000, 0))
local function tramp(n) if n > 0 then return tramp(n - 1) end return "done" end
put("tail 2", tramp(100000))

-- methods and self
local obj = {count = 0}
function obj:add(x) self.count = self.count + x return self end
function obj.static(x) return x * 2 end
obj:add(1):add(2):add(3)
put("methods", obj.count, obj.static(21), obj.add(obj, 4).count)

-- functions as values: composition, currying, map/filter/reduce
local function compose(f, g) return function(...) return f(g(...)) end end
local function curry(f) return function(a) return function(b) return f(a, b) end end end
local function map(f, list) local r = {} for i, v in ipairs(list) do r[i] = f(v) end return r end
local function filter(p, list)
  local r = {}
  for _, v in ipairs(list) do if p(v) then r[#r + 1] = v end end
  return r
end
local function reduce(f, acc, list) for _, v in ipairs(list) do acc = f(acc, v) end return acc end
local inc_then_double = compose(function(x) return x * 2 end, function(x) return x + 1 end)
local nums = {}
for i = 1, 10 do nums[i] = i end
put("functional", inc_then_double(5), curry(function(a, b) return a - b end)(10)(3),
    table.concat(map(function(v) return v * v end,
                     filter(function(v) return v % 3 == 0 end, nums)), ","),
    reduce(function(a, b) return a + b end, 0, nums))

-- an upvalue that is itself a function reassigned later
local op = function(a, b) return a + b end
local apply = function(a, b) return op(a, b) end
local before = apply(2, 3)
op = function(a, b) return a * b end
put("late binding", before, apply(2, 3))

-- a closure that captures a to-be-closed-free block local after the block ends
local getter
do
  local hidden = "inside"
  getter = function() return hidden end
  hidden = "changed"
end
put("block local", getter())

-- globals set on purpose: the next run on a reused state must not see them
closure_counter = counter(0, 1)
closure_counter()
function make_global_counter() return closure_counter() end
put("globals after", make_global_counter(), type(closure_counter))

return table.concat(out, "\n")
