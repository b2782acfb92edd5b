#!lua name=chc
-- CHC's store-side logic (dissertation §3.3.3, Table 3.6) as a Redis Functions library.
--
-- Calling convention (every function): KEYS[1] is the one state object the op touches (its key
-- carries a hash tag, so in a Redis Cluster it names one slot); ARGV[1] is the 64-bit logical clock
-- of the packet that caused the op ("0" for none), ARGV[2] the updating instance's id. The clock
-- and instance travel from the start so that the clock log for duplicate suppression (R5) and the
-- commit signals to the root (R6) -- issue 12 -- slot in here without changing any caller.
-- The op-specific arguments follow from ARGV[3].
--
-- Issue 12 (R5/R6 metadata, docs/chc.md "Correctness"): ARGV[2] may be "<instance>:<object>:<seq>"
-- (the seq-th update of that object by that packet). For a packet's op (clock ~= "0"):
--   * clock log: the result is kept in the hash KEYS[1] .. ":clog" (same hash tag, so the same slot
--     in a cluster) under "<clock>|<ARGV[2]>"; an op arriving again with the same clock and tag (a
--     retransmission, or a replay after failover) is not applied again: the logged result is returned
--     and the hash's "#dups" field counts it. Replays therefore see the values the first run saw.
--   * commit signal: the first application appends {c = clock, x = instance << 16 | object} to the
--     stream "chc:commit:r<root id>" (root id = the clock's top 8 bits), which the root reads to match
--     a logged packet's XOR vector before deleting it. The stream key is not declared: standalone
--     servers only (in a cluster the XADD fails as a non-local key and is skipped; one stream per
--     slot would be needed: not built).
-- DEDUP is replaced by false when the harness loads the library with duplicate suppression off
-- (the COE checker's negative control); commit signals stay on.
local DEDUP = true

local function int(s, what)
  local n = tonumber(s)
  if n == nil then
    return redis.error_reply('chc: ' .. what .. ' is not a number: ' .. tostring(s))
  end
  return n
end

-- Increment/decrement a value by the given (signed) delta; returns the new value.
local function chc_incr(keys, args)
  local delta = int(args[3], 'delta')
  if type(delta) == 'table' then return delta end
  return redis.call('INCRBY', keys[1], delta)
end

-- Push values to a list: ARGV[3] is 'L' or 'R', ARGV[4..] the values; returns the new length.
local function chc_push(keys, args)
  local cmd = args[3] == 'L' and 'LPUSH' or 'RPUSH'
  local n = 0
  for i = 4, #args do
    n = redis.call(cmd, keys[1], args[i])
  end
  return n
end

-- Pop a value from a list: ARGV[3] is 'L' or 'R'; returns the value or nil when empty.
local function chc_pop(keys, args)
  return redis.call(args[3] == 'L' and 'LPOP' or 'RPOP', keys[1])
end

-- Compare and update: set KEYS[1] to ARGV[5] if its value equals ARGV[4], where ARGV[3] = '1'
-- means "the key must exist with that value" and '0' "the key must be absent".
-- Returns {1, new value} on success, {0, current value or false} otherwise.
local function chc_cas(keys, args)
  local cur = redis.call('GET', keys[1])
  local matches
  if args[3] == '0' then matches = (cur == false) else matches = (cur == args[4]) end
  if matches then
    redis.call('SET', keys[1], args[5])
    return {1, args[5]}
  end
  return {0, cur}
end

-- Plain write of a whole value (flushes of cached per-flow objects use it).
local function chc_set(keys, args)
  return redis.call('SET', keys[1], args[3])
end

-- Custom op (load balancer, Table 3.12): KEYS[1] is a hash server -> active connections; pick the
-- least-loaded server (ties: lowest name), add one connection to it, return {server, connections}.
local function chc_lb_pick(keys, args)
  local flat = redis.call('HGETALL', keys[1])
  if #flat == 0 then return redis.error_reply('chc: no servers in ' .. keys[1]) end
  local best, best_n = nil, nil
  for i = 1, #flat, 2 do
    local n = tonumber(flat[i + 1])
    if best == nil or n < best_n or (n == best_n and flat[i] < best) then
      best, best_n = flat[i], n
    end
  end
  return {best, redis.call('HINCRBY', keys[1], best, 1)}
end

-- Custom op (portscan detector, TRW): KEYS[1] is a hash host -> log likelihood ratio (decimal text).
-- ARGV[3] host, ARGV[4] log step for this outcome (log(theta1/theta0) on success,
-- log((1-theta1)/(1-theta0)) on failure), ARGV[5] upper threshold log(eta1), ARGV[6] lower log(eta0).
-- Returns {new ratio text, decision}: decision 1 = scanner, -1 = benign, 0 = pending. A host that
-- reached a decision keeps its ratio (TRW stops testing it).
local function chc_trw_step(keys, args)
  local cur = tonumber(redis.call('HGET', keys[1], args[3]) or '0')
  local hi, lo = tonumber(args[5]), tonumber(args[6])
  if cur >= hi then return {tostring(cur), 1} end
  if cur <= lo then return {tostring(cur), -1} end
  local new = cur + tonumber(args[4])
  local text = string.format('%.17g', new)
  redis.call('HSET', keys[1], args[3], text)
  local decision = 0
  if new >= hi then decision = 1 elseif new <= lo then decision = -1 end
  return {text, decision}
end

-- Custom op (Trojan detector, Table 3.12, after [40]): KEYS[1] is a hash host -> bit mask of the
-- steps seen: bit 0 SSH, bits 1-3 FTP downloads of HTML, ZIP, EXE, bit 4 IRC = Trojan detected.
-- ARGV[3] host, ARGV[4] the event (0 ssh, 1 html, 2 zip, 3 exe, 4 irc). A download counts only after
-- SSH, IRC only after SSH and all three downloads, so a different order is not a Trojan.
-- Returns the host's mask afterwards. (Redis's Lua is 5.1: bit operations come from its bit library.)
local function chc_trojan_step(keys, args)
  local mask = tonumber(redis.call('HGET', keys[1], args[3]) or '0')
  local ev = tonumber(args[4])
  local new = mask
  if ev == 0 then
    new = bit.bor(mask, 1)
  elseif ev >= 1 and ev <= 3 and bit.band(mask, 1) == 1 then
    new = bit.bor(mask, bit.lshift(1, ev))
  elseif ev == 4 and bit.band(mask, 15) == 15 then
    new = bit.bor(mask, 16)
  end
  if new ~= mask then redis.call('HSET', keys[1], args[3], new) end
  return new
end

-- Custom op (Trojan detector ordered by logical clock, R4 §3.4.2): KEYS[1] is a hash host -> the
-- host's events "ev:clock ev:clock ...", ARGV[1] the packet's clock, ARGV[3] host, ARGV[4] the event.
-- The sequence is judged by the clocks (the order packets entered the chain), not by the order they
-- reach this NF: the earliest SSH, then for each of HTML, ZIP, EXE its earliest download after that
-- SSH, then an IRC event after the last of those. Returns 1 once the host's events form the sequence.
-- Clocks of one root have the same number of digits, so comparing (length, text) orders them exactly
-- (Lua's doubles cannot hold a 64-bit clock).
local function clock_lt(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end

local function trojan_by_clock(events)
  local first = {}
  local ssh = nil
  for _, e in ipairs(events) do
    if e[1] == 0 and (ssh == nil or clock_lt(e[2], ssh)) then ssh = e[2] end
  end
  if ssh == nil then return 0 end
  local last = ssh
  for ev = 1, 3 do
    for _, e in ipairs(events) do
      if e[1] == ev and clock_lt(ssh, e[2]) and (first[ev] == nil or clock_lt(e[2], first[ev])) then first[ev] = e[2] end
    end
    if first[ev] == nil then return 0 end
    if clock_lt(last, first[ev]) then last = first[ev] end
  end
  for _, e in ipairs(events) do
    if e[1] == 4 and clock_lt(last, e[2]) then return 1 end
  end
  return 0
end

local function chc_trojan_clock(keys, args)
  local old = redis.call('HGET', keys[1], args[3]) or ''
  local text = old .. (old == '' and '' or ' ') .. args[4] .. ':' .. args[1]
  redis.call('HSET', keys[1], args[3], text)
  local events = {}
  for ev, clock in string.gmatch(text, '(%d+):(%d+)') do events[#events + 1] = {tonumber(ev), clock} end
  return trojan_by_clock(events)
end

-- Increment a field of a hash (per-server counters of the load balancer); returns the new value.
local function chc_hincr(keys, args)
  return redis.call('HINCRBY', keys[1], args[3], args[4])
end

-- Plain delete of a per-flow value (through the library so it is logged and signalled like any update).
local function chc_del(keys, args)
  return redis.call('DEL', keys[1])
end

local ROOT_DIV = 72057594037927936  -- 2^56: the root id sits above the 56-bit packet counter

local function tag_parts(tag)
  local inst, obj = string.match(tag or '', '^(%d+):(%d+)')
  if inst == nil then return tonumber(tag) or 0, 0 end
  return tonumber(inst), tonumber(obj)
end

-- Wraps an op with the clock log and the commit signal (see the header of this file).
local function logged(fn)
  return function(keys, args)
    local clock = args[1]
    if clock == nil or clock == '0' then return fn(keys, args) end
    local clog = keys[1] .. ':clog'
    local field = clock .. '|' .. tostring(args[2])
    local seen = redis.call('HGET', clog, field)
    if seen then redis.call('HINCRBY', clog, '#dups', 1) end
    if seen and DEDUP then return cjson.decode(seen)[1] end
    local result = fn(keys, args)
    if type(result) == 'table' and result.err then return result end  -- failed ops are not logged
    if seen then return result end  -- applied again (DEDUP off): signalled only the first time
    redis.call('HSET', clog, field, cjson.encode({result == nil and false or result}))
    local inst, obj = tag_parts(args[2])
    local root = math.floor(tonumber(clock) / ROOT_DIV)
    -- pcall: in a Redis Cluster the stream is a non-local key and the signal is dropped (not built there)
    redis.pcall('XADD', 'chc:commit:r' .. root, '*', 'c', clock, 'x', tostring(inst * 65536 + obj))
    return result
  end
end

redis.register_function('chc_incr', logged(chc_incr))
redis.register_function('chc_push', logged(chc_push))
redis.register_function('chc_pop', logged(chc_pop))
redis.register_function('chc_cas', logged(chc_cas))
redis.register_function('chc_set', logged(chc_set))
redis.register_function('chc_lb_pick', logged(chc_lb_pick))
redis.register_function('chc_trw_step', logged(chc_trw_step))
redis.register_function('chc_trojan_step', logged(chc_trojan_step))
redis.register_function('chc_trojan_clock', logged(chc_trojan_clock))
redis.register_function('chc_hincr', logged(chc_hincr))
redis.register_function('chc_del', logged(chc_del))
