# The scheduled jobs of infra/jobs.yaml that are rake tasks.
namespace :rates do
  desc "Pull the latest exchange rates (here: made up, one row per currency)"
  task sync: :environment do
    args = SampleApp::Work.rake_args("rates:sync")
    SampleApp::Work.run("task: rates:sync", args) do
      now = Time.current
      %w[EUR JPY GBP].each_with_index do |cur, i|
        ExchangeRate.create!(currency: cur, rate: 1 + i * 0.5 + (now.to_i % 100) / 1000.0, fetched_at: now)
      end
      SampleApp::Work.record("rates:sync", args)
    end
  end
end

namespace :sessions do
  desc "Delete sessions past their expiry, PURGE_BATCH_SIZE at a time"
  task purge: :environment do
    args = SampleApp::Work.rake_args("sessions:purge")
    SampleApp::Work.run("task: sessions:purge", args) do
      batch = Integer(ENV.fetch("PURGE_BATCH_SIZE", "1000"))
      n = 0
      loop do
        deleted = Session.where("expires_at < ?", Time.current).limit(batch).delete_all
        n += deleted
        break if deleted < batch
      end
      SampleApp::Work.record("sessions:purge", args)
      puts "purged #{n} sessions"
    end
  end
end

namespace :fake do
  desc "A long-running task: sleeps N seconds (a slow data patch, whose environment cannot be set)"
  task :sleep do # no :environment: nothing but time (the Rails app is not even booted)
    args = ARGV.drop_while { |a| a != "fake:sleep" }.drop(1)
    args.each { |a| Rake::Task.define_task(a) {} unless Rake::Task.task_defined?(a) }
    puts "Running task: fake:sleep"
    puts "sleeping #{args.first || 0}s ..."
    $stdout.flush
    sleep Float(args.first || 0)
    puts "done."
  end
end
