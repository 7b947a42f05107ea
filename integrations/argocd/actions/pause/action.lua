-- `kubectl aviary pause`.
obj.spec.paused = true
return obj
