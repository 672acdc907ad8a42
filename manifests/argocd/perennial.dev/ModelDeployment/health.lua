-- Argo CD health for perennial.dev/ModelDeployment, read from its phase and conditions.
-- An automatic rollback restores the previous model but leaves the resource Degraded
-- (phase Degraded, lastRollout.result RolledBack; or a RolledBack/Degraded condition) until
-- a new blessed model arrives or a user acts. A rollout in progress is Progressing. Ready
-- is never reported while the serving pods are not ready.
local hs = {}

local function condition(name)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == name then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

local function summary(fallback)
  if obj.status ~= nil and obj.status.message ~= nil and obj.status.message ~= "" then
    return obj.status.message
  end
  return fallback
end

-- The condition's message, else the status summary, else the condition's reason.
local function message(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  local text = summary(nil)
  if text ~= nil then
    return text
  end
  if c ~= nil and c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local stalled = condition("Stalled")
if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = message(stalled, "Stalled")
  return hs
end

local rolled_back = condition("RolledBack")
if is_true(rolled_back) then
  hs.status = "Degraded"
  hs.message = "Rolled back: " .. message(rolled_back, "the new model failed its analysis")
  return hs
end

local degraded = condition("Degraded")
if is_true(degraded) or obj.status.phase == "Degraded" then
  hs.status = "Degraded"
  local last = obj.status.lastRollout
  if is_true(degraded) then
    hs.message = message(degraded, "Degraded")
  elseif last ~= nil and last.result == "RolledBack" then
    hs.message = "Rolled back: " .. (last.message or last.reason or "the new model failed its analysis")
  else
    hs.message = summary("Degraded")
  end
  return hs
end

local reconciling = condition("Reconciling")
if is_true(reconciling) or obj.status.phase == "Progressing" then
  hs.status = "Progressing"
  hs.message = message(reconciling, "Rollout in progress")
  return hs
end
if obj.status.phase == "Waiting" then
  hs.status = "Progressing"
  hs.message = "Waiting for a blessed model to serve"
  return hs
end

local ready = condition("Ready")
if is_true(ready) then
  hs.status = "Healthy"
  hs.message = message(ready, "Serving")
  return hs
end
if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = message(ready, "Not ready")
  return hs
end

hs.status = "Progressing"
hs.message = "Waiting for the Ready condition"
return hs
