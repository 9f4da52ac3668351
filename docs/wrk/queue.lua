-- wrk -t1 -c50 -d20s --latency -s docs/wrk/queue.lua http://127.0.0.1:8081
-- First pages of the queue under the filters of `vigil bench api` (which also follows cursors).
local auth = {["Authorization"] = "Bearer " .. os.getenv("VIGIL_KEY")}
local reasons = {"VELOCITY_BURST", "CARD_TESTING", "AMOUNT_ABOVE_NORM", "IMPOSSIBLE_TRAVEL",
  "MERCHANT_RECENT_FRAUDS", "NEW_COUNTRY_OR_DEVICE"}
math.randomseed(7)
request = function()
  local day = math.random(1, 29)
  local filters = {
    "status=open",
    "status=open&sort=score",
    "card_id=card_" .. math.random(0, 49999),
    "merchant_id=m_" .. math.random(0, 4999) .. "&status=open",
    "assignee=investigator_" .. math.random(0, 19) .. "&status=in_review",
    "reason=" .. reasons[math.random(1, #reasons)] .. "&status=open",
    "decision=decline&min_score=0.9",
    string.format("status=open&from=2026-01-%02dT00:00:00Z&to=2026-01-%02dT00:00:00Z", day, day + 1),
  }
  return wrk.format("GET", "/v1/alerts?" .. filters[math.random(1, #filters)] .. "&limit=50", auth)
end
