namespace :data do
  desc "Recompute users' order totals (argument: orders created since DATE); the totals are written by the Sidekiq job"
  task backfill_totals: :environment do
    args = SampleApp::Work.rake_args("data:backfill_totals")
    SampleApp::Work.run("task: data:backfill_totals", args) do
      since = args.first ? Time.zone.parse(args.first) : Time.at(0)
      ids = Order.where("created_at >= ?", since || Time.at(0)).distinct.pluck(:user_id)
      jid = RecomputeUserTotalsJob.perform_async(ids, "data:backfill_totals")
      SampleApp::Work.record("data:backfill_totals", args)
      puts "enqueued RecomputeUserTotalsJob #{jid} for #{ids.size} users"
    end
  end

  desc "Cancel the open orders of the user with this e-mail and enqueue the totals job for that user"
  task cancel_open_orders: :environment do
    args = SampleApp::Work.rake_args("data:cancel_open_orders")
    SampleApp::Work.run("task: data:cancel_open_orders", args) do
      user = User.find_by!(email: args.fetch(0))
      n = user.orders.where(status: "open").update_all(status: "cancelled", updated_at: Time.current)
      jid = RecomputeUserTotalsJob.perform_async([user.id], "data:cancel_open_orders")
      SampleApp::Work.record("data:cancel_open_orders", args)
      puts "cancelled #{n} orders of #{user.email}; enqueued RecomputeUserTotalsJob #{jid}"
    end
  end
end
