# Loaded only when FAKE_SLEEP_SECONDS=N is set (config/application.rb): a migration that takes
# N seconds inside PostgreSQL, then rolls itself back (nothing recorded, so it is slow every time).
class SlowOnPurpose < ActiveRecord::Migration[6.1]
  def up
    seconds = Integer(ENV.fetch("FAKE_SLEEP_SECONDS"))
    say "working for #{seconds}s ..."
    execute "SELECT pg_sleep(#{seconds})"
    say "rolled back on purpose (nothing recorded)"
    raise ActiveRecord::Rollback
  end

  def down; end
end
