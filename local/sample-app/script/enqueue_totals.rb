# bin/rails runner script/enqueue_totals.rb EMAIL...: enqueue the totals job for those users.
ids = User.where(email: ARGV).pluck(:id)
jid = RecomputeUserTotalsJob.perform_async(ids, "script/enqueue_totals.rb")
puts "enqueued RecomputeUserTotalsJob #{jid} for #{ids.size} users"
