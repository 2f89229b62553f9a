#!lua name=replyx
-- The replyx Redis function library (Redis 7+). Publishers call it with FCALL only, so a
-- publisher's Redis user needs +fcall and no EVAL, XADD or PUBLISH of its own.
-- Bump VERSION with every change: publishers compare it and FUNCTION LOAD REPLACE when older.
local VERSION = '2'

-- replyx_publish: append an event to a dialog's capped history stream and publish it, atomically.
-- The event id is the stream id, so history order and live order are the same order.
-- KEYS[1] history stream (replyx:dialog:<id>:events)   KEYS[2] channel (replyx:dialog:<id>)
-- KEYS[3] optional idempotency key (replyx:dialog:<id>:idem:<key>)
-- ARGV[1] dialog id   ARGV[2] event type   ARGV[3] data (JSON text, validated by the caller)
-- ARGV[4] audience ("" = everyone, else comma-separated admin,widget,site)
-- ARGV[5] max history length   ARGV[6] history TTL seconds   ARGV[7] idempotency window seconds
-- Returns { event id, 1 when this call published it | 0 when KEYS[3] named an earlier publish }.
-- The channel message is "<id>|<audience>|<event JSON>".
local function publish(keys, args)
  if keys[3] then
    local first = redis.call('GET', keys[3])
    if first then return { first, 0 } end
  end
  local t = redis.call('TIME')
  local ts = t[1] * 1000 + math.floor(t[2] / 1000)
  local body = '"type":' .. cjson.encode(args[2]) .. ',"dialog_id":' .. args[1] .. ',"data":' .. args[3] .. ',"ts":' .. ts
  local id = redis.call('XADD', keys[1], 'MAXLEN', args[5], '*', 'aud', args[4], 'body', body)
  redis.call('EXPIRE', keys[1], args[6])
  if keys[3] then redis.call('SET', keys[3], id, 'EX', args[7]) end
  redis.call('PUBLISH', keys[2], id .. '|' .. args[4] .. '|{"id":"' .. id .. '",' .. body .. '}')
  return { id, 1 }
end

redis.register_function('replyx_publish', publish)
redis.register_function{ function_name = 'replyx_version', callback = function() return VERSION end, flags = { 'no-writes' } }
