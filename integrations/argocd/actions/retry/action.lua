-- `kubectl aviary retry`: an aborted rollout starts its steps again.
if obj.status ~= nil then
  obj.status.abort = nil
end
return obj
