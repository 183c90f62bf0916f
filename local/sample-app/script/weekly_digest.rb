# Scheduled job weekly-digest: counts who would get the digest and enqueues their totals refresh.
SampleApp::Work.run("script: script/weekly_digest.rb", ARGV) do
  ids = User.pluck(:id)
  RecomputeUserTotalsJob.perform_async(ids, "script/weekly_digest.rb")
  SampleApp::Work.record("script/weekly_digest.rb", ARGV)
  puts "digest for #{ids.size} users"
end
