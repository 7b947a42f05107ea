-- `kubectl aviary resume`.
obj.spec.paused = false
return obj
