-- Fidelity: load and friends: strings and reader functions, chunk names, modes (text and
-- binary), env tables, varargs of a chunk, syntax error messages, loadfile/dofile of a missing
-- file, require with package.preload and package.loaded.  It ends by changing package.loaded,
-- package.preload and package.path: a reused state must start the next run without that.
-- LUAPOOL_LIBS_ALL only (string.dump, loadfile, package).

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

-- what the end of the program changes
put("pristine", package.loaded.fidelity_mod, package.preload.fidelity_pre,
    package.path:find("/nonexistent/", 1, true), type(loaded_global), type(loadstring))
put("pristine 2", package.cpath:find("/nonexistent/", 1, true), #package.searchers,
    rawequal(require("string"), string), rawequal(package.loaded._G, _G))

-- load from a string: names, results, varargs
local f = load("return 1 + 2")
put("string", type(f), f())
put("varargs", load("return select('#', ...), ...")(1, nil, 3))
put("named", pcall(load("error('e')", "=custom")))
put("named @", pcall(load("error('e')", "@some/file.lua")))
put("named string", pcall(load("error('e')", "a chunk")))
put("default name", pcall(load("\n\nerror('third line')")))
put("long source name",
    pcall(load("local x = 1 local y = 2 local z = 3 error('long chunk source text')")))
put("multiline name", pcall(load("local a = 1\nerror('second')")))

-- syntax errors: the message text
local function syntax(src, name)
  local fn, err = load(src, name)
  return fn == nil, err
end
put("syntax 1", syntax("x = = 1"))
put("syntax 2", syntax("for", "=f"))
put("syntax 3", syntax("x = 'abc", "=s"))
put("syntax 4", syntax("x = [[abc", "=s"))
put("syntax 5", syntax("return 1 +", "=s"))
put("syntax 6", syntax("if x then", "=s"))
put("syntax 7", syntax("local function() end", "=s"))
put("syntax 8", syntax("x = }", "=s"))
put("syntax 9", syntax("return '\\q'", "=s"))
put("syntax 10", syntax("return 0x", "=s"))
put("syntax 11", syntax("return 1e", "=s"))
put("syntax 12", syntax("local x <foo> = 1", "=s"))
put("syntax 13", syntax("local x <const> = 1; x = 2", "=s"))
put("syntax 14", syntax("break", "=s"))
put("syntax 15", syntax("return ...", "=s") == false)
put("syntax 16", syntax("function f() return ... end", "=s"))
put("syntax 17", syntax("x = '\\300'", "=s"))
put("syntax 18", syntax("x = '\\u{110000000}'", "=s"))
put("syntax 19", syntax("--[[ unfinished", "=s"))
put("syntax 20", syntax(string.rep("(", 300) .. "1" .. string.rep(")", 300), "=s"))
put("syntax 21", syntax("a.b:c = 1", "=s"))
put("syntax 22", syntax("\n\n\nlocal = 1", "=s"))
put("syntax 23", syntax("x = 1 y = 2"))

-- a reader function: pieces, an empty piece ends it, nil ends it, wrong types
local function reader_of(pieces)
  local i = 0
  return function()
    i = i + 1
    return pieces[i]
  end
end
put("reader", load(reader_of({"return ", "1", " + ", "41"}))())
put("reader one char", load(reader_of({"r", "e", "t", "u", "r", "n", " ", "7"}))())
put("reader empty", load(reader_of({"return 1", "", "+ 1"}))())
put("reader nothing", type(load(reader_of({}))), load(reader_of({}))())
put("reader bad", load(function() return true end))
put("reader bad 2", load(reader_of({"return 1", {}})))
put("reader error", pcall(load, function() error("reader failed") end))
put("reader name", pcall(load(reader_of({"error('x')"}), "=reader")))
put("reader default name", pcall(load(reader_of({"error('x')"}))))

-- env: a table, a table with __index, nil, the _ENV upvalue
local env = {y = 5}
local g = load("x = 1; return y", "=envchunk", "t", env)
put("env", g(), env.x, rawget(_G, "x"))
local proxied = setmetatable({}, {__index = _G})
put("env index", load("z = tostring(1) .. 'x'; return z", "=e", "t", proxied)(), proxied.z,
    rawget(_G, "z"))
put("env nil", pcall(load("return x", "=nilenv", "t", nil)))
put("env upvalue", debug.getupvalue(load("return 1"), 1), select(2, debug.getupvalue(g, 1)) == env)
put("env no upvalue", load("local a = 1", "=noup", "t", env) ~= nil)
put("_ENV local", load("local _ENV = {v = 'from local env'} return v")())
put("_ENV param", load("local function f(_ENV) return w end return f({w = 'param env'})")())

-- modes: text and binary chunks
local function adder(a) return function(b) return a + b end end
local dumped = string.dump(function(a, b) return a * b, "dumped" end)
local stripped = string.dump(function() error("stripped") end, true)
put("binary", type(dumped), dumped:sub(1, 4) == "\27Lua", load(dumped, "bin", "b")(6, 7))
put("binary stripped", pcall(load(stripped, "=stripped", "b")))
put("binary as text", load(dumped, "bin", "t"))
put("text as binary", load("return 1", "txt", "b"))
put("mode bad", pcall(load, "return 1", "m", "x"))
put("dump C", pcall(string.dump, print))
local with_up = load(string.dump(adder(10)))
put("binary upvalues", debug.getupvalue(with_up, 1), pcall(with_up, 1))
put("binary truncated", load(dumped:sub(1, 20), "=trunc", "b"))

-- loadfile and dofile on a missing file
put("loadfile missing", loadfile("/nonexistent/fidelity.lua"))
put("dofile missing", pcall(dofile, "/nonexistent/fidelity.lua"))
put("loadstring", loadstring, load == _G.load)

-- require: preload, loaded, a module's two arguments, errors
package.preload.fidelity_pre = function(name, extra)
  return {name = name, extra = extra}
end
local m = require("fidelity_pre")
put("require preload", m.name, m.extra, rawequal(require("fidelity_pre"), m),
    rawequal(package.loaded.fidelity_pre, m))
package.loaded.fidelity_mod = "preset"
put("require loaded", require("fidelity_mod"))
package.preload.fidelity_nil = function() end
put("require nil module", require("fidelity_nil"), package.loaded.fidelity_nil)
put("require error", pcall(require, "fidelity_missing_module"))
put("require arg", pcall(require))
put("searchpath", package.searchpath("fidelity.none", "/nonexistent/?.lua;/nonexistent/?/x.lua"))
put("package fields", type(package.searchers), #package.searchers, package.config:sub(1, 1),
    type(package.cpath))

-- globals and package changes the next run must not see
loaded_global = load("return 'made by a loaded chunk'")()
package.path = "/nonexistent/?.lua"
package.cpath = "/nonexistent/?.so"
table.insert(package.searchers, 1, function(name) return "\n\tfidelity searcher: " .. name end)
package.loaded.string = nil
package.loaded._G = nil
put("changed", loaded_global, package.path, package.cpath, #package.searchers,
    pcall(require, "string"))

return table.concat(out, "\n")
