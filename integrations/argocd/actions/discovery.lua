-- Which Argo CD resource actions apply to an Aviary Rollout now (argocd-cm:
-- resource.customizations.actions.aviary.dev_Rollout). Each action writes what the same
-- `kubectl aviary` command writes; see docs/gitops.md.
local status = obj.status or {}
local aborted = status.abort == true
local paused = obj.spec.paused == true
local hasPause = status.pauseConditions ~= nil and #status.pauseConditions > 0
local updating = status.currentPodHash ~= nil and status.stableRS ~= status.currentPodHash
local actions = {}
actions["promote"] = {["disabled"] = aborted or not (paused or hasPause or updating)}
actions["promote-full"] = {["disabled"] = aborted or not (paused or updating)}
actions["abort"] = {["disabled"] = aborted or not updating}
actions["retry"] = {["disabled"] = not aborted}
actions["pause"] = {["disabled"] = paused}
actions["resume"] = {["disabled"] = not paused}
actions["restart"] = {}
return actions
