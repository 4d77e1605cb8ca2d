-- surefoot pacing state in Redis: one script, one atomic step per call.
-- KEYS[1]: the partition's hash (or the budget's hash for the budget operations).
-- ARGV[1]: the operation; ARGV[2]: JSON arguments (config and instructions).
-- Time is Redis TIME, so hosts with skewed clocks agree; instants are returned as
-- delays from now (strings, full precision), which the caller adds to its own clock.
-- This mirrors surefoot._core (RateLimiter, CircuitBreaker, AdaptiveRate, RetryBudget,
-- WindowCounts); tests/stores/test_pacing_stores.py runs the same cases on both.

local H = KEYS[1]
local op = ARGV[1]
local a = cjson.decode(ARGV[2])
local tm = redis.call('TIME')
local now = (tonumber(tm[1]) - 1700000000) + tonumber(tm[2]) / 1e6
local MAX_RECOVERY = 120.0

local function fmt(x) return string.format('%.17g', x) end
local function num(field)
  local v = redis.call('HGET', H, field)
  if v then return tonumber(v) end
  return nil
end
local function setn(field, x) redis.call('HSET', H, field, fmt(x)) end

-- WindowCounts: buckets "<name><series>:<slot>", newest absolute index in "<name>"
local function wc_advance(name, width, n, series)
  local index = math.floor(now / width)
  local cur = num(name)
  if cur == nil then
    redis.call('HSET', H, name, index)
    return index
  end
  if index <= cur then return cur end
  if index - cur >= n then
    for s = 0, series - 1 do
      for i = 0, n - 1 do redis.call('HDEL', H, name .. s .. ':' .. i) end
    end
  else
    for absolute = cur + 1, index do
      local slot = absolute % n
      for s = 0, series - 1 do redis.call('HDEL', H, name .. s .. ':' .. slot) end
    end
  end
  redis.call('HSET', H, name, index)
  return index
end
local function wc_add(name, width, n, series, s)
  local index = wc_advance(name, width, n, series)
  redis.call('HINCRBY', H, name .. s .. ':' .. (index % n), 1)
end
local function wc_total(name, width, n, series, s)
  wc_advance(name, width, n, series)
  local total = 0
  for i = 0, n - 1 do total = total + (num(name .. s .. ':' .. i) or 0) end
  return total
end
local function wc_span(name, width, n, series)
  wc_advance(name, width, n, series)
  local index = num(name)
  if index == nil then return (n - 1) * width end
  local into = math.min(math.max(now - index * width, 0), width)
  return (n - 1) * width + into
end
local function wc_clear(name, n, series)
  for s = 0, series - 1 do
    for i = 0, n - 1 do redis.call('HDEL', H, name .. s .. ':' .. i) end
  end
end

