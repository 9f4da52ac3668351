-- wrk -t1 -c50 -d20s --latency -s docs/wrk/risk.lua http://127.0.0.1:8081
-- against `vigil api` on the database `vigil bench api` seeded; VIGIL_KEY holds an investigator key.
local auth = {["Authorization"] = "Bearer " .. os.getenv("VIGIL_KEY")}
math.randomseed(7)
request = function()
  return wrk.format("GET", "/v1/cards/card_" .. math.random(0, 49999) .. "/risk", auth)
end
