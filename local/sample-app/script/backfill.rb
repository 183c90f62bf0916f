# bin/rails runner script/backfill.rb [DATE]: enqueue the totals job for users with orders since DATE.
SampleApp::Work.run("script: script/backfill.rb", ARGV) do
  since = ARGV.first ? Time.zone.parse(ARGV.first) : Time.at(0)
  ids = Order.where("created_at >= ?", since || Time.at(0)).distinct.pluck(:user_id)
  jid = RecomputeUserTotalsJob.perform_async(ids, "script/backfill.rb")
  SampleApp::Work.record("script/backfill.rb", ARGV)
  puts "backfilling #{ARGV.inspect}: enqueued RecomputeUserTotalsJob #{jid} for #{ids.size} users"
end
