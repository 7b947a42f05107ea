-- `kubectl aviary abort`: traffic back to stable at once, the canary scaled down.
if obj.status == nil then
  obj.status = {}
end
obj.status.abort = true
obj.status.promoteFull = nil
return obj
