-- wrk script for bench/load.sh's hostile mix: every EVERY-th request of each wrk thread (the
-- script's argument; 0: none) is hostile, /spin (an endless loop its budget stops) and /bomb (a
-- memory bomb the budget or mem_limit stops) in turn; the others are /tiny.  At the end it
-- prints, after wrk's summary, the requests answered 200 (the normal ones: a hostile request is
-- always stopped, 503 or 500), those answered otherwise, and those sent hostile, so the normal
-- throughput can be told from the total.
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  every = tonumber(args[1]) or 20
  n, turn, sent, ok, other = 0, 0, 0, 0, 0
end

function request()
  n = n + 1
  if every > 0 and n % every == 0 then
    turn = turn + 1
    sent = sent + 1
    return wrk.format("GET", turn % 2 == 0 and "/spin" or "/bomb")
  end
  return wrk.format("GET", "/tiny")
end

function response(status)
  if status == 200 then
    ok = ok + 1
  else
    other = other + 1
  end
end

function done(summary)
  local o, x, h = 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok")
    x = x + t:get("other")
    h = h + t:get("sent")
  end
  io.write(string.format("answered-200 %d\nanswered-other %d\nsent-hostile %d\nseconds %.3f\n",
    o, x, h, summary.duration / 1e6))
end
