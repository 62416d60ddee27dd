# wrk Lua scripts the benchmarks share; sourced by bench/kv.sh,
# bench/docs.sh and bench/cluster.sh.

# kv_scripts PREFIX TOKEN: PREFIX-put.lua (PUT a 64-byte value) and
# PREFIX-get.lua (GET), each on a random key of 10,000 in store `bench`.
kv_scripts() {
  cat >"$1-put.lua" <<LUA
wrk.method = "PUT"
wrk.body = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
wrk.headers["Authorization"] = "Bearer $2"
request = function()
  return wrk.format(nil, "/v1/kv/bench/key:" .. math.random(0, 9999))
end
LUA
  cat >"$1-get.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $2"
request = function()
  return wrk.format(nil, "/v1/kv/bench/key:" .. math.random(0, 9999))
end
LUA
}

# query_script FILE TOKEN: an indexed query of collection `people` (a
# random city, an age range of 3), 20 documents at most.
query_script() {
  cat >"$1" <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $2"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local city = math.random(0, 99)
  local age = math.random(0, 96)
  local body = string.format(
    '{"where": {"and": [["city", "==", "city-%d"], ["age", ">=", %d], ["age", "<", %d]]}, "limit": 20}',
    city, age, age + 3)
  return wrk.format(nil, "/v1/docs/people/_query", nil, body)
end
LUA
}
