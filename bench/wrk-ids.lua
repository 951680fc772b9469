-- wrk script for bench/run: GET /v1/images/generations/{id} over the ids of $IDS in turn
-- (each wrk thread walks the whole list). The bearer token comes from wrk's -H.
local ids = {}
for line in io.lines(os.getenv("IDS")) do
  if #line > 0 then ids[#ids + 1] = line end
end
local i = 0
request = function()
  i = i % #ids + 1
  return wrk.format("GET", "/v1/images/generations/" .. ids[i])
end
