-- Argo CD health of an Aviary Rollout (aviary.dev/v1alpha1, kind Rollout).
-- argocd-cm: resource.customizations.health.aviary.dev_Rollout (docs/gitops.md).
-- Runs without Lua's string and math libraries, as Argo CD runs argocd-cm health scripts.
--
-- The controller records a phase and a message in status, as Argo Rollouts does since v1.0;
-- they are surfaced as they are, a pause as Suspended (awaiting promotion, a timer or a
-- human after an inconclusive analysis). Until the controller has observed the newest spec
-- the Rollout is Progressing: a sync is not green before the controller has seen it.
local hs = {}
if obj.status == nil or obj.metadata.generation == nil
    or tonumber(obj.status.observedGeneration) ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for rollout spec update to be observed"
  return hs
end
local phase = obj.status.phase
if phase == "Paused" then
  hs.status = "Suspended"
elseif phase == "Healthy" or phase == "Progressing" or phase == "Degraded" then
  hs.status = phase
else
  hs.status = "Progressing"
  hs.message = "Waiting for rollout status"
  return hs
end
hs.message = obj.status.message
return hs
