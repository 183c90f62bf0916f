# bin/rails runner script/patches/mails_notices.rb TAG N: a data patch for the dry-run tests
# (issue 18): mails N notices, to TAG-1@example.test .. TAG-N@example.test (delivered as files
# under SAMPLE_APP_MAIL_DIR), and records a task_runs row.
tag = ARGV.fetch(0)
n = Integer(ARGV.fetch(1))
SampleApp::Work.run("script: patches/mails_notices.rb", ARGV) do
  (1..n).each { |i| NoticeMailer.notice("#{tag}-#{i}@example.test", "notice #{i} of #{n}").deliver_now }
  SampleApp::Work.record("patches/mails_notices.rb", ARGV)
  puts "mailed #{n} notices"
end
