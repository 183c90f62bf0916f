# bin/rails runner script/patches/sessions_extend_and_purge.rb TAG: a data patch for the dry-run
# tests (issue 18): extends the sessions whose token starts with "TAG-u-" by a year and deletes
# those starting with "TAG-d-", in one transaction, and records a task_runs row.
tag = ARGV.fetch(0)
SampleApp::Work.run("script: patches/sessions_extend_and_purge.rb", ARGV) do
  ActiveRecord::Base.transaction do
    extended = Session.where("token LIKE ?", "#{tag}-u-%").update_all("expires_at = expires_at + interval '1 year'")
    purged = Session.where("token LIKE ?", "#{tag}-d-%").delete_all
    SampleApp::Work.record("patches/sessions_extend_and_purge.rb", ARGV)
    puts "extended #{extended} sessions, purged #{purged}"
  end
end
