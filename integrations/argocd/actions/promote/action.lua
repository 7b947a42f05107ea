-- `kubectl aviary promote`: ends a pause (spec.paused, or the controller's pause conditions),
-- or moves a canary waiting on a setWeight or analysis step to the next step.
if obj.status ~= nil and obj.status.abort == true then
  error("the rollout is aborted: retry it to restart its steps, or roll back")
end
if obj.spec.paused == true then
  obj.spec.paused = false
  if obj.status ~= nil and obj.status.pauseConditions ~= nil and #obj.status.pauseConditions > 0 then
    obj.status.pauseConditions = nil
  end
  return obj
end
if obj.status == nil then
  return obj
end
if obj.status.pauseConditions ~= nil and #obj.status.pauseConditions > 0 then
  obj.status.pauseConditions = nil
  return obj
end
local steps = {}
if obj.spec.strategy ~= nil and obj.spec.strategy.canary ~= nil then
  steps = obj.spec.strategy.canary.steps or {}
  local index = obj.status.currentStepIndex or 0
  local updating = obj.status.currentPodHash ~= nil and obj.status.stableRS ~= obj.status.currentPodHash
  if updating and index < #steps then
    obj.status.currentStepIndex = index + 1
  end
end
return obj
