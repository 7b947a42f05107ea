-- `kubectl aviary restart`: pods created before restartAt are replaced, a few at a time.
-- restartAt is the next whole second, as the CLI writes it: pod creation times are whole
-- seconds, so a pod created earlier in this second must count as created before it. Built by
-- hand from os.time(): Argo CD's safe os.date ignores "!" (UTC) when given a time.
local os = require("os")
local t = os.time() + 1
local function div(a, b)
  return (a - a % b) / b
end
local function two(n)
  if n < 10 then
    return "0" .. n
  end
  return "" .. n
end
-- Days since 1970-01-01 to a civil date (H. Hinnant's days_from_civil, inverted).
local secs = t % 86400
local z = div(t, 86400) + 719468
local era = div(z, 146097)
local doe = z - era * 146097
local yoe = div(doe - div(doe, 1460) + div(doe, 36524) - div(doe, 146096), 365)
local doy = doe - (365 * yoe + div(yoe, 4) - div(yoe, 100))
local mp = div(5 * doy + 2, 153)
local day = doy - div(153 * mp + 2, 5) + 1
local month = mp + 3
if mp >= 10 then
  month = mp - 9
end
local year = yoe + era * 400
if month <= 2 then
  year = year + 1
end
obj.spec.restartAt = year .. "-" .. two(month) .. "-" .. two(day) .. "T" .. two(div(secs, 3600))
  .. ":" .. two(div(secs % 3600, 60)) .. ":" .. two(secs % 60) .. "Z"
return obj
