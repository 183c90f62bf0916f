require_relative "boot"

require "rails"
require "active_model/railtie"
require "active_job/railtie"
require "active_record/railtie"
require "action_mailer/railtie"
require "rails/test_unit/railtie"

Bundler.require(*Rails.groups)

module SampleApp
  class Application < Rails::Application
    config.load_defaults 6.1
    config.eager_load_paths << Rails.root.join("lib")
    config.autoload_paths << Rails.root.join("lib")
    config.active_job.queue_adapter = :sidekiq
    config.time_zone = "UTC"
    # Mail is delivered as files (one per recipient) under SAMPLE_APP_MAIL_DIR: what the data
    # patch tests read to tell a captured mail (dry run) from a delivered one (real run).
    config.action_mailer.delivery_method = :file
    config.action_mailer.file_settings = { location: ENV.fetch("SAMPLE_APP_MAIL_DIR", "/tmp/sample-app-mails") }
    config.action_mailer.perform_deliveries = true

    # Fault injection for the batchless replica (see README.md): migrations that exist only
    # when asked, so they stay pending and fail (or take a while) every time they are asked for.
    # FAKE_EXIT_CODE (non-zero) or SAMPLE_APP_FAIL_MIGRATION=1: db/faults/fail (a real PG error,
    # rolled back by PostgreSQL's transactional DDL). FAKE_SLEEP_SECONDS=N: db/faults/slow
    # (pg_sleep(N), then rolled back on purpose: nothing is recorded).
    if ENV.fetch("FAKE_EXIT_CODE", "0") != "0" || ENV["SAMPLE_APP_FAIL_MIGRATION"] == "1"
      config.paths["db/migrate"] << "db/faults/fail"
    end
    if ENV.fetch("FAKE_SLEEP_SECONDS", "0") != "0"
      config.paths["db/migrate"] << "db/faults/slow"
    end
  end
end
