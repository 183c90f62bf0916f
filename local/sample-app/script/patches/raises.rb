# bin/rails runner script/patches/raises.rb TAG: touches a session, then raises (a patch that fails).
Session.where("token LIKE ?", "#{ARGV.fetch(0)}-%").update_all(expires_at: Time.current)
raise ArgumentError, "patch raised on purpose"
