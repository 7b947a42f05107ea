-- `kubectl aviary restart`: pods created before now are replaced, a few at a time.
local os = require("os")
obj.spec.restartAt = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
