# Processed by the stack's Sidekiq worker: recompute each user's total of orders.
class RecomputeUserTotalsJob
  include Sidekiq::Worker
  sidekiq_options queue: "default", retry: 3

  def perform(user_ids, source = "job")
    User.where(id: user_ids).find_each do |user|
      user.update!(orders_total_cents: user.orders.where.not(status: "cancelled").sum(:amount_cents),
                   totals_recomputed_at: Time.current)
    end
    TaskRun.create!(name: "RecomputeUserTotalsJob", arguments: user_ids.join(","), source: source)
  end
end
