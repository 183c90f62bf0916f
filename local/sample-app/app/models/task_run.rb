# One row per task, script or job run that changed data (what ran, with which arguments).
class TaskRun < ApplicationRecord
end
