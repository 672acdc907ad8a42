-- Argo CD health for perennial.dev/TrainingPipeline, read from its kstatus conditions.
-- Suspended: spec.suspend (no new runs start). Progressing: a run is in flight or the
-- operator has not yet observed the latest spec. Degraded: Stalled, or Ready=False.
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

if (obj.spec ~= nil and obj.spec.suspend == true) or obj.status.phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = "Pipeline is suspended: no new training runs are started"
  return hs
end

local reconciling = condition("Reconciling")
if is_true(reconciling) or obj.status.phase == "Training" then
  hs.status = "Progressing"
  hs.message = message(reconciling, "Training in progress")
  return hs
end

local ready = condition("Ready")
if is_true(ready) then
  hs.status = "Healthy"
  hs.message = message(ready, "Ready")
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