-- the limiter -----------------------------------------------------------------------
local function quotas()
  local q = {}
  for i, c in ipairs(a.conf or {}) do
    q[#q + 1] = {'c' .. (i - 1), c[1], c[2]}   -- name, interval, tau
  end
  local ll = num('ll')
  if ll then
    local interval = 1.0 / (ll / num('lp') * num('ls'))
    q[#q + 1] = {'learned', interval, (num('lb') - 1) * interval}
  end
  local wu = num('wu')
  if wu then
    if now < wu then
      q[#q + 1] = {'window', num('ws'), 0}
    else
      redis.call('HDEL', H, 'wu', 'ws', 't:window')
    end
  end
  local rh = num('rh')
  if rh then
    local rt = num('t:recovery') or now
    if now < rh and (now < num('ru') or rt > now) then
      q[#q + 1] = {'recovery', num('rs'), 0}
    else
      redis.call('HDEL', H, 'ru', 'rs', 'rh', 't:recovery')
    end
  end
  return q
end

local function learn(limit, period, burst, safety, guess)
  local ll = num('ll')
  if ll == limit and num('lp') == period and num('lb') == burst and num('ls') == safety then
    return
  end
  if ll == nil then
    -- start paced, counting what went out before any quota was known as spent
    local start = math.max(num('t:learned') or now, now)
    local unpaced = num('u')
    if unpaced and not guess then
      local interval = 1.0 / (limit / period * safety)
      start = math.max(start, num('us') + unpaced * interval - (burst - 1) * interval)
      redis.call('HDEL', H, 'u', 'us')
    end
    setn('t:learned', start)
  end
  setn('ll', limit); setn('lp', period); setn('lb', burst); setn('ls', safety)
end

local function tighten(remaining, reset_after)
  if remaining < 0 or reset_after < 0 then return end
  if remaining == 0 then
    setn('f', math.max(num('f') or 0, now + reset_after))
    return
  end
  if reset_after == 0 then return end
  setn('wu', now + reset_after); setn('ws', reset_after / remaining)
end

-- events per second in a window, over the time actually observed
local function rate_of(name, first_field, window, n)
  local first = num(first_field)
  if first == nil then return nil end
  local observed = math.min(wc_span(name, window / n, n, 1), math.max(now - first, 0.1))
  return wc_total(name, window / n, n, 1, 0) / observed
end

-- see LocalPacerState._release_rate
local function release_rate(at_pause)
  local demand = rate_of('aw', 'af', a.demand, 10)
  if at_pause then
    local sent = rate_of('xw', 'xf', 2.0, 8)
    if demand == nil then demand = sent elseif sent then demand = math.max(demand, sent) end
  end
  if demand == nil then return nil end
  return math.max(demand * a.release_factor, 1.0)
end

local function pause(wait)
  local untl = now + wait
  if untl <= (num('p') or 0) then return end
  setn('p', untl)
  redis.call('HINCRBY', H, 'g', 1)
  local rate = release_rate(true)
  if rate and rate > 0 then
    setn('ru', untl + wait); setn('rs', 1.0 / rate); setn('rh', untl + MAX_RECOVERY)
    redis.call('HDEL', H, 't:recovery')
  end
  for _, q in ipairs(quotas()) do setn('t:' .. q[1], untl + q[3]) end
end

-- the adaptive rate (CUBIC) -----------------------------------------------------------
local function ada_measured()
  local observed = math.min(wc_span('sw', 2.0 / 8, 8, 1), math.max(now - (num('as') or now), 0.1))
  return wc_total('sw', 2.0 / 8, 8, 1, 0) / observed
end
local function ada_cap()
  local c = a.ada
  local cap = math.max(c.initial_rate, c.max_growth * ada_measured())
  if c.ceiling then cap = math.min(cap, c.ceiling) end
  return cap
end
local function ada_init()
  if num('ar') == nil then
    local r = a.ada.initial_rate
    setn('ar', r); setn('am', r); setn('ak', 0); setn('ae', now); setn('as', now)
  end
end
local function ada_on_send()
  wc_add('sw', 2.0 / 8, 8, 1, 0)
  setn('ar', math.max(a.ada.floor, math.min(num('ar'), ada_cap())))
end
local function ada_on_throttle(sent_at)
  local last = num('ax')
  if last and sent_at < last then return end
  local c = a.ada
  local rate = num('ar')
  local w_max = rate
  rate = math.max(c.floor, rate * c.beta)
  setn('am', w_max); setn('ar', rate)
  setn('ak', ((w_max - rate) / (c.c * w_max)) ^ (1 / 3))
  setn('ae', now); setn('ax', now)
end
local function ada_on_success()
  local c = a.ada
  local t = math.max(now - num('ae'), 0)
  local w_max = num('am')
  local target
  if num('ax') == nil then
    target = w_max * 2.0 ^ math.min(t / 0.5, 1000)
  else
    target = w_max + c.c * w_max * (t - num('ak')) ^ 3
  end
  local cap = ada_cap()
  setn('ar', math.max(c.floor, math.min(num('ar'), cap), math.min(target, cap)))
end

-- the breaker -----------------------------------------------------------------------
local function brk_leases()
  local raw = redis.call('HGET', H, 'bl')
  local leases = {}
  if raw and raw ~= '' then
    for x in string.gmatch(raw, '[^,]+') do leases[#leases + 1] = tonumber(x) end
  end
  return leases
end
local function brk_set_leases(leases)
  local parts = {}
  for i, x in ipairs(leases) do parts[i] = fmt(x) end
  redis.call('HSET', H, 'bl', table.concat(parts, ','))
end
local function brk_state()
  local s = num('bs') or 0
  if s == 1 and now >= num('bu') then
    redis.call('HSET', H, 'bs', 2, 'bp', 0, 'bl', '')
    return 2
  end
  return s
end
local function brk_open()
  local b = a.brk
  redis.call('HSET', H, 'bs', 1, 'bp', 0, 'bl', '')
  setn('bu', now + b.open_for)
end
local function brk_close()
  redis.call('HSET', H, 'bs', 0, 'bp', 0, 'bl', '', 'bc', 0)
  redis.call('HDEL', H, 'bu')
  wc_clear('bw', 10, 2)
end
local function brk_record(ok)
  local b = a.brk
  local width = b.window / 10
  wc_add('bw', width, 10, 2, 0)
  if ok then
    redis.call('HSET', H, 'bc', 0)
  else
    wc_add('bw', width, 10, 2, 1)
    local consecutive = redis.call('HINCRBY', H, 'bc', 1)
    if consecutive >= b.failure_threshold then
      brk_open()
      return
    end
  end
  if b.failure_ratio then
    local calls = wc_total('bw', width, 10, 2, 0)
    if calls >= b.min_throughput and wc_total('bw', width, 10, 2, 1) / calls >= b.failure_ratio then
      brk_open()
    end
  end
end
local function brk_on_result(ok, probe)
  local s = brk_state()
  if probe then
    local leases = brk_leases()
    if #leases > 0 then
      table.remove(leases, 1)
      brk_set_leases(leases)
    end
  end
  if s == 0 then
    brk_record(ok)
  elseif s == 2 and probe then
    if not ok then
      brk_open()
    else
      local p = redis.call('HINCRBY', H, 'bp', 1)
      if p >= a.brk.close_after then brk_close() end
    end
  end
end

-- operations ------------------------------------------------------------------------
local result = nil
if op == 'reserve' then
  local gen = num('g') or 0
  if a.prev ~= nil and a.prev == gen then
    result = {'prev', gen}
  else
    if a.adaptive and num('ar') ~= nil then
      learn(math.max(num('ar'), 1e-6), 1.0, 1, 1.0, true)
      ada_on_send()
    end
    if num('rh') then
      -- the release follows demand as measured now (see LocalPacerState.reserve)
      local rate = release_rate(false)
      if rate and rate > 0 and 1.0 / rate < num('rs') then setn('rs', 1.0 / rate) end
    end
    if num('xf') == nil then setn('xf', now) end
    wc_add('xw', 2.0 / 8, 8, 1, 0)
    local slot = math.max(now, num('p') or 0, num('f') or 0)
    local q = quotas()
    if #q == 0 then
      if num('u') == nil then setn('us', slot) end
      redis.call('HINCRBY', H, 'u', 1)
    end
    for _, x in ipairs(q) do slot = math.max(slot, (num('t:' .. x[1]) or now) - x[3]) end
    for _, x in ipairs(q) do
      setn('t:' .. x[1], math.max(num('t:' .. x[1]) or now, slot) + x[2])
    end
    result = {fmt(slot - now), gen}
  end
elseif op == 'admit' then
  if num('bs') == nil then redis.call('HSET', H, 'bs', 0) end
  local s = brk_state()
  if s == 0 then
    result = {1, 'closed', 0, ''}
  elseif s == 1 then
    result = {0, 'open', 0, fmt(num('bu') - now)}
  else
    local leases = brk_leases()
    while #leases > 0 and leases[1] <= now do table.remove(leases, 1) end
    if #leases < a.brk.half_open_probes then
      leases[#leases + 1] = now + a.brk.open_for
      brk_set_leases(leases)
      result = {1, 'half_open', 1, ''}
    else
      brk_set_leases(leases)
      result = {0, 'half_open', 0, fmt(leases[1] - now)}
    end
  end
elseif op == 'arrive' then
  if num('af') == nil then setn('af', now) end
  wc_add('aw', a.demand / 10, 10, 1, 0)
  result = 1
elseif op == 'report' then
  if a.healthy ~= nil and a.brk and num('bs') ~= nil then
    brk_on_result(a.healthy, a.probe)
  end
  for _, l in ipairs(a.learned or {}) do learn(l[1], l[2], l[3], l[4]) end
  for _, t in ipairs(a.tighten or {}) do tighten(t[1], t[2]) end
  if a.pause then pause(a.pause) end
  if a.throttled ~= nil and a.ada then
    ada_init()
    if a.throttled then ada_on_throttle(now - a.age) else ada_on_success() end
    learn(math.max(num('ar'), 1e-6), 1.0, 1, 1.0, true)
  end
  result = 1
elseif op == 'budget_request' then
  wc_add('rw', a.window / 10, 10, 2, 0)
  result = 1
elseif op == 'budget_spend' then
  local width = a.window / 10
  local available = a.reserve + a.ratio * wc_total('rw', width, 10, 2, 0)
    - wc_total('rw', width, 10, 2, 1)
  if available >= 1.0 - 1e-9 then
    wc_add('rw', width, 10, 2, 1)
    result = 1
  else
    result = 0
  end
elseif op == 'snapshot' then
  result = redis.call('HGETALL', H)
else
  return redis.error_reply('surefoot: unknown pacing operation ' .. tostring(op))
end
redis.call('PEXPIRE', H, a.ttl_ms or 7200000)
return result
