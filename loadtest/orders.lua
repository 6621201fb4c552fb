-- wrk script: POST /v1/orders, orders of 3 lines of SKUs A0..A199 to a
-- door somewhere around the stores, paid through the sandbox, a fresh id
-- each (loadtest/sourcing_bench.sh seeds the network and runs it with
-- this script as its third argument).
math.randomseed(os.time())
local run = math.random(1, 1000000000)
local counter = 0
request = function()
  counter = counter + 1
  local a = counter * 7919 % 200
  local b = (counter * 104729 + 13) % 200
  local c = (counter * 1299709 + 101) % 200
  local lat = 45.0 + (counter % 97) / 100.0
  local lon = 9.0 + (counter % 89) / 100.0
  local body = string.format(
    '{"id":"B%d-%d","lines":[{"sku":"A%d","qty":1,"unit_price":"1.00"},' ..
    '{"sku":"A%d","qty":1,"unit_price":"1.00"},{"sku":"A%d","qty":1,"unit_price":"1.00"}],' ..
    '"delivery":{"type":"ship","lat":%.2f,"lon":%.2f},"payment":{"provider":"sandbox"}}',
    run, counter, a, b, c, lat, lon)
  return wrk.format("POST", "/v1/orders", {["Content-Type"] = "application/json"}, body)
end
