-- Argo CD health for perennial.dev/TrainingRun, read from its phase and kstatus conditions.
-- Pending/Training/Evaluating: Progressing. Succeeded (model blessed): Healthy.
-- Rejected (a gate blocked the candidate) and Failed: Degraded, with the reason.
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
  hs.message = "Waiting for the operator to start the run"
  return hs
end

local stalled = condition("Stalled")
if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = message(stalled, "Stalled")
  return hs
end

local phase = obj.status.phase
local ready = condition("Ready")
local reconciling = condition("Reconciling")

if phase == "Pending" then
  hs.status = "Progressing"
  hs.message = message(reconciling, "Waiting for the training Job to start")
  return hs
end
if phase == "Training" then
  hs.status = "Progressing"
  hs.message = message(reconciling, "Training")
  return hs
end
if phase == "Evaluating" then
  hs.status = "Progressing"
  hs.message = message(reconciling, "Evaluating the candidate against the gates")
  return hs
end
if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = message(ready, "Model blessed")
  return hs
end
if phase == "Rejected" then
  hs.status = "Degraded"
  hs.message = "Rejected by the gates: " .. message(ready, "a gate failed")
  return hs
end
if phase == "Failed" then
  hs.status = "Degraded"
  hs.message = "Failed: " .. message(ready, "the training Job failed")
  return hs
end

if is_true(ready) then
  hs.status = "Healthy"
  hs.message = message(ready, "Ready")
  return hs
end
hs.status = "Progressing"
hs.message = message(reconciling, "Waiting for the operator")
return hs
