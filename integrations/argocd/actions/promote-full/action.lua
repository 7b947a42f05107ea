-- `kubectl aviary promote --full`: skips the remaining steps, pauses and analysis.
if obj.status ~= nil and obj.status.abort == true then
  error("the rollout is aborted: retry it to restart its steps, or roll back")
end
if obj.spec.paused == true then
  obj.spec.paused = false
end
if obj.status ~= nil and obj.status.currentPodHash ~= nil and obj.status.stableRS ~= obj.status.currentPodHash then
  obj.status.promoteFull = true
  obj.status.pauseConditions = nil
end
return obj
