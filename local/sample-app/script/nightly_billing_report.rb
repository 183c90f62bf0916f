# Scheduled job nightly-billing-report: one billing_reports row per run.
SampleApp::Work.run("script: script/nightly_billing_report.rb", ARGV) do
  paid = Order.where(status: "paid")
  label = ARGV.each_slice(2).to_h["--month"] || Time.current.utc.strftime("%Y-%m-%d")
  report = BillingReport.create!(label: label, orders_count: paid.count, total_cents: paid.sum(:amount_cents),
                                 created_at: Time.current)
  puts "billing report #{report.id} (#{label}): #{report.orders_count} paid orders, #{report.total_cents} cents"
end
