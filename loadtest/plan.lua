-- wrk script: POST /v1/sourcing/plan, carts of 3 lines of SKUs A0..A199
-- to a door somewhere around the stores (loadtest/sourcing_bench.sh seeds
-- them). wrk -t1 -c16 -d10s -s loadtest/plan.lua http://127.0.0.1:8080
local counter = 0
request = function()
  counter = counter + 1
  local a = counter * 7919 % 200
  local b = (counter * 104729 + 13) % 200
  local c = (counter * 1299709 + 101) % 200
  local lat = 45.0 + (counter % 97) / 100.0
  local lon = 9.0 + (counter % 89) / 100.0
  local body = string.format(
    '{"lines":[{"sku":"A%d","qty":1},{"sku":"A%d","qty":1},{"sku":"A%d","qty":1}],' ..
    '"destination":{"lat":%.2f,"lon":%.2f}}', a, b, c, lat, lon)
  return wrk.format("POST", "/v1/sourcing/plan", {["Content-Type"] = "application/json"}, body)
end
