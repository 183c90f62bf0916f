# bin/rails runner script/patches/enqueue_totals_many.rb TAG K: enqueues K RecomputeUserTotalsJob
# jobs for user 1, each recording a task_runs row with source TAG when the worker runs it.
tag = ARGV.fetch(0)
k = Integer(ARGV.fetch(1))
SampleApp::Work.run("script: patches/enqueue_totals_many.rb", ARGV) do
  k.times { RecomputeUserTotalsJob.perform_async([1], tag) }
  puts "enqueued #{k} RecomputeUserTotalsJob"
end
