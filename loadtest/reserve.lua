-- wrk script: POST /v1/reservations, one line, SKUs A0..A999 at S000..S009.
-- wrk -t1 -c64 -d10s -s loadtest/reserve.lua http://127.0.0.1:8080
local counter = 0
request = function()
  counter = counter + 1
  local sku = "A" .. (counter * 7919 % 1000)
  local loc = string.format("S%03d", counter % 10)
  local body = '{"lines":[{"sku":"' .. sku .. '","qty":1,"location":"' .. loc .. '"}],"ttl_s":900}'
  return wrk.format("POST", "/v1/reservations", {["Content-Type"] = "application/json"}, body)
end
