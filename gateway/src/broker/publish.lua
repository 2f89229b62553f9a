-- replyx publish: append an event to a dialog's capped history stream and publish it, atomically.
-- The event id is the stream id, so history order and live order are the same order.
-- KEYS[1] history stream (replyx:dialog:{id}:events)   KEYS[2] channel (replyx:dialog:{id})
-- ARGV[1] dialog id   ARGV[2] event type   ARGV[3] data (JSON text, validated by the caller)
-- ARGV[4] audience ("" = everyone, else comma-separated admin,widget,site)
-- ARGV[5] max history length   ARGV[6] history TTL seconds
-- Returns the event id. The channel message is "<id>|<audience>|<event JSON>".
local t = redis.call('TIME')
local ts = t[1] * 1000 + math.floor(t[2] / 1000)
local body = '"type":' .. cjson.encode(ARGV[2]) .. ',"dialog_id":' .. ARGV[1] .. ',"data":' .. ARGV[3] .. ',"ts":' .. ts
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[5], '*', 'aud', ARGV[4], 'body', body)
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('PUBLISH', KEYS[2], id .. '|' .. ARGV[4] .. '|{"id":"' .. id .. '",' .. body .. '}')
return id
